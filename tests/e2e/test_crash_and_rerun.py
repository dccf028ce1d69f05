"""A crash in the middle of load_learning, then a rerun: the end state is a clean run's, nothing twice.

The load sends organizations, users and user levels; then Learning applies the classes
batch and dies before its answer reaches the pipeline (the server process is stopped
and the client sees the connection drop). The crashed run fails (its load task gets no
retry here, so the rerun is a new DAG run, as after a worker crash). Learning is started
again on the same database (a new port; the connection follows it) and the DAG runs
again: Learning ends exactly in the oracle's state, with every user, class and roster row
once, and the classes Learning had applied without the pipeline knowing come back as
unchanged, not duplicated.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.compare import assert_learning_matches, failed_users
from tests.e2e.conftest import DISTRICT_ID, run_dag, staged_rows
from tests.e2e.oracle import expected_state

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

KEYS = {"organizations": ("organization_id",), "users": ("external_id",), "user_levels": ("external_id",),
        "classes": ("class_id",), "rosters": ("class_id", "user_id"), "parent_links": ("parent_id", "child_id")}


def duplicated_keys(learning) -> dict[str, list]:
    """Keys that Learning lists more than once, per entity (read back page by page, as raw rows)."""
    found = {}
    for entity, fields in KEYS.items():
        keys = Counter(tuple(row[name] for name in fields) for row in learning.read_all(DISTRICT_ID, entity))
        found[entity] = [key for key, count in keys.items() if count > 1]
    return {entity: keys for entity, keys in found.items() if keys}


def test_crash_mid_load_then_rerun_converges(import_dag, sandboxes, monkeypatch):
    from sandbox.processes import stop_process
    from sis_learning.hooks.http_client import ApiError
    from sis_learning.hooks.learning import LearningHook

    original_upsert = LearningHook.upsert
    crashed: dict[str, int] = {}

    def upsert_then_crash(self, entity, rows):
        results = original_upsert(self, entity, rows)
        if entity == "classes" and not crashed:
            crashed["classes"] = len(rows)
            stop_process(sandboxes.learning.process)  # Learning applied the batch, then went down
            raise ApiError(None, "PowerSchool Learning did not answer POST classes/batch (ConnectionError); the "
                           "request is not safe to repeat automatically, so check whether it took effect.",
                           f"{sandboxes.learning.base_url}/api/v1/classes/batch", method="POST")
        return results

    monkeypatch.setattr(LearningHook, "upsert", upsert_then_crash)
    monkeypatch.setattr(import_dag.get_task("load.load_learning"), "retries", 0)

    crashed_run, crashed_seconds = run_dag(import_dag)
    assert crashed["classes"] > 0, "the load never reached the classes"
    assert crashed_run.state == "failed"
    states = {ti.task_id: str(ti.state) for ti in crashed_run.get_task_instances()}
    assert states["load.load_learning"] == "failed", states

    message = sandboxes.smtp.mailbox.wait_for(1, timeout=30)[0]  # one email for the crashed run, naming the step
    assert "failed at load" in message["Subject"], message["Subject"]

    sandboxes.restart_learning()
    learning = sandboxes.learning
    assert learning.users(DISTRICT_ID), "the users sent before the crash are in Learning"
    assert len(learning.classes(DISTRICT_ID)) == crashed["classes"], "Learning applied the classes batch"
    assert learning.rosters(DISTRICT_ID) == {}, "nothing after the crash was sent"

    rerun, rerun_seconds = run_dag(import_dag)
    print(f"crashed run {crashed_seconds:.1f}s, rerun {rerun_seconds:.1f}s")
    assert rerun.state == "success"

    assert duplicated_keys(learning) == {}
    failed = failed_users(sandboxes.staging_url, rerun.run_id, sandboxes.powerschool.database_path)
    assert_learning_matches(expected_state(sandboxes.powerschool.database_path, failed_users=failed),
                            sandboxes.learning_state())

    # The classes Learning applied unseen are sent again and come back unchanged; users are not sent again.
    sent = staged_rows(sandboxes.staging_url, "SELECT entity, learning_result, COUNT(*) AS n FROM change_set "
                       "WHERE district_id = :d AND run_id = :r AND status = 'accepted' GROUP BY entity, learning_result",
                       d=DISTRICT_ID, r=rerun.run_id)
    by_entity = {(row["entity"], row["learning_result"]): row["n"] for row in sent}
    assert by_entity.get(("classes", "unchanged")) == crashed["classes"], by_entity
    assert not any(entity == "users" for entity, _ in by_entity), by_entity
    assert by_entity.get(("rosters", "created"), 0) > 0, by_entity
    assert len(sandboxes.smtp.mailbox.messages) == 1, "the successful rerun sends no email"
