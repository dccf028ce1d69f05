"""compute_changes on its own: the first run, keys, hashes, bad input (SQLite and PostgreSQL).

The diffs that need a previous snapshot (updates, deactivations, removals, the safety
guard) are in test_load.py, where a real load against the reference Learning server
advanced the snapshot.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from sis_learning.diff import ENTITY_BY_NAME, compute_changes, content_hash, entity_key
from sis_learning.staging.changes import ChangeSet
from tests.load.district_rows import DISTRICT_ID, LearningDistrict, make_config, write_run


def _change_rows(engine, run_id):
    with engine.connect() as connection:
        return (
            connection.execute(
                select(ChangeSet.__table__).where(ChangeSet.district_id == DISTRICT_ID, ChangeSet.run_id == run_id)
            )
            .mappings()
            .all()
        )


def test_first_run_creates_every_row_once(staging_engine):
    district = LearningDistrict.generate(schools=2, students_per_school=20)
    write_run(staging_engine, district, "run-1")

    counts = compute_changes(staging_engine, make_config(), "run-1")

    for entity, rows in district.tables():
        assert counts[entity] == {"create": len(rows), "update": 0, "deactivate": 0, "remove": 0, "unchanged": 0}
    rows = _change_rows(staging_engine, "run-1")
    assert {row["status"] for row in rows} == {"pending"}
    roster_keys = {row["key"] for row in rows if row["entity"] == "rosters"}
    assert roster_keys == set(district.rosters)  # "<class_id>:<user_type>:<user_id>", as Learning answers
    schools = {row["key"]: row["organization_id"] for row in rows if row["entity"] == "rosters"}
    for key, school in schools.items():
        assert school == district.classes[key.split(":")[0]]["organization_id"]  # rosters count per class's school


def test_payload_is_what_learning_gets_and_never_a_password(staging_engine):
    district = LearningDistrict.generate(schools=1, students_per_school=4, teachers_per_school=1)
    write_run(staging_engine, district, "run-1")
    compute_changes(staging_engine, make_config(), "run-1")
    users = {
        row["key"]: json.loads(row["payload"])
        for row in _change_rows(staging_engine, "run-1")
        if row["entity"] == "users"
    }
    some_id, some_user = next(iter(users.items()))
    assert "password" not in some_user
    assert "login_generated" not in some_user  # a staging detail Learning does not know
    assert some_user["first_name"] == district.users[some_id.split(":", 1)[1]]["first_name"]
    assert some_user["enabled"] is True


def test_recomputing_the_same_run_replaces_pending_rows_without_duplicates(staging_engine):
    district = LearningDistrict.generate(schools=1, students_per_school=10)
    write_run(staging_engine, district, "run-1")
    compute_changes(staging_engine, make_config(), "run-1")
    first = len(_change_rows(staging_engine, "run-1"))
    counts = compute_changes(staging_engine, make_config(), "run-1")
    assert len(_change_rows(staging_engine, "run-1")) == first
    assert counts["users"]["create"] == len(district.users)


def test_runs_and_districts_are_kept_apart(staging_engine):
    district = LearningDistrict.generate(schools=1, students_per_school=5)
    write_run(staging_engine, district, "run-1")
    write_run(staging_engine, LearningDistrict.generate(schools=3), "run-1", district_id="otherdistrict")
    counts = compute_changes(staging_engine, make_config(), "run-1")
    assert counts["organizations"]["create"] == 1


def test_duplicate_keys_from_transform_fail_with_a_clear_message(staging_engine):
    district = LearningDistrict.generate(schools=1, students_per_school=5)
    write_run(staging_engine, district, "run-1")
    from sis_learning.staging.base import bulk_insert
    from sis_learning.staging.learning import LearningUser

    one_user = next(iter(district.users.values()))
    bulk_insert(staging_engine, LearningUser, [{"district_id": DISTRICT_ID, "run_id": "run-1", **one_user}])
    with pytest.raises(
        ValueError,
        match=(
            r"learning_users of run run-1 has the same key more than once "
            rf"\({one_user['user_type']}:{one_user['external_id']} \(2 rows\)"
        ),
    ):
        compute_changes(staging_engine, make_config(), "run-1")
    assert _change_rows(staging_engine, "run-1") == []  # one transaction: nothing half-written


def test_database_hash_and_payload_match_the_python_definition(staging_engine):
    """The diff hashes in SQL; a snapshot written by a Python-hashing version must still compare equal.

    Covers what the SQL has to render like Python: None apart from "", booleans as True/False
    (true/false in JSON), non-ASCII text, quotes and control characters.
    """
    district = LearningDistrict.generate(schools=1, students_per_school=6, teachers_per_school=1)
    users = list(district.users.values())
    users[0].update(first_name="Zoë", last_name='O"Brien\\', email=None, enabled=False)
    users[1].update(
        first_name="Анна", last_name="Tab\there", sso_email_address="ann@school.org", password_temporary=False
    )
    users[2].update(email="", last_name="\u00e9\u4e2d\U0001f600")
    write_run(staging_engine, district, "run-1")
    compute_changes(staging_engine, make_config(), "run-1")
    rows = _change_rows(staging_engine, "run-1")
    assert rows
    for row in rows:
        spec = ENTITY_BY_NAME[row["entity"]]
        by_key = {entity_key(source, spec): source for source in getattr(district, spec.name).values()}
        expected = {name: by_key[row["key"]][name] for name in spec.payload_fields}
        assert json.loads(row["payload"]) == expected
        assert row["content_hash"] == content_hash(expected, spec)
        assert row["key"] == entity_key(expected, spec)


def test_missing_run_id_is_refused(staging_engine):
    with pytest.raises(ValueError, match="needs the run id"):
        compute_changes(staging_engine, make_config(), "")


def test_hash_covers_learning_visible_fields_only():
    users = ENTITY_BY_NAME["users"]
    row = {
        "external_id": "7",
        "first_name": "Ann",
        "last_name": "Lee",
        "login": "alee",
        "email": None,
        "user_type": "S",
        "organization_id": "100",
        "enabled": True,
        "sso_email_address": None,
        "password_temporary": True,
    }
    assert content_hash({**row, "password_temporary": False}, users) == content_hash(row, users)
    assert content_hash({**row, "last_name": "Li"}, users) != content_hash(row, users)
    assert content_hash({**row, "enabled": False}, users) != content_hash(row, users)
    roster = {"class_id": "51", "user_type": "S", "user_id": "7", "role": "student"}
    assert entity_key(roster, ENTITY_BY_NAME["rosters"]) == "51:S:7"
    # a student, a teacher and a parent may share a number: a user is keyed by type and id
    assert entity_key(row, users) == "S:7" and entity_key({**row, "user_type": "T"}, users) == "T:7"


def test_mass_change_detected_keeps_its_findings_across_processes():
    import pickle

    from sis_learning.diff import MassChangeDetected

    findings = [{"kind": "mass_removal", "entity": "users", "organization_id": "100", "rows": 30}]
    copied = pickle.loads(pickle.dumps(MassChangeDetected("Safety stop for district demo", findings)))
    assert str(copied) == "Safety stop for district demo" and copied.findings == findings


def test_a_snapshot_from_before_identity_by_type_is_rekeyed_on_first_use_and_nothing_is_resent(staging_engine):
    """Users were keyed "5", roster rows "<class>:5": the first diff after the upgrade rekeys
    them to "S:5" and "<class>:S:5" (roster payload and hash gain user_type), so an unchanged
    district is all unchanged, and a student and a teacher with the same number stay two users."""
    import hashlib

    from sis_learning.staging.changes import LearningSnapshot, StagingMarker

    district = LearningDistrict.generate(schools=1, students_per_school=6, teachers_per_school=1, parents=False)
    write_run(staging_engine, district, "run-1")
    compute_changes(staging_engine, make_config(), "run-1")
    old_rows = []
    for change in _change_rows(staging_engine, "run-1"):
        payload = json.loads(change["payload"])
        key, content = change["key"], change["content_hash"]
        if change["entity"] == "users":
            key = payload["external_id"]  # the old key: the external id alone
        elif change["entity"] == "rosters":
            del payload["user_type"]
            key = f"{payload['class_id']}:{payload['user_id']}"
            old_text = "\x1f".join(str(payload[name]) for name in ("class_id", "user_id", "role"))
            content = hashlib.sha256(old_text.encode()).hexdigest()
        old_rows.append(
            {
                "district_id": DISTRICT_ID,
                "entity": change["entity"],
                "key": key,
                "organization_id": change["organization_id"],
                "content_hash": content,
                "payload": json.dumps(payload),
                "active": True,
                "run_id": "run-0",
            }
        )
    with staging_engine.begin() as connection:
        connection.execute(ChangeSet.__table__.delete())
        connection.execute(LearningSnapshot.__table__.insert(), old_rows)
        # A staging database from before the rekeying has no marker that it was done.
        connection.execute(StagingMarker.__table__.delete())
    assert any(":" not in row["key"] for row in old_rows if row["entity"] == "users")

    write_run(staging_engine, district, "run-2")
    counts = compute_changes(staging_engine, make_config(), "run-2")

    for entity, rows in district.tables():
        assert counts[entity]["unchanged"] == len(rows), (entity, counts[entity])
    with staging_engine.connect() as connection:
        snapshot = connection.execute(
            select(LearningSnapshot.entity, LearningSnapshot.key, LearningSnapshot.payload)
        ).all()
    user_keys = {key for entity, key, _ in snapshot if entity == "users"}
    assert user_keys == {f"{row['user_type']}:{row['external_id']}" for row in district.users.values()}
    roster_keys = {key for entity, key, _ in snapshot if entity == "rosters"}
    assert roster_keys == set(district.rosters)
    assert all("user_type" in json.loads(payload) for entity, _, payload in snapshot if entity == "rosters")
    # a second diff finds nothing left to rekey and changes nothing
    assert compute_changes(staging_engine, make_config(), "run-2") == counts


def test_a_delta_diff_compares_exactly_the_keys_it_is_given_even_with_colons_in_ids(staging_engine):
    """After an incremental read the diff compares only the keys it is given, and every one of them.

    A roster, user or parent-link key joins several fields with ``:``; an id holding ``:``
    itself must still select its own row and no other, and a key with no row none.
    """
    from sqlalchemy import text

    from sis_learning.diff import _diff_one, _register_sqlite_functions
    from sis_learning.transform_delta import key_sql

    district = LearningDistrict.generate(schools=1, students_per_school=6, teachers_per_school=2)
    write_run(staging_engine, district, "run-1")
    with staging_engine.begin() as connection:
        some_class = connection.scalar(text("SELECT MIN(class_id) FROM learning_rosters WHERE run_id = 'run-1'"))
        for table in ("learning_rosters", "learning_classes"):
            connection.execute(
                text(f"UPDATE {table} SET class_id = 'odd:' || class_id WHERE run_id = 'run-1' AND class_id = :c"),
                {"c": some_class},
            )
        keys = {
            name: connection.scalars(
                text(f"SELECT {key_sql(name)} FROM learning_{name} t WHERE t.run_id = 'run-1' ORDER BY 1")
            ).all()
            for name in ("rosters", "users")
        }
    chosen = {
        "rosters": {key for key in keys["rosters"] if key.startswith("odd:")} | {keys["rosters"][-1]},
        "users": {keys["users"][0], keys["users"][-1], "S:no-such-user"},
    }
    assert len(chosen["rosters"]) >= 2
    with staging_engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            _register_sqlite_functions(connection)  # as compute_changes does
        for name, keys in chosen.items():
            _diff_one(
                connection,
                ENTITY_BY_NAME[name],
                DISTRICT_ID,
                "run-1",
                source=object(),
                made_anew={name: keys},
                retry={},
                unchanged={},
            )
    rows = _change_rows(staging_engine, "run-1")
    for name, keys in chosen.items():
        assert {row["key"] for row in rows if row["entity"] == name} == keys - {"S:no-such-user"}
    assert {row["action"] for row in rows} == {"create"}
