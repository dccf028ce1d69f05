"""The distributed path, for real: Airflow's CeleryExecutor with two workers.

One stack per module (scripts/celery_stack.py): api-server, scheduler, dag-processor,
triggerer and two Celery workers from the virtualenv, on the local PostgreSQL (fresh
metadata and staging databases, dropped at the end) and Redis (the broker), with the
demo's sandboxes (scripts/demo_environment.py: SIS simulator, reference Learning, SMTP
catcher). Its dags folder holds the repository's DAG files and a smoke DAG. The tests
run the smoke DAG, the demo district's import and a grade push started by a score a
teacher saves in Learning, wait for success and read the ``hostname`` of every task
instance from the metadata database to show that both workers did work. After the stack
stops, no process it started may be left.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml

from scripts.celery_stack import CeleryStack, StackSettings, demo_sandboxes, run_dags

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.xdist_group("celery_stack")]

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_DAG = Path(__file__).parent / "dags" / "scale_smoke.py"
# The demo dataset fails 7% of its sections (lead teachers not among the active staff,
# login collisions) against demo.yaml's 5% validation threshold, so the demo district
# runs here with 10%; everything else is demo.yaml as committed.
DEMO_OVERRIDES = {"validation_thresholds": {"default": 0.10}}


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return f"Redis not reachable at 127.0.0.1:6379: {error}"
    return None


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dags folder (links to the repository's DAG files and the smoke DAG) and a districts folder."""
    dags = tmp_path_factory.mktemp("dags")
    for source in [*sorted((REPO_ROOT / "dags").glob("*.py")), SMOKE_DAG]:
        (dags / source.name).symlink_to(source)
    districts = tmp_path_factory.mktemp("districts")
    demo = yaml.safe_load((REPO_ROOT / "include" / "districts" / "demo.yaml").read_text())
    demo.update(DEMO_OVERRIDES)
    (districts / "demo.yaml").write_text(yaml.safe_dump(demo, sort_keys=False))
    return {"dags": dags, "districts": districts, "home": tmp_path_factory.mktemp("celery_airflow_home")}


@pytest.fixture(scope="module")
def sandboxes(folders: dict[str, Path]):
    from tests.conftest import POSTGRES_ADMIN_URL, _postgres_unavailable_reason

    reason = _postgres_unavailable_reason() or _redis_reachable()
    if reason:
        pytest.skip(reason)
    settings = StackSettings(
        name=f"sl_scale_{uuid.uuid4().hex[:8]}",
        workers=2,
        concurrency=4,
        postgres_admin_url=POSTGRES_ADMIN_URL,
        airflow_home=folders["home"],
        dags_folder=folders["dags"],
        districts_dir=folders["districts"],
    )
    with demo_sandboxes(settings) as services:
        yield settings, services


@pytest.fixture(scope="module")
def stack(sandboxes):
    settings, _services = sandboxes
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


@pytest.fixture(scope="module")
def demo_import(stack: CeleryStack) -> tuple[dict[str, str], dict[str, str]]:
    """The demo district's import, run once for the module (the grade push needs its classes)."""
    runs, states, _seconds = run_dags(stack, ["sis_import__demo"], timeout=480)
    return runs, states


def test_demo_import_runs_to_success_on_both_workers(stack: CeleryStack, demo_import) -> None:
    runs, states = demo_import
    rows = stack.task_hosts(runs)
    failed = [(row["task_id"], row["state"]) for row in rows if row["state"] != "success"]
    assert states == {"sis_import__demo": "success"}, f"tasks not successful: {failed}"
    # 17 import tasks and the 3 approval tasks (load.approve_mass_changes, _2, _3), skipped when nothing is stopped.
    assert len(rows) == 20
    workers = {stack.worker_of(row["hostname"]) for row in rows}
    assert workers == {"worker1", "worker2"}, f"task instances ran on {workers}"
    extract_pools = {row["pool"] for row in rows if row["task_id"].startswith("extract.")}
    assert extract_pools == {"powerschool_api"}
    assert {row["pool"] for row in rows if row["task_id"] == "load.load_learning"} == {"learning_api"}


def test_a_score_saved_in_learning_reaches_powerteacher_through_the_stack(
    stack: CeleryStack, sandboxes, demo_import
) -> None:
    """The triggerer's gradebook watcher starts grade_push__demo; a worker writes the score."""
    from sqlalchemy import create_engine, text

    _settings, services = sandboxes
    assert demo_import[1] == {"sis_import__demo": "success"}, "the grade push needs a successful import"
    learning = services.learning
    students = sorted(key for key, role in learning.rosters("demo").items() if role == "student")
    assert students, "the import put no student in any class"
    class_id, student_id = students[0][0], students[0][1].split(":", 1)[1]  # the roster names "S:<dcid>"
    stack.wait_for_dags(["grade_push__demo"])
    stack.api("PATCH", "/dags/grade_push__demo", json={"is_paused": False})
    gradable = learning.create_gradable("demo", class_id, "Scale-out quiz", 10, due_date="2026-03-02")
    learning.set_score("demo", gradable["id"], student_id, "9")

    deadline = time.monotonic() + 240
    finished: list[dict] = []
    while time.monotonic() < deadline and not finished:
        runs = stack.api("GET", "/dags/grade_push__demo/dagRuns")["dag_runs"]
        finished = [run for run in runs if run["state"] in ("success", "failed")]
        time.sleep(2)
    assert finished, "no grade push run finished within 240s of the score being saved"
    run = finished[0]
    assert (run["state"], run["run_type"]) == ("success", "asset_triggered"), run

    engine = create_engine(stack.staging_url)
    try:
        # The gradable's creation is a change of its own: the score may come in the next run.
        while True:
            with engine.connect() as connection:
                pushed = connection.execute(
                    text(
                        "SELECT score, status FROM grade_push_scores WHERE district_id = 'demo'"
                        " AND gradable_id = :gradable AND student_id = :student"
                    ),
                    {"gradable": str(gradable["id"]), "student": student_id},
                ).all()
            if pushed or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        engine.dispose()
    assert [(row.score, row.status) for row in pushed] == [("9", "pushed")]
    rows = stack.task_hosts({"grade_push__demo": run["dag_run_id"]})
    assert [(row["task_id"], row["state"]) for row in rows] == [("push_grades", "success")]
    assert stack.worker_of(rows[0]["hostname"]) in {"worker1", "worker2"}
