"""The distributed path, for real: Airflow's CeleryExecutor with two workers.

One stack per module (scripts/celery_stack.py): api-server, scheduler, dag-processor,
triggerer and two Celery workers from the virtualenv, on the local PostgreSQL (fresh
metadata and staging databases, dropped at the end) and Redis (the broker). The tests
trigger DAG runs through the REST API, wait for success and read the ``hostname`` of
every task instance from the metadata database to show that both workers did work.
After the stack stops, no process it started may be left.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from scripts.celery_stack import CeleryStack, StackSettings, run_dags

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.xdist_group("celery_stack")]

SMOKE_DAGS = Path(__file__).parent / "dags"


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis not reachable at 127.0.0.1:6379: {error}"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import POSTGRES_ADMIN_URL, _postgres_unavailable_reason

    reason = _postgres_unavailable_reason() or _redis_reachable()
    if reason:
        pytest.skip(reason)
    settings = StackSettings(
        name=f"sl_scale_{uuid.uuid4().hex[:8]}",
        workers=2,
        concurrency=4,
        postgres_admin_url=POSTGRES_ADMIN_URL,
        airflow_home=tmp_path_factory.mktemp("celery_airflow_home"),
        dags_folder=SMOKE_DAGS,
    )
    celery_stack = CeleryStack(settings)
    try:
        with celery_stack:
            yield celery_stack
        leftovers = celery_stack.leftover_pids()
        assert leftovers == [], f"processes of the stack still running after stop: {leftovers}"
        assert all(c.process.poll() is not None for c in celery_stack.components)
    finally:
        celery_stack.drop_databases()


def test_stack_components_are_all_running(stack: CeleryStack) -> None:
    names = [component.name for component in stack.components]
    assert names == ["api-server", "scheduler", "dag-processor", "triggerer", "worker1", "worker2"]
    assert all(component.process.poll() is None for component in stack.components)
    assert stack.env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert stack.env["SIS_LEARNING_STAGING_URL"].endswith(f"/{stack.settings.staging_database}")


def test_parallel_tasks_run_on_both_workers(stack: CeleryStack) -> None:
    runs, states, _seconds = run_dags(stack, ["scale_smoke"], timeout=300)
    assert states == {"scale_smoke": "success"}
    rows = stack.task_hosts(runs)
    assert len(rows) == 8
    assert {row["state"] for row in rows} == {"success"}
    assert {row["pool"] for row in rows} == {"powerschool_api"}
    assert {row["queue"] for row in rows} == {stack.queue}
    workers = {stack.worker_of(row["hostname"]) for row in rows}
    assert workers == {"worker1", "worker2"}, f"task instances ran on {workers}"
