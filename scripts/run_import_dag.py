"""Run one district import DAG run in this process, as a worker would, and print its outcome.

    python scripts/run_import_dag.py demo [--pause-after-entity classes] [--serve]

Used where a test or the soak (bench/soak.py) must be able to kill the process running
the tasks for real (SIGKILL): the DAG runs with ``dag.test()`` (real Airflow tasks, the
retries the district's YAML sets) in this separate process, configured entirely by the
environment it inherits (``AIRFLOW_CONN_*``, ``SIS_LEARNING_STAGING_URL``,
``SIS_LEARNING_DISTRICTS_DIR``, the default password variable).

``--pause-after-entity E`` (tests only) prints ``PAUSED <E>`` and sleeps after the first
Learning batch of entity E was answered, so a test can kill the process at a known point
of the load. The outcome is the line ``RESULT {"run_id", "state", "tasks": {task: [state, tries]}}``.
``--serve`` keeps the process (and what it imported: Airflow, Great Expectations) for
more runs: one run per line ``run`` read from stdin, one JSON line printed per run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("district_id")
    parser.add_argument("--pause-after-entity")
    parser.add_argument("--pause-seconds", type=float, default=600.0)
    parser.add_argument("--serve", action="store_true", help="one run per 'run' line on stdin")
    arguments = parser.parse_args()
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]
    if arguments.pause_after_entity:
        from sis_learning.hooks.learning import LearningHook

        original = LearningHook.upsert

        def upsert_then_pause(self, entity, rows):
            results = original(self, entity, rows)
            if entity == arguments.pause_after_entity:
                print(f"PAUSED {entity}", flush=True)
                time.sleep(arguments.pause_seconds)
            return results

        LearningHook.upsert = upsert_then_pause
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "sis_import.py"))
    dag = dagbag.dags[f"sis_import__{arguments.district_id}"]

    def plain(state):
        return str(getattr(state, "value", state))

    def one_run() -> None:
        dag_run = dag.test()
        tasks = {ti.task_id: [plain(ti.state), ti.try_number] for ti in dag_run.get_task_instances()}
        print(
            "RESULT " + json.dumps({"run_id": dag_run.run_id, "state": plain(dag_run.state), "tasks": tasks}),
            flush=True,
        )

    if not arguments.serve:
        one_run()
        return 0
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            one_run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
