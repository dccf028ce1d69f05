"""The second run sends only the changes: one roster row created, one removed, one user renamed.

After a first full import, ``apply_everyday_changes`` (the demo's own between-run changes)
enrols a student in a class, drops another from it and renames a third, in the SIS
simulator. The second run's change set, its load counts and the requests the Learning
server served (its access log) must show exactly those three changes, and the Learning
end state must again equal the oracle on the changed SIS data.
"""

from __future__ import annotations

from collections import Counter

import pytest

from scripts.demo_environment import apply_everyday_changes
from tests.e2e.compare import assert_learning_matches, failed_users
from tests.e2e.conftest import DISTRICT_ID, run_dag, staged_rows
from tests.e2e.oracle import expected_state

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def change_counts(staging_url: str, run_id: str) -> dict[tuple[str, str, str], int]:
    rows = staged_rows(
        staging_url,
        "SELECT entity, action, status, COUNT(*) AS n FROM change_set "
        "WHERE district_id = :d AND run_id = :r AND action <> 'unchanged' "
        "GROUP BY entity, action, status",
        d=DISTRICT_ID,
        r=run_id,
    )
    return {(row["entity"], row["action"], row["status"]): row["n"] for row in rows}


def load_counts(staging_url: str, run_id: str) -> dict[str, dict[str, int]]:
    import json

    rows = staged_rows(
        staging_url, "SELECT counts FROM sync_runs WHERE district_id = :d AND run_id = :r", d=DISTRICT_ID, r=run_id
    )
    counts = rows[0]["counts"]
    return json.loads(counts) if isinstance(counts, str) else counts


def test_second_run_sends_only_the_changes(import_dag, sandboxes):
    first_mark = sandboxes.learning_log_mark()
    first, first_seconds = run_dag(import_dag)
    assert first.state == "success"
    first_requests = [r for r in sandboxes.learning_requests(first_mark) if r[0] != "GET"]

    dataset_path = sandboxes.powerschool.database_path
    failed_first = failed_users(sandboxes.staging_url, first.run_id, dataset_path)
    before = expected_state(dataset_path, failed_users=failed_first)
    print("\n".join(apply_everyday_changes(sandboxes.powerschool, sandboxes.learning)))
    # What the SIS changes mean for Learning, by the rules (independently of the demo's wording).
    after = expected_state(dataset_path, failed_users=failed_first)
    roster_created = sorted(f"{c}:{u}" for c, u in set(after.rosters) - set(before.rosters))
    roster_removed = sorted(f"{c}:{u}" for c, u in set(before.rosters) - set(after.rosters))
    user_updated = sorted(key for key in set(before.users) & set(after.users) if before.users[key] != after.users[key])
    assert (len(roster_created), len(roster_removed), len(user_updated)) == (1, 1, 1), (
        roster_created,
        roster_removed,
        user_updated,
    )

    # An admin puts the user about to be updated on Office 365 SSO by hand: imports never change that.
    sandboxes.learning.set_authentication(DISTRICT_ID, user_updated[0], "office365")

    mark = sandboxes.learning_log_mark()
    second, second_seconds = run_dag(import_dag)
    print(f"first run {first_seconds:.1f}s ({len(first_requests)} Learning writes), second run {second_seconds:.1f}s")
    assert second.state == "success"
    writes = [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"]
    # The second run of the day read every entity with a change cursor incrementally (issue 17)
    # and still equals the oracle below.
    modes = staged_rows(
        sandboxes.staging_url,
        "SELECT run_id, entity, mode FROM extract_reads WHERE district_id = :d AND entity <> '*'",
        d=DISTRICT_ID,
    )
    by_run: dict[str, dict[str, str]] = {}
    for row in modes:
        by_run.setdefault(row["run_id"], {})[row["entity"]] = row["mode"]
    assert set(by_run[first.run_id].values()) == {"full"}, by_run
    assert set(by_run[second.run_id].values()) == {"incremental"}, by_run
    assert {"students", "staff", "sections", "courses", "section_enrollments"} <= set(by_run[second.run_id]), by_run

    # Rows Learning refused in an earlier run are tried again (by design: the snapshot only
    # advances for accepted rows); they are checked apart, at the end.
    all_changes = change_counts(sandboxes.staging_url, second.run_id)
    refused_again = {key: n for key, n in all_changes.items() if key[2] == "refused"}
    assert {key: n for key, n in all_changes.items() if key[2] != "refused"} == {
        ("rosters", "create", "accepted"): 1,
        ("rosters", "remove", "accepted"): 1,
        ("users", "update", "accepted"): 1,
    }
    changed = staged_rows(
        sandboxes.staging_url,
        "SELECT entity, action, key FROM change_set WHERE district_id = :d "
        "AND run_id = :r AND action <> 'unchanged' AND status <> 'refused'",
        d=DISTRICT_ID,
        r=second.run_id,
    )
    assert sorted((row["entity"], row["action"], row["key"]) for row in changed) == sorted(
        [
            ("rosters", "create", roster_created[0]),
            ("rosters", "remove", roster_removed[0]),
            ("users", "update", user_updated[0]),
        ]
    )
    counts = load_counts(sandboxes.staging_url, second.run_id)
    assert counts["learning_rosters"].get("created") == 1, counts
    assert counts["learning_rosters"].get("removed") == 1, counts
    assert counts["learning_users"].get("updated") == 1, counts

    # The requests: one per kind of change, not a reload (the first run wrote every entity).
    assert Counter(path for _, path, _ in writes) == Counter(
        {
            "/api/v1/rosters/batch": 1,
            "/api/v1/rosters/remove": 1,
            "/api/v1/users/batch": 1,
        }
    ), writes
    assert all(status == 200 for _, _, status in writes)
    assert len(first_requests) >= 6

    learning = sandboxes.learning
    class_id, enrolled = roster_created[0].split(":", 1)  # "<class>:S:<dcid>"
    assert learning.rosters(DISTRICT_ID).get((class_id, enrolled)) == "student"
    assert tuple(roster_removed[0].split(":", 1)) not in learning.rosters(DISTRICT_ID)
    updated_user = learning.user(DISTRICT_ID, user_updated[0])
    assert updated_user["last_name"] == after.users[user_updated[0]]["last_name"]
    assert updated_user["authentication_type"] == "office365", "an import changed an admin-set SSO authentication"
    failed = failed_users(sandboxes.staging_url, second.run_id, sandboxes.powerschool.database_path)
    assert_learning_matches(
        expected_state(sandboxes.powerschool.database_path, failed_users=failed), sandboxes.learning_state()
    )

    if refused_again:
        resent = staged_rows(
            sandboxes.staging_url,
            "SELECT key, reason FROM change_set WHERE district_id = :d AND "
            "run_id = :r AND status = 'refused' ORDER BY key",
            d=DISTRICT_ID,
            r=second.run_id,
        )
        pytest.xfail(
            "pipeline bug (validate/transform, reported to the lead): a lead teacher who failed validation "
            "(login_unique) has their classes rejected by the cascade, but their own SectionTeacher row is kept and "
            "becomes a co-teacher roster row of a class that is never sent; Learning refuses it in every run, so "
            "every incremental run re-sends it. Source rule: 'If the user fails and is the owner of a class, roster "
            f"and class creation will also fail'. Re-sent rows: {resent}"
        )
