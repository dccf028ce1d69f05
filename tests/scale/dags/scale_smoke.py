"""A stand-in DAG for the Celery stack test: only tests/scale/ points a dags folder here.

Eight independent tasks that each hold a worker slot for a few seconds: with two workers
of concurrency 4 and Celery's prefetch of one, no single worker can take all eight at
once, so a successful run that reached both workers is proof the broker spread the work.
The tasks use the ``powerschool_api`` pool so the test also proves the pools were created
(a task in a missing pool never leaves the scheduler).
"""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import DAG, task

with DAG(
    dag_id="scale_smoke",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["test", "scale"],
    doc_md="Celery stack smoke test: eight parallel sleepers in the powerschool_api pool.",
    default_args={"owner": "data-engineering", "retries": 0},
) as dag:

    @task(pool="powerschool_api")
    def hold_a_slot(index: int) -> int:
        time.sleep(6)
        return index

    hold_a_slot.expand(index=list(range(8)))
