"""The safety stop end to end: the run waits for a person, who answers through Airflow's own API.

On the demo-sized district (the tiny one has fewer than 25 students per school). After a
first successful import, 40 active students of one school (about 30% of them, and at
least 25) get enroll_status 2 in the SIS. The next run stops at load.check_mass_changes
before anything is written and waits at load.approve_mass_changes (Airflow's
human-in-the-loop approval, the task parked in ``awaiting_input``), showing the figures
per school and examples. A person answers as the UI does: ``PATCH .../hitlDetails`` of
Airflow's REST API (the real API app, in this process, with a signed-in user's token).

- Approving loads exactly the change set shown. When the change set changes while the
  person looks (more students leave and the extract-to-diff tasks are cleared and run
  again), the approval loads nothing and the run asks again with the new figures; the
  second approval loads exactly those.
- Rejecting, or no answer by the deadline (the scheduler's own timeout sweep, with the
  clock moved past the district's 24 hours), loads nothing and emails the district; a
  preview on the same change set does not wait; a run triggered with
  ``approve_mass_changes=true`` (the CLI's way) then goes through without waiting.

The end state in Learning is checked against the oracle's on the changed SIS data.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from sis_learning.dashboard import app as dashboard
from sis_learning.dashboard.app import ANSWERABLE, ASKING, NOT_WAITING
from tests.e2e.compare import assert_learning_matches, failed_users
from tests.e2e.conftest import DAG_ID, run_dag, staged_rows
from tests.e2e.oracle import expected_state, user_order
from tests.e2e.test_failure_email import body_text

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
LEAVERS = 40
MORE_LEAVERS = 5
APPROVAL_TASKS = ("load.approve_mass_changes", "load.approve_mass_changes_2", "load.approve_mass_changes_3")
APPROVAL_TASK = APPROVAL_TASKS[0]
ANSWER_SECONDS = 240  # how long the reviewer waits for the run to ask (an incremental run is ~10 s)


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


class AirflowApi:
    """Airflow's REST API (the app the API server serves), called in this process as a signed-in user."""

    def __init__(self, user: str = "reviewer"):
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from fastapi.testclient import TestClient

        self.client = TestClient(create_app("core"))
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role="admin"))
        self.headers = {"Authorization": f"Bearer {token}"}
        self.since = datetime.now(UTC)

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        response = self.client.request(method, f"/api/v2{path}", json=body, headers=self.headers)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()

    def running_run(self) -> str | None:
        """The running run this test started: never a run left ``running`` in the metadata database by another
        test (a killed worker's run stays ``running``; picking it made the reviewer wait forever)."""
        query = urlencode({"state": "running", "start_date_gte": self.since.isoformat(), "order_by": "-start_date"})
        runs = self.call("GET", f"/dags/{DAG_ID}/dagRuns?{query}&limit=5")["dag_runs"]
        return runs[0]["dag_run_id"] if runs else None

    def task(self, run_id: str, task_id: str) -> dict:
        return self.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")

    def wait_for_request(self, task_id: str = APPROVAL_TASK, timeout: float = ANSWER_SECONDS) -> tuple[str, dict]:
        """(run id, the human-in-the-loop request) once ``task_id`` of the running run waits for an answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run_id = self.running_run()
            if run_id:
                waiting = [t for t in APPROVAL_TASKS if self.task(run_id, t)["state"] == "awaiting_input"]
                assert waiting in ([], [task_id]), f"waiting in {waiting}, expected {task_id}"
                if waiting:
                    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"
                    return run_id, self.call("GET", path)
            time.sleep(1)
        raise AssertionError(f"no approval request in {task_id} within {timeout} s")

    def answer(self, run_id: str, option: str, task_id: str = APPROVAL_TASK) -> dict:
        return self.call(
            "PATCH",
            f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
            {"chosen_options": [option], "params_input": {}},
        )

    def clear(self, run_id: str, task_ids: list[str]) -> None:
        """Clear tasks of the running run (not their downstream tasks, not the run's state): they run again."""
        self.call(
            "POST",
            f"/dags/{DAG_ID}/clearTaskInstances",
            {
                "dry_run": False,
                "dag_run_id": run_id,
                "task_ids": task_ids,
                "only_failed": False,
                "reset_dag_runs": False,
                "include_downstream": False,
            },
        )

    def wait_for_state(self, run_id: str, task_id: str, states: set[str], timeout: float = ANSWER_SECONDS) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.task(run_id, task_id)
            if task["state"] in states:
                return task
            time.sleep(1)
        raise AssertionError(f"{task_id} never reached {states}")

    def fail_run(self, run_id: str) -> None:
        self.call("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", {"state": "failed"})


@pytest.fixture(scope="module")
def airflow_api() -> AirflowApi:
    return AirflowApi()


def run_with_reviewer(import_dag, api: AirflowApi, reviewer: Callable[[], None], **conf: Any):
    """One DAG run with dag.test() (it must run in this thread) while ``reviewer`` acts from another thread.

    If the reviewer fails, the run is marked failed so dag.test() stops waiting; its error is raised.
    """
    errors: list[str] = []

    def act() -> None:
        try:
            reviewer()
        except BaseException:
            errors.append(traceback.format_exc())
            run_id = api.running_run()
            if run_id:
                api.fail_run(run_id)

    api.since = datetime.now(UTC)
    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    dag_run, seconds = run_dag(import_dag, **conf)
    thread.join(60)
    assert not errors, errors[0]
    return dag_run, seconds


def first_import_then_leavers(import_dag, sandboxes) -> dict[str, Any]:
    """A first successful import, then 40 students of the biggest school leave in the SIS."""
    first, _ = run_dag(import_dag)
    assert first.state == "success"
    dataset_path = sandboxes.powerschool.database_path
    failed_first = failed_users(sandboxes.staging_url, first.run_id, dataset_path)
    before = expected_state(dataset_path, failed_users=failed_first)
    learning_before = sandboxes.learning_state()
    students = [key for key, user in learning_before["users"].items() if user["user_type"] == "S"]
    by_school: dict[str, list[str]] = {}
    for key in students:
        by_school.setdefault(learning_before["users"][key]["organization_id"], []).append(key)
    school, members = max(by_school.items(), key=lambda item: len(item[1]))
    ordered = sorted(members, key=user_order)
    leavers = ordered[:LEAVERS]  # user keys, "S:<dcid>"
    assert len(members) >= 25 and 0.10 * len(members) < LEAVERS
    for key in leavers:
        sandboxes.powerschool.set_enroll_status(int(key.split(":", 1)[1]), 2, exitdate="2025-12-01")
    world = {
        "school": school,
        "leavers": leavers,
        "more_leavers": ordered[LEAVERS : LEAVERS + MORE_LEAVERS],
        "before": before,
        "learning_before": learning_before,
        "failed_first": failed_first,
        "dataset_path": dataset_path,
    }
    world["leaving_keys"] = leaving_keys(world)
    world["leaving_here"] = len(world["leaving_keys"])
    return world


def leaving_keys(world: dict[str, Any]) -> set[str]:
    """Users of the school who leave Learning by the rules on the SIS as it is now: the students, and
    parents left with no imported child."""
    now = expected_state(world["dataset_path"], failed_users=world["failed_first"])
    users = world["learning_before"]["users"]
    return {
        key for key in set(world["before"].users) - set(now.users) if users[key]["organization_id"] == world["school"]
    }


def shown_users_leaving(body: str, school: str) -> int:
    """The number of users of ``school`` the request says would be deactivated."""
    seen = re.search(rf"\| {school} \| users deactivated \| ([\d,]+) \|", body)
    assert seen, body
    return int(seen.group(1).replace(",", ""))


def reviews(staging_url: str, run_id: str) -> list[dict[str, Any]]:
    return staged_rows(
        staging_url,
        "SELECT id, status, rows, fingerprint, decided_by, task_id FROM mass_change_reviews WHERE run_id = :r "
        "ORDER BY id",
        r=run_id,
    )


def approval_states(run_id: str, *task_ids: str) -> list[str]:
    """What the Districts pages offer for these approval tasks of a run, from Airflow's metadata database."""
    states = dashboard.approval_states({(DAG_ID, run_id, task_id) for task_id in task_ids})
    return [states[(DAG_ID, run_id, task_id)] for task_id in task_ids]


def settled_approval_states(run_id: str, *task_ids: str, seconds: float = 60) -> list[str]:
    """The pages' states once none of these tasks is ASKING any more (a parked task settles in SETTLE_SECONDS)."""
    deadline = time.monotonic() + seconds
    while True:
        states = approval_states(run_id, *task_ids)
        if ASKING not in states or time.monotonic() > deadline:
            return states
        time.sleep(1)


def sync_run(staging_url: str, run_id: str) -> dict[str, Any]:
    return staged_rows(staging_url, "SELECT status, stage, error FROM sync_runs WHERE run_id = :r", r=run_id)[0]


@pytest.mark.parametrize("dataset", ["demo"])
def test_an_approval_loads_exactly_what_was_shown_and_a_changed_change_set_is_asked_again(
    import_dag, sandboxes, airflow_api
):
    timings: dict[str, float] = {}
    started = time.monotonic()
    world = first_import_then_leavers(import_dag, sandboxes)
    timings["first"] = time.monotonic() - started
    school = world["school"]
    seen: dict[str, Any] = {}
    mark = sandboxes.learning_log_mark()

    def reviewer() -> None:
        run_id, request = airflow_api.wait_for_request()
        seen["run_id"], seen["first"] = run_id, request
        # While the run waits: nothing was written to Learning; staging says it waits.
        seen["writes_while_waiting"] = [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"]
        seen["learning_while_waiting"] = sandboxes.learning_state()
        seen["sync_run_while_waiting"] = sync_run(sandboxes.staging_url, run_id)
        seen["pages_right_after_the_park"] = approval_states(run_id, APPROVAL_TASK)
        seen["pages_while_waiting"] = settled_approval_states(run_id, APPROVAL_TASK)
        # The SIS changes again (five more students leave) and someone runs extract-to-diff again.
        for key in world["more_leavers"]:
            sandboxes.powerschool.set_enroll_status(int(key.split(":", 1)[1]), 2, exitdate="2025-12-02")
        seen["leaving_here_now"] = len(leaving_keys(world))
        redo = [t.task_id for t in import_dag.tasks if t.task_id.split(".")[0] in ("extract", "validate", "transform")]
        airflow_api.clear(run_id, [*redo, "load.compute_changes"])
        airflow_api.wait_for_state(run_id, "load.compute_changes", {"success"})
        airflow_api.answer(run_id, "Approve")  # approves what was shown, which is no longer the change set
        _, seen["second"] = airflow_api.wait_for_request(APPROVAL_TASKS[1])  # the run asks again
        seen["pages_while_asking_again"] = settled_approval_states(run_id, *APPROVAL_TASKS[:2])
        seen["writes_before_second_answer"] = [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"]
        airflow_api.answer(run_id, "Approve", APPROVAL_TASKS[1])

    stopped, timings["stopped, asked twice, approved"] = run_with_reviewer(import_dag, airflow_api, reviewer)
    print("approval timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    assert stopped.state == "success", task_states(stopped)
    assert stopped.run_id == seen["run_id"]
    assert seen["writes_while_waiting"] == [] and seen["learning_while_waiting"] == world["learning_before"]
    assert seen["sync_run_while_waiting"]["status"] == "waiting"
    assert seen["writes_before_second_answer"] == [], "an approval of a change set that changed loads nothing"
    # The Districts pages link to an approval task only while Airflow has it parked (its buttons work),
    # and only once it has been parked for dashboard.SETTLE_SECONDS (an answer sooner can be lost).
    assert seen["pages_right_after_the_park"] in ([ASKING], [ANSWERABLE])  # ANSWERABLE only if this thread stalled
    assert seen["pages_while_waiting"] == [ANSWERABLE]
    assert seen["pages_while_asking_again"] == [NOT_WAITING, ANSWERABLE]
    assert approval_states(stopped.run_id, *APPROVAL_TASKS[:2]) == [NOT_WAITING, NOT_WAITING]

    # What the person was shown: the figures per school, examples, what each answer does.
    first, second = seen["first"], seen["second"]
    assert "Demo Unified School District" in first["subject"]
    assert shown_users_leaving(first["body"], school) == world["leaving_here"]
    examples = re.search(rf"\| {school} \| users deactivated \|[^\n]*\| ([^|\n]+) \|\n", first["body"]).group(1)
    shown = re.findall(r"`([^`]+)`", examples)
    assert len(shown) == 5 and set(shown) <= world["leaving_keys"], shown  # ids a person can look up
    assert "**Approve** loads exactly these" in first["body"] and "**Reject** loads nothing" in first["body"]
    assert first["options"] == ["Approve", "Reject"]
    assert shown_users_leaving(second["body"], school) == seen["leaving_here_now"] > world["leaving_here"]
    assert second["responded_by_user"] is None and first["body"] != second["body"]

    # Staging: the first review superseded (approved too late), the second approved by the reviewer.
    rows = reviews(sandboxes.staging_url, stopped.run_id)
    assert [(r["status"], r["decided_by"], r["task_id"]) for r in rows] == [
        ("superseded", "reviewer", APPROVAL_TASKS[0]),
        ("approved", "reviewer", APPROVAL_TASKS[1]),
    ]
    states = task_states(stopped)
    assert [states[t] for t in APPROVAL_TASKS] == ["success"] * 3 and states["load.load_learning"] == "success"
    assert rows[1]["rows"] > rows[0]["rows"]
    assert sync_run(sandboxes.staging_url, stopped.run_id)["status"] == "success"
    assert len(sandboxes.smtp.mailbox.messages) == 0, "an approved run sends no email"

    # Learning holds exactly the second change set: the 45 leavers disabled, nothing else changed.
    dataset_path = world["dataset_path"]
    after = expected_state(dataset_path, failed_users=failed_users(sandboxes.staging_url, stopped.run_id, dataset_path))
    disabled = set(world["before"].users) - set(after.users)
    leavers = world["leavers"] + world["more_leavers"]
    assert set(leavers) <= disabled
    state = sandboxes.learning_state()
    assert all(state["users"][key]["enabled"] is False for key in leavers)
    assert_learning_matches(after, state, disabled=disabled)


@pytest.mark.parametrize("dataset", ["demo"])
@pytest.mark.parametrize("answer", ["Reject", "timeout"])
def test_a_rejection_or_a_timeout_loads_nothing_and_emails_the_district(import_dag, sandboxes, airflow_api, answer):
    world = first_import_then_leavers(import_dag, sandboxes)
    school = world["school"]
    mark = sandboxes.learning_log_mark()
    seen: dict[str, Any] = {}

    def reviewer() -> None:
        run_id, _request = airflow_api.wait_for_request()
        task = airflow_api.task(run_id, APPROVAL_TASK)
        seen["run_id"] = run_id
        if answer == "Reject":
            airflow_api.answer(run_id, "Reject")
            return
        # The deadline comes from the district's safety.approval_timeout_hours (24 by default).
        deadline = staged_airflow_deadline(run_id)
        seen["deadline_hours"] = (deadline - parse_time(task["start_date"])).total_seconds() / 3600
        move_deadline_to_the_past(run_id)  # the clock, 24 hours on
        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

        SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()  # the scheduler's own timeout sweep

    stopped, _ = run_with_reviewer(import_dag, airflow_api, reviewer)
    assert stopped.state == "failed"
    states = task_states(stopped)
    assert states[APPROVAL_TASK] == "success", states  # an answer (or the timeout) is not a task failure
    assert [states[t] for t in (*APPROVAL_TASKS[1:], "load.load_learning")] == ["skipped"] * 3, states
    assert states["report.report"] == "failed", states  # the run shows that nothing was loaded
    assert [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"] == [], "nothing may be written"
    assert sandboxes.learning_state() == world["learning_before"]
    status = "rejected" if answer == "Reject" else "timed_out"
    rows = reviews(sandboxes.staging_url, stopped.run_id)
    assert [(r["status"], r["decided_by"], r["task_id"]) for r in rows] == [
        (status, "reviewer" if answer == "Reject" else None, APPROVAL_TASK)
    ]
    assert sync_run(sandboxes.staging_url, stopped.run_id)["status"] == status
    if answer == "timeout":
        assert abs(seen["deadline_hours"] - 24) < 0.1, seen["deadline_hours"]

    message = sandboxes.smtp.mailbox.wait_for(1, timeout=30)[0]
    time.sleep(1.0)
    assert len(sandboxes.smtp.mailbox.messages) == 1
    body = body_text(message)
    assert "Demo Unified School District" in message["Subject"]
    assert "nothing was loaded" in message["Subject"]
    assert ("rejected by reviewer" if answer == "Reject" else "within 24 hour(s)") in message["Subject"]
    seen_here = re.search(rf"School: {school}; What: users deactivated; Rows: ([\d,]+)", body)
    assert seen_here and int(seen_here.group(1)) == world["leaving_here"], body
    assert "approve_mass_changes=true" in body and "Nothing was sent to PowerSchool Learning" in body

    # A preview of the same change set never waits (its findings go into its report).
    previewed, _ = run_dag(import_dag, preview=True)
    assert previewed.state == "success" and task_states(previewed)[APPROVAL_TASK] == "success"
    assert reviews(sandboxes.staging_url, previewed.run_id) == []
    assert sync_run(sandboxes.staging_url, previewed.run_id)["status"] == "previewed"

    # The CLI's way keeps working: triggered with approve_mass_changes=true it goes through at once.
    approved, _ = run_dag(import_dag, approve_mass_changes=True)
    assert approved.state == "success", task_states(approved)
    assert [(r["status"], r["decided_by"]) for r in reviews(sandboxes.staging_url, approved.run_id)] == [
        ("approved", "approve_mass_changes=true (triggered by dag_test)")
    ]
    assert len(sandboxes.smtp.mailbox.messages) == 1, "an approved run sends no email"
    dataset_path = world["dataset_path"]
    after = expected_state(
        dataset_path, failed_users=failed_users(sandboxes.staging_url, approved.run_id, dataset_path)
    )
    disabled = set(world["before"].users) - set(after.users)
    assert set(world["leavers"]) <= disabled
    assert_learning_matches(after, sandboxes.learning_state(), disabled=disabled)


# ---- the approval task's deadline in Airflow's metadata database ---------------------------------


def parse_time(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _approval_ti(session, run_id: str):
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    return session.scalar(
        select(TaskInstance).where(
            TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id, TaskInstance.task_id == APPROVAL_TASK
        )
    )


def staged_airflow_deadline(run_id: str):
    """When the scheduler gives up waiting for an answer (the parked task's ``trigger_timeout``)."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return _approval_ti(session, run_id).trigger_timeout


def move_deadline_to_the_past(run_id: str) -> None:
    from datetime import UTC, datetime, timedelta

    from airflow.utils.session import create_session

    with create_session() as session:
        _approval_ti(session, run_id).trigger_timeout = datetime.now(UTC) - timedelta(seconds=1)
