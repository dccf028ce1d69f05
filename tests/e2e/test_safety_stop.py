"""The safety stop end to end: many students leave one school at once; the run stops until approved.

On the demo-sized district (the tiny one has fewer than 25 students per school). After a
first successful import, 40 active students of one school (about 30% of them, and at
least 25) get enroll_status 2 in the SIS. The next run stops at load.check_mass_changes
before anything is written (Learning is unchanged, no write request reaches it) and the
email explains what it saw and how to approve it. A run triggered with
``{"approve_mass_changes": true}`` then goes through: those students (and the parents
left with no imported child) are disabled in Learning, not deleted, and the end state
equals the oracle's on the changed SIS data.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.compare import assert_learning_matches, failed_users
from tests.e2e.conftest import run_dag
from tests.e2e.oracle import expected_state, user_order
from tests.e2e.test_failure_email import body_text

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
LEAVERS = 40


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.mark.parametrize("dataset", ["demo"])
def test_mass_deactivation_stops_until_approved(import_dag, sandboxes):
    timings = {}
    first, timings["first"] = run_dag(import_dag)
    assert first.state == "success"
    dataset_path = sandboxes.powerschool.database_path
    failed_first = failed_users(sandboxes.staging_url, first.run_id, dataset_path)
    before = expected_state(dataset_path, failed_users=failed_first)

    # 40 imported students of the school with the most students leave (enroll_status 2: transferred out).
    learning_before = sandboxes.learning_state()
    students = [key for key, user in learning_before["users"].items() if user["user_type"] == "S"]
    by_school: dict[str, list[str]] = {}
    for key in students:
        by_school.setdefault(learning_before["users"][key]["organization_id"], []).append(key)
    school, members = max(by_school.items(), key=lambda item: len(item[1]))
    leavers = sorted(members, key=user_order)[:LEAVERS]  # user keys, "S:<dcid>"
    assert len(members) >= 25 and 0.10 * len(members) < LEAVERS
    for key in leavers:
        sandboxes.powerschool.set_enroll_status(int(key.split(":", 1)[1]), 2, exitdate="2025-12-01")
    # Who leaves Learning by the rules: the students, and parents left with no imported child.
    leaving = set(before.users) - set(expected_state(dataset_path, failed_users=failed_first).users)
    leaving_here = sum(1 for key in leaving if learning_before["users"][key]["organization_id"] == school)

    mark = sandboxes.learning_log_mark()
    stopped, timings["stopped"] = run_dag(import_dag)
    assert stopped.state == "failed"
    states = task_states(stopped)
    assert states["load.check_mass_changes"] == "failed", states
    assert states["load.load_learning"] == "upstream_failed", states
    assert [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"] == [], "nothing may be written"
    assert sandboxes.learning_state() == learning_before

    message = sandboxes.smtp.mailbox.wait_for(1, timeout=30)[0]
    time.sleep(1.0)
    assert len(sandboxes.smtp.mailbox.messages) == 1
    body = body_text(message)
    assert "Demo Unified School District" in message["Subject"]
    assert "safety" in message["Subject"].lower() or "mass" in message["Subject"].lower(), message["Subject"]
    seen = re.search(rf"school {school}\D+users\D+(\d+) of (\d+)", body)
    assert seen, body
    assert int(seen.group(1)) == leaving_here, (seen.group(0), leaving_here)  # the count it saw, per school
    assert "approve_mass_changes" in body, body
    assert "nothing was sent to learning" in body.lower(), body

    approved, timings["approved"] = run_dag(import_dag, approve_mass_changes=True)
    print("safety stop timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    assert approved.state == "success"
    assert len(sandboxes.smtp.mailbox.messages) == 1, "an approved run sends no email"
    after = expected_state(
        dataset_path, failed_users=failed_users(sandboxes.staging_url, approved.run_id, dataset_path)
    )
    disabled = set(before.users) - set(after.users)
    assert set(leavers) <= disabled
    state = sandboxes.learning_state()
    assert all(state["users"][key]["enabled"] is False for key in leavers)
    assert_learning_matches(after, state, disabled=disabled)
