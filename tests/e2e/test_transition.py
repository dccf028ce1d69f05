"""Import ID transition on the demo district: existing Learning users matched, approved, then imported.

Issue 19. The Learning domain already has users before the first import (made by hand,
or left by an earlier integration): some with their Google email, some with only their
SIS login, some with an old Import ID the district maps in a CSV, some with nothing, and
one whose email and CSV line disagree. A preview run gives the SIS side; the plan must
match, and leave, exactly those; once applied, the first real import updates the matched
users (same Learning account, login and authentication kept where the SIS agrees) instead
of creating duplicates, and leaves the others alone.
"""

from __future__ import annotations

import pytest

from scripts.demo_environment import seed_existing_users
from tests.e2e.conftest import DISTRICT_ID, run_dag, staged_rows

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_existing_users_are_moved_onto_their_import_ids_before_the_first_import(
    import_dag, sandboxes, tmp_path, monkeypatch
):
    from sis_learning.config import load_district_by_id
    from sis_learning.hooks.learning import LearningHook
    from sis_learning.staging.base import get_engine
    from sis_learning.transition import apply_transition, plan_rows, plan_transition, sis_users

    monkeypatch.setenv("SIS_LEARNING_TRANSITIONS_DIR", str(tmp_path / "transitions"))
    monkeypatch.setenv("SIS_LEARNING_PREVIEWS_DIR", str(tmp_path / "previews"))
    staging = sandboxes.staging_url
    preview, _ = run_dag(import_dag, preview=True, email_preview=False)
    assert preview.state == "success"
    config = load_district_by_id(DISTRICT_ID)
    engine = get_engine(staging)
    organizations = staged_rows(
        staging,
        "SELECT organization_id, name FROM learning_organizations "
        "WHERE district_id = :d AND run_id = :r ORDER BY organization_id",
        d=DISTRICT_ID,
        r=preview.run_id,
    )
    records = sis_users(engine, DISTRICT_ID, preview.run_id)
    kinds = seed_existing_users(sandboxes.learning, DISTRICT_ID, organizations, records, tmp_path / "district.csv")
    before = {user["learning_id"]: user for user in sandboxes.learning.admin_users(DISTRICT_ID)}
    assert len(before) == 10

    hook = LearningHook.from_settings(
        sandboxes.learning.base_url, sandboxes.learning_token, sandboxes.learning.ca_bundle
    )
    plan = plan_transition(engine, config, hook.admin_users(), preview.run_id, tmp_path / "district.csv")
    assert plan.counts == {"matched": 7, "ambiguous": 1, "unmatched": 2, "already": 0}
    assert plan.by_method == {"sso_email": 3, "login": 2, "district_csv": 2}
    rows = {row["learning_id"]: row for row in plan_rows(engine, DISTRICT_ID, plan.plan_id)}
    for kind in ("sso_email", "login", "district_csv"):
        assert {rows[learning_id]["method"] for learning_id in kinds[kind]} == {kind}
        assert {rows[learning_id]["outcome"] for learning_id in kinds[kind]} == {"matched"}
    assert {rows[learning_id]["outcome"] for learning_id in kinds["unmatched"]} == {"unmatched"}
    assert [rows[learning_id]["outcome"] for learning_id in kinds["ambiguous"]] == ["ambiguous"]
    assert "matches.csv" in plan.html_path.read_text()
    # Planning wrote nothing to Learning.
    assert {user["learning_id"]: user for user in sandboxes.learning.admin_users(DISTRICT_ID)} == before

    applied = apply_transition(engine, config, plan.plan_id, hook)
    statuses = {row["learning_id"]: row["status"] for row in plan_rows(engine, DISTRICT_ID, applied.plan_id)}
    matched_ids = kinds["sso_email"] + kinds["login"] + kinds["district_csv"]
    assert {statuses[learning_id] for learning_id in matched_ids} == {"applied"}
    assert {statuses[learning_id] for learning_id in kinds["unmatched"] + kinds["ambiguous"]} == {"skipped"}
    # Approving again changes nothing; planning again finds the moved users on their Import IDs.
    apply_transition(engine, config, plan.plan_id, hook)
    again = plan_transition(engine, config, hook.admin_users(), preview.run_id, tmp_path / "district.csv")
    assert again.counts == {"matched": 0, "ambiguous": 1, "unmatched": 2, "already": 7}

    first, _ = run_dag(import_dag, preview=False, email_preview=False)
    assert first.state == "success"
    after = {user["learning_id"]: user for user in sandboxes.learning.admin_users(DISTRICT_ID)}
    for learning_id in matched_ids:
        row, user = rows[learning_id], after[learning_id]
        assert user["external_id"] == row["new_import_id"], row
        answer = staged_rows(
            staging,
            "SELECT action, learning_result FROM change_set WHERE district_id = :d AND "
            "run_id = :r AND entity = 'users' AND key = :k",
            d=DISTRICT_ID,
            r=first.run_id,
            k=f"{row['user_type']}:{row['new_import_id']}",
        )
        assert answer == [{"action": "create", "learning_result": "updated"}], row
    for learning_id in kinds["sso_email"]:
        assert after[learning_id]["authentication_type"] == "google"  # SSO stays, as the source document says
    for learning_id in kinds["login"]:
        assert after[learning_id]["login"] == before[learning_id]["login"]
    # No duplicates: one Learning user per (type, Import ID), and the users left for the district untouched.
    keys = [(user["user_type"], user["external_id"]) for user in after.values() if user["external_id"]]
    assert len(keys) == len(set(keys))
    for learning_id in kinds["unmatched"] + kinds["ambiguous"]:
        assert after[learning_id] == before[learning_id]
    assert sorted(
        user["learning_id"] for user in sandboxes.learning.admin_users(DISTRICT_ID, without_import_id=True)
    ) == sorted(kinds["unmatched"] + kinds["ambiguous"])
