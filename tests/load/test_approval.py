"""The approval decisions (sis_learning.approval) on SQLite and PostgreSQL staging, with the real load.

What a district relies on when the safety guard stops a run: the run waits with a review
holding the figures per school and examples; an approval loads exactly the change set that
was shown, checked when the person answers and again at the load; a change set that changed
meanwhile is asked about again and nothing is loaded; a rejection or a timeout loads
nothing; the ``approve_mass_changes`` parameter approves without waiting; a retry or rerun
neither asks twice nor loads twice; a new run closes an unanswered review. The Learning
server is the reference one over HTTPS (tests/load/conftest.py); Airflow is not involved
here (tests/e2e/test_approval.py runs the DAG).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sis_learning import approval
from sis_learning.diff import change_counts, compute_changes
from sis_learning.load import load_run
from sis_learning.staging.base import session_scope
from sis_learning.staging.reviews import MassChangeReview, latest_review
from sis_learning.staging.runs import get_run, start_run
from tests.load.district_rows import LearningDistrict, write_run
from tests.load.test_load import config, expected_state, learning_state, sync

LEAVERS = 30


def stopped_run(engine, hook, leavers: int = LEAVERS) -> tuple[LearningDistrict, LearningDistrict, list[str]]:
    """run-1 loaded; run-2 has ``leavers`` students of school 100 leaving and is diffed (not guarded yet)."""
    first = LearningDistrict.generate(schools=2, students_per_school=40, parents=False)
    sync(engine, first, "run-1", hook)
    second = first.copy()
    leaving = second.students_of("100")[:leavers]
    for student in leaving:
        second.remove_user(student)
    start_run(engine, "loadtest", "run-2", dag_id="sis_import__loadtest")
    write_run(engine, second, "run-2")
    compute_changes(engine, config(), "run-2")
    return first, second, leaving


def reviews(engine, run_id: str = "run-2") -> list[MassChangeReview]:
    with session_scope(engine) as session:
        return list(
            session.scalars(
                select(MassChangeReview).where(MassChangeReview.run_id == run_id).order_by(MassChangeReview.id)
            )
        )


def test_a_stopped_run_waits_and_an_approval_loads_exactly_what_was_shown(
    staging_engine, learning_domain, default_password
):
    hook = learning_domain.hook()
    first, second, leaving = stopped_run(staging_engine, hook)

    verdict = approval.guard_run(staging_engine, config(), "run-2", approve_mass_changes=False)
    assert verdict["decision"] == approval.WAITING
    review = approval.request_approval(staging_engine, config(), "run-2")
    assert review is not None and review.id == verdict["review_id"] and review.status == "waiting"
    assert approval.request_approval(staging_engine, config(), "run-2").id == review.id  # asked once, not twice
    assert approval.guard_run(staging_engine, config(), "run-2", approve_mass_changes=False)["review_id"] == review.id
    assert len(reviews(staging_engine)) == 1

    # What the person sees: per school the figures and examples, the whole change set per entity.
    shown = approval.body(config(), "run-2", review, change_counts(staging_engine, "loadtest", "run-2"))
    assert f"| 100 | users deactivated | {LEAVERS} | 44 in Learning | 68% | `S:{leaving[0]}`" in shown, shown
    assert "| 101 |" not in shown  # the untouched school
    assert f"**The whole change set ({review.rows} row(s))**" in shown
    assert f"| users | 0 | 0 | {LEAVERS} | 0 |" in shown
    assert "Family" not in shown  # no names: ids only for a mass removal
    assert review.fingerprint[:12] in shown

    # Not approved yet: the load refuses before sending anything.
    with pytest.raises(approval.ChangeSetNotApproved, match="not approved"):
        approval.check_before_load(staging_engine, config(), "run-2")
    assert learning_state(hook) == expected_state(first)
    assert get_run(staging_engine, "loadtest", "run-2").status == "running"
    approval.mark_asked(staging_engine, "loadtest", "run-2", review.id, "load.approve_mass_changes")
    assert get_run(staging_engine, "loadtest", "run-2").status == "waiting"
    assert latest_review(staging_engine, "loadtest", "run-2").task_id == "load.approve_mass_changes"

    outcome = approval.record_answer(
        staging_engine, config(), "run-2", approved=True, responded_by="reviewer", review_id=review.id
    )
    assert outcome["decision"] == approval.APPROVED
    decided = latest_review(staging_engine, "loadtest", "run-2")
    assert (decided.status, decided.decided_by) == ("approved", "reviewer") and decided.decided_at is not None
    assert get_run(staging_engine, "loadtest", "run-2").status == "running"
    assert approval.request_approval(staging_engine, config(), "run-2") is None  # a retry does not ask again

    assert approval.check_before_load(staging_engine, config(), "run-2").id == review.id
    summary = load_run(staging_engine, config(), "run-2", hook)
    assert summary["counts"]["users"]["deactivated"] == LEAVERS
    assert learning_state(hook) == expected_state(first, second)
    # A rerun after the load (the diff keeps what Learning accepted): still the approved change set.
    compute_changes(staging_engine, config(), "run-2")
    assert approval.check_before_load(staging_engine, config(), "run-2").id == review.id
    assert approval.describe_decision(decided).startswith(f"Mass changes ({review.rows} row(s)) approved by reviewer")


def test_a_change_set_that_changed_is_asked_about_again(staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    first, second, _ = stopped_run(staging_engine, hook)
    approval.guard_run(staging_engine, config(), "run-2", approve_mass_changes=False)
    shown = approval.request_approval(staging_engine, config(), "run-2")

    # While the person looks, the diff runs again on a SIS where five more students left.
    more = second.copy()
    for student in more.students_of("100")[:5]:
        more.remove_user(student)
    write_run(staging_engine, more, "run-2")
    compute_changes(staging_engine, config(), "run-2")

    outcome = approval.record_answer(
        staging_engine, config(), "run-2", approved=True, responded_by="reviewer", review_id=shown.id
    )
    assert outcome["decision"] == approval.CHANGED
    old = latest_review(staging_engine, "loadtest", "run-2")
    assert old.status == "superseded" and "changed since it was shown" in old.message
    with pytest.raises(approval.ChangeSetNotApproved):
        approval.check_before_load(staging_engine, config(), "run-2")
    assert learning_state(hook) == expected_state(first)  # nothing loaded

    again = approval.request_approval(staging_engine, config(), "run-2")  # the approval task's next try
    assert again is not None and again.id != shown.id and again.status == "waiting"
    assert again.rows > shown.rows and again.fingerprint != shown.fingerprint
    users = next(finding for finding in again.findings if finding["entity"] == "users")
    assert users["rows"] == LEAVERS + 5
    approval.record_answer(staging_engine, config(), "run-2", approved=True, responded_by="reviewer")

    # Approved, and then the diff runs again before the load: the load refuses, nothing is sent.
    even_more = more.copy()
    for student in even_more.students_of("100")[:1]:
        even_more.remove_user(student)
    write_run(staging_engine, even_more, "run-2")
    compute_changes(staging_engine, config(), "run-2")
    with pytest.raises(approval.ChangeSetNotApproved, match="changed after reviewer approved it"):
        approval.check_before_load(staging_engine, config(), "run-2")
    assert latest_review(staging_engine, "loadtest", "run-2").status == "superseded"
    assert learning_state(hook) == expected_state(first)
    third = approval.request_approval(staging_engine, config(), "run-2")  # cleared: asks again
    assert third is not None and third.status == "waiting" and third.rows > again.rows
    approval.record_answer(staging_engine, config(), "run-2", approved=True, responded_by="second reviewer")
    load_run(staging_engine, config(), "run-2", hook)
    assert learning_state(hook) == expected_state(first, even_more)
    assert [review.status for review in reviews(staging_engine)] == ["superseded", "superseded", "approved"]


@pytest.mark.parametrize("answer", ["rejected", "timed_out"])
def test_a_rejection_or_a_timeout_loads_nothing(staging_engine, learning_domain, default_password, answer):
    hook = learning_domain.hook()
    first, _, _ = stopped_run(staging_engine, hook)
    approval.guard_run(staging_engine, config(), "run-2", approve_mass_changes=False)
    outcome = approval.record_answer(
        staging_engine,
        config(),
        "run-2",
        approved=False if answer == "rejected" else None,
        responded_by="reviewer" if answer == "rejected" else None,
    )
    assert outcome["decision"] == answer
    review = latest_review(staging_engine, "loadtest", "run-2")
    assert review.status == answer
    assert review.decided_by == ("reviewer" if answer == "rejected" else None)
    assert get_run(staging_engine, "loadtest", "run-2").status == answer
    with pytest.raises(approval.ChangeSetNotApproved, match=answer):
        approval.check_before_load(staging_engine, config(), "run-2")
    assert learning_state(hook) == expected_state(first)
    assert "nothing was loaded" in approval.describe_decision(review)
    # A late answer to the closed review does not approve anything.
    late = approval.record_answer(staging_engine, config(), "run-2", approved=True, responded_by="late")
    assert late["decision"] == approval.CHANGED
    assert latest_review(staging_engine, "loadtest", "run-2").status == answer


def test_the_parameter_approves_without_waiting(staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    first, second, _ = stopped_run(staging_engine, hook)
    verdict = approval.guard_run(staging_engine, config(), "run-2", approve_mass_changes=True, triggered_by="admin-cli")
    assert verdict["decision"] == approval.APPROVED
    review = latest_review(staging_engine, "loadtest", "run-2")
    assert review.status == "approved"
    assert review.decided_by == "approve_mass_changes=true (triggered by admin-cli)"
    assert approval.request_approval(staging_engine, config(), "run-2") is None  # nothing waits
    assert approval.check_before_load(staging_engine, config(), "run-2").id == review.id
    load_run(staging_engine, config(), "run-2", hook)
    assert learning_state(hook) == expected_state(first, second)


def test_no_finding_no_review(staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    stopped_run(staging_engine, hook, leavers=3)
    assert approval.guard_run(staging_engine, config(), "run-2", approve_mass_changes=False) == {
        "decision": approval.NOT_NEEDED,
        "findings": 0,
    }
    assert reviews(staging_engine) == []
    assert approval.request_approval(staging_engine, config(), "run-2") is None
    assert approval.check_before_load(staging_engine, config(), "run-2") is None


def test_a_school_dropping_to_zero_stops_whatever_its_size(sqlite_staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    first = LearningDistrict.generate(schools=2, students_per_school=6, teachers_per_school=1, parents=False)
    sync(sqlite_staging_engine, first, "run-1", hook)
    second = first.copy()
    gone = [key for key, row in second.users.items() if row["organization_id"] == "101"]
    assert 0 < len(gone) < 25  # below the row floor of a mass removal
    for key in gone:
        second.remove_user(key)
    second.classes = {key: row for key, row in second.classes.items() if row["organization_id"] != "101"}
    write_run(sqlite_staging_engine, second, "run-2")
    compute_changes(sqlite_staging_engine, config(), "run-2")
    approval.guard_run(sqlite_staging_engine, config(), "run-2", approve_mass_changes=False)
    review = latest_review(sqlite_staging_engine, "loadtest", "run-2")
    assert [(f["kind"], f["organization_id"], f["rows"]) for f in review.findings] == [
        ("school_emptied", "101", len(gone))
    ]
    assert "school 101 would drop to zero users" in review.message


def test_after_an_incremental_read_a_school_whose_other_users_were_carried_is_not_emptied(
    staging_engine, learning_domain, default_password
):
    """A delta diff writes change-set rows only for the keys that may have changed: one student
    leaving a school whose other users were all carried forward unchanged is no "school emptied"
    stop (a full run's diff sees them as unchanged rows; the guard must see them after a delta too)."""
    from sis_learning.diff import ENTITY_BY_NAME, _diff_one, _register_sqlite_functions, find_mass_changes

    hook = learning_domain.hook()
    first = LearningDistrict.generate(schools=2, students_per_school=6, teachers_per_school=1, parents=False)
    sync(staging_engine, first, "run-1", hook)
    second = first.copy()
    leaver = second.students_of("101")[0]
    second.remove_user(leaver)
    start_run(staging_engine, "loadtest", "run-2", dag_id="sis_import__loadtest")
    write_run(staging_engine, second, "run-2")
    with staging_engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            _register_sqlite_functions(connection)  # as compute_changes does
        _diff_one(
            connection,
            ENTITY_BY_NAME["users"],
            "loadtest",
            "run-2",
            source=object(),
            made_anew={"users": {f"S:{leaver}"}},
            retry={},
            unchanged={},
        )
    counts = change_counts(staging_engine, "loadtest", "run-2")
    assert counts["users"]["deactivate"] == 1 and counts["users"]["unchanged"] == 0
    assert find_mass_changes(staging_engine, config(), "run-2") == []
    # Every user of the school leaving is still a stop after a delta diff.
    third = second.copy()
    gone = second.students_of("101") + [
        key for key, row in second.users.items() if row["organization_id"] == "101" and row["user_type"] == "T"
    ]
    for key in gone:
        third.remove_user(key)
    start_run(staging_engine, "loadtest", "run-3", dag_id="sis_import__loadtest")
    write_run(staging_engine, third, "run-3")
    with staging_engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            _register_sqlite_functions(connection)
        _diff_one(
            connection,
            ENTITY_BY_NAME["users"],
            "loadtest",
            "run-3",
            source=object(),
            made_anew={"users": {f"{first.users[key]['user_type']}:{key}" for key in [leaver, *gone]}},
            retry={},
            unchanged={},
        )
    findings = find_mass_changes(staging_engine, config(), "run-3")
    assert [(f["kind"], f["organization_id"]) for f in findings] == [("school_emptied", "101")]


def test_a_new_run_closes_an_unanswered_review(staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    stopped_run(staging_engine, hook)
    verdict = approval.guard_run(staging_engine, config(), "run-2", approve_mass_changes=False)
    approval.mark_asked(staging_engine, "loadtest", "run-2", verdict["review_id"], "load.approve_mass_changes")
    assert approval.abandon_waiting_reviews(staging_engine, "loadtest", "run-3") == ["run-2"]
    assert latest_review(staging_engine, "loadtest", "run-2").status == "abandoned"
    from sis_learning.staging.runs import abandon_unfinished_runs

    assert [item["run_id"] for item in abandon_unfinished_runs(staging_engine, "loadtest", "run-3")] == ["run-2"]
    run = get_run(staging_engine, "loadtest", "run-2")
    assert run.status == "abandoned" and "waiting for a person's approval" in run.error
