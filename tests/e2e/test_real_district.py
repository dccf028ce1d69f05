"""A district with the irregularities of real ones, imported twice with a rename in between.

The tiny district with irregularities (sandbox/powerschool/irregularities.py): students
sharing their DCID with a teacher or a guardian, guardians sharing theirs with a teacher,
emails that are not addresses, pre-K students without a grade level, ended SectionTeacher
rows, transfers, empty expressions. Learning must hold exactly what the source
document's rules admit (the oracle), every user the rules import among them, and a
student whose login was generated keeps it after a rename (moves, deactivation and return:
tests/transform/test_transform.py).
"""

from __future__ import annotations

import pytest

from tests.e2e.compare import assert_learning_matches, failed_users
from tests.e2e.conftest import run_dag
from tests.e2e.oracle import expected_state

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture
def irregularities() -> bool:
    return True


def test_overlapping_ids_and_messy_fields_import_every_user_and_a_rename_keeps_the_generated_login(
    import_dag, sandboxes
):
    powerschool = sandboxes.powerschool
    counted = powerschool.info()["dataset"]["irregularities"]
    assert counted["overlapping_ids"] > 0 and counted["bad_emails"] > 0, counted
    dataset_path = powerschool.database_path

    first, _seconds = run_dag(import_dag)
    assert first.state == "success"
    failed = failed_users(sandboxes.staging_url, first.run_id, dataset_path)
    oracle = expected_state(dataset_path, failed_users=failed)
    state = sandboxes.learning_state()
    assert_learning_matches(oracle, state)
    # Dropped from a section and enrolled in it again: in the class, by the new CC row; the dropped one is left out.
    with powerschool.store() as dataset:
        re_enrolled = [
            (str(row["section_dcid"]), f"S:{row['student_dcid']}")
            for row in dataset.query(
                "SELECT sec.dcid AS section_dcid, s.dcid AS student_dcid FROM cc d "
                "JOIN cc n ON n.studentid = d.studentid AND n.sectionid = -d.sectionid AND n.id > d.id "
                "JOIN sections sec ON sec.id = n.sectionid JOIN students s ON s.id = n.studentid "
                "WHERE d.sectionid < 0 AND d.dateleft = '2025-09-12' AND n.dateenrolled = '2025-09-22'"
            )
        ]
    assert len(re_enrolled) == counted["re_enrolled_after_drop"] > 0, re_enrolled
    rostered = [pair for pair in re_enrolled if pair in oracle.rosters]
    assert rostered, f"no re-enrolled student's class reaches Learning in this district: {re_enrolled}"
    assert all(state["rosters"].get(pair) == "student" for pair in rostered), (rostered, state["rosters"])
    # A student, a teacher and a parent with the same number are three users in Learning.
    numbers: dict[str, set[str]] = {}
    for key in state["users"]:
        user_type, _, number = key.partition(":")
        numbers.setdefault(number, set()).add(user_type)
    assert any(len(types) > 1 for types in numbers.values()), "no DCID shared across user types reached Learning"

    # A student whose login was generated (no Student_Web_ID, no Google email), renamed in the SIS.
    generated = sorted(key for key, user in oracle.users.items() if user["user_type"] == "S" and user["login"] is None)
    assert generated, "the tiny district has students without a username"
    key = generated[0]
    student_dcid = int(key.partition(":")[2])
    login = state["users"][key]["login"]
    with powerschool.store() as dataset:
        student = next(dataset.rows("students", "dcid = ?", (student_dcid,)))
    powerschool.rename("student", student_dcid, last_name=f"{student['last_name']}-Renamed", first_name="Renée")

    second, _seconds = run_dag(import_dag)
    assert second.state == "success"
    failed = failed_users(sandboxes.staging_url, second.run_id, dataset_path)
    state = sandboxes.learning_state()
    assert_learning_matches(expected_state(dataset_path, failed_users=failed), state)
    renamed = state["users"][key]
    assert (renamed["first_name"], renamed["last_name"]) == ("Renée", f"{student['last_name']}-Renamed")
    assert renamed["login"] == login, f"the generated login changed from {login!r} to {renamed['login']!r}"
