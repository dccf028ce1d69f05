"""Real processes killed mid-load, with the task retries production uses: the end state is a clean run's.

1. Learning is SIGKILLed mid-load (right after it answered the classes batch). The load
   task's next request meets a dead server and the task fails for real; Learning is
   started again on the same database; Airflow retries the task (the demo district's
   production settings: 2 retries, 30 s first delay) and the run ends **successful**:
   no failure email, the failed attempt kept in the run's history, Learning exactly in
   the oracle's state with every row once.
2. The process running the tasks is SIGKILLed mid-load (the DAG runs in its own process
   through scripts/run_import_dag.py, held right after the classes batch). Nothing
   reports: its ``sync_runs`` row stays ``running``. The district's next run marks it
   ``abandoned`` in stage ``load``, says so in its report, and converges: the classes the
   killed run had sent come back unchanged, nothing is duplicated, no email.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from tests.e2e.compare import assert_learning_matches, failed_users
from tests.e2e.conftest import DISTRICT_ID, REPO_ROOT, run_dag, staged_rows
from tests.e2e.oracle import expected_state

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

KEYS = {
    "organizations": ("organization_id",),
    "users": ("user_type", "external_id"),
    "user_levels": ("external_id",),
    "classes": ("class_id",),
    "rosters": ("class_id", "user_type", "user_id"),
    "parent_links": ("parent_id", "child_id"),
}


def duplicated_keys(learning) -> dict[str, list]:
    """Keys that Learning lists more than once, per entity (read back page by page, as raw rows)."""
    found = {}
    for entity, fields in KEYS.items():
        keys = Counter(tuple(row[name] for name in fields) for row in learning.read_all(DISTRICT_ID, entity))
        found[entity] = [key for key, count in keys.items() if count > 1]
    return {entity: keys for entity, keys in found.items() if keys}


def attempts(staging_url: str, run_id: str) -> list[tuple[str, int, str]]:
    return [
        (row["stage"], row["attempt"], row["status"])
        for row in staged_rows(
            staging_url,
            "SELECT stage, attempt, status FROM sync_run_attempts WHERE district_id = :d AND run_id = :r ORDER BY id",
            d=DISTRICT_ID,
            r=run_id,
        )
    ]


def sync_run(staging_url: str, run_id: str) -> dict:
    [row] = staged_rows(
        staging_url,
        "SELECT status, stage, error FROM sync_runs WHERE district_id = :d AND run_id = :r AND kind = 'import'",
        d=DISTRICT_ID,
        r=run_id,
    )
    return row


def assert_converged(sandboxes, run_id: str) -> None:
    assert duplicated_keys(sandboxes.learning) == {}
    failed = failed_users(sandboxes.staging_url, run_id, sandboxes.powerschool.database_path)
    assert_learning_matches(
        expected_state(sandboxes.powerschool.database_path, failed_users=failed), sandboxes.learning_state()
    )


def test_learning_killed_mid_load_the_production_retry_finishes_a_successful_run(import_dag, sandboxes, monkeypatch):
    from sis_learning.hooks.learning import LearningHook

    load_task = import_dag.get_task("load.load_learning")
    assert (load_task.retries, load_task.retry_delay.total_seconds()) == (2, 30.0), "production retry settings"
    original_upsert = LearningHook.upsert
    killed: dict[str, int] = {}

    def restart_after_the_failed_attempt():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if ("load", 1, "failed") in attempts(sandboxes.staging_url, killed["run_id"]):
                sandboxes.restart_learning()  # same database, new port; the connection follows it
                killed["restarted"] = 1
                return
            time.sleep(0.2)

    def upsert_then_kill_learning(self, entity, rows):
        results = original_upsert(self, entity, rows)
        if entity == "classes" and not killed:
            killed["classes"] = len(rows)
            [run] = staged_rows(sandboxes.staging_url, "SELECT run_id FROM sync_runs WHERE status = 'running'")
            killed["run_id"] = run["run_id"]
            os.kill(sandboxes.learning.process.pid, signal.SIGKILL)  # no clean shutdown, no answer to anyone
            sandboxes.learning.process.wait(timeout=30)
            threading.Thread(target=restart_after_the_failed_attempt, daemon=True).start()
        return results

    monkeypatch.setattr(LearningHook, "upsert", upsert_then_kill_learning)
    dag_run, seconds = run_dag(import_dag)
    print(f"run with a Learning crash and a task retry: {seconds:.1f}s")
    assert killed.get("classes", 0) > 0 and killed.get("restarted"), killed
    assert dag_run.state == "success"
    tries = {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances()}
    assert tries["load.load_learning"] == ("success", 2), tries
    assert sync_run(sandboxes.staging_url, dag_run.run_id) == {"status": "success", "stage": "finished", "error": None}
    load_history = [item for item in attempts(sandboxes.staging_url, dag_run.run_id) if item[0] == "load"]
    assert load_history == [("load", 1, "failed"), ("load", 2, "succeeded")]
    time.sleep(1)
    assert sandboxes.smtp.mailbox.messages == [], "a run that ended successful sends no failure email"
    assert_converged(sandboxes, dag_run.run_id)


def test_task_process_killed_mid_load_is_abandoned_and_the_next_run_converges(import_dag, sandboxes, tmp_path):
    import sis_learning.config

    env = {**os.environ, "SIS_LEARNING_DISTRICTS_DIR": str(sis_learning.config.DISTRICTS_DIR)}
    worker = subprocess.Popen(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "run_import_dag.py"),
            DISTRICT_ID,
            "--pause-after-entity",
            "classes",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 300
        line = ""
        while time.monotonic() < deadline and not line.startswith("PAUSED"):
            line = worker.stdout.readline()
            assert line or worker.poll() is None, "the worker ended before the load reached the classes"
    finally:
        worker.send_signal(signal.SIGKILL)  # the task process dies mid-load: nobody reports
        worker.wait(timeout=30)
    assert line.strip() == "PAUSED classes"
    [killed] = staged_rows(
        sandboxes.staging_url, "SELECT run_id, status FROM sync_runs WHERE district_id = :d", d=DISTRICT_ID
    )
    assert killed["status"] == "running"
    classes_sent = len(sandboxes.learning.classes(DISTRICT_ID))
    assert classes_sent > 0 and sandboxes.learning.rosters(DISTRICT_ID) == {}

    rerun, seconds = run_dag(import_dag)
    print(f"rerun after a killed worker: {seconds:.1f}s")
    assert rerun.state == "success"
    abandoned = sync_run(sandboxes.staging_url, killed["run_id"])
    assert (abandoned["status"], abandoned["stage"]) == ("abandoned", "load"), abandoned
    assert rerun.run_id in abandoned["error"]
    [note] = staged_rows(
        sandboxes.staging_url,
        "SELECT error FROM sync_run_attempts WHERE run_id = :r AND stage = 'previous_run'",
        r=rerun.run_id,
    )
    assert note["error"] == f"previous run {killed['run_id']} was abandoned in load"
    assert_converged(sandboxes, rerun.run_id)
    sent = staged_rows(
        sandboxes.staging_url,
        "SELECT entity, learning_result, COUNT(*) AS n FROM change_set "
        "WHERE district_id = :d AND run_id = :r AND status = 'accepted' GROUP BY entity, learning_result",
        d=DISTRICT_ID,
        r=rerun.run_id,
    )
    by_entity = {(row["entity"], row["learning_result"]): row["n"] for row in sent}
    assert by_entity.get(("classes", "unchanged")) == classes_sent, by_entity
    assert by_entity.get(("rosters", "created"), 0) > 0, by_entity
    assert sandboxes.smtp.mailbox.messages == [], "neither the killed run (it never reported) nor the rerun emails"
