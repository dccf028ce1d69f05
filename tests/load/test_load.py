"""Diff, safety and load against the reference Learning server over HTTPS, staging on SQLite and PostgreSQL.

What a district relies on: the first run creates everything; the next run sends only
what changed (Learning requests proportional to the changes); users who leave are
disabled, never deleted, and their rosters and links removed; a row Learning refuses is
in rejected_rows with Learning's reason and is tried again next run; a mass removal or an
Import ID change stops the run until approved; a crash mid-load followed by a rerun ends
in the same Learning state as a clean run, with no duplicates; the default password goes
to new users only and is never stored.
"""

from __future__ import annotations

import json
import math
import threading

import pytest
from sqlalchemy import select

from sis_learning.diff import ENTITIES, ENTITY_BY_NAME, MassChangeDetected, check_safety, compute_changes, entity_key
from sis_learning.hooks.learning import LearningHook
from sis_learning.load import load_run
from sis_learning.secrets import SecretReferenceError
from sis_learning.staging.changes import ChangeSet, LearningSnapshot
from sis_learning.staging.quality import RejectedRow
from tests.load.district_rows import DISTRICT_ID, LearningDistrict, make_config, write_run

BATCH_SIZE = 50  # small batches so a test district spans several requests


def config(district_id: str = DISTRICT_ID):
    return make_config(district_id, learning={"connection_id": "learning_loadtest", "batch_size": BATCH_SIZE})


def sync(
    engine,
    district: LearningDistrict,
    run_id: str,
    hook: LearningHook,
    approve: bool = False,
    district_id: str = DISTRICT_ID,
    **load_options,
):
    """What the DAG's load task group does: write the run's rows, diff, guard, load."""
    write_run(engine, district, run_id, district_id)
    compute_changes(engine, config(district_id), run_id)
    check_safety(engine, config(district_id), run_id, approve_mass_changes=approve)
    return load_run(engine, config(district_id), run_id, hook, **load_options)


def learning_state(hook: LearningHook) -> dict[str, dict[str, dict]]:
    """Everything the domain holds, per entity and key, in the fields the import sends."""
    state = {}
    for spec in ENTITIES:
        rows = {}
        for row in hook.read_all(spec.name):
            key = ":".join(str(row[name]) for name in spec.key_fields)
            assert key not in rows, f"Learning holds {spec.name} {key} twice"
            rows[key] = {name: row.get(name) for name in spec.compared_fields}
        state[spec.name] = rows
    return state


def expected_state(*runs: LearningDistrict) -> dict[str, dict[str, dict]]:
    """The state the source document's rules give after these runs, in order."""
    state: dict[str, dict[str, dict]] = {spec.name: {} for spec in ENTITIES}
    for district in runs:
        for spec in ENTITIES:
            # keyed as Learning keys them (a user: "S:<id>"; the district's dicts by plain id)
            current = {
                entity_key(row, spec): {name: row.get(name) for name in spec.compared_fields}
                for row in getattr(district, spec.name).values()
            }
            if spec.name == "users":
                for key, row in state["users"].items():
                    if key not in current:
                        current[key] = {**row, "enabled": False}  # disabled, never deleted
            elif spec.vanished_action is None:
                current = {**state[spec.name], **current}  # Learning keeps what it has
            state[spec.name] = current
    return state


def requests_for(counts: dict[str, int]) -> int:
    return sum(math.ceil(rows / BATCH_SIZE) for rows in counts.values())


def staged_rows(engine, table, run_id=None):
    query = select(table.__table__).where(table.district_id == DISTRICT_ID)
    if run_id is not None:
        query = query.where(table.run_id == run_id)
    with engine.connect() as connection:
        return connection.execute(query).mappings().all()


def test_first_run_loads_everything_and_the_next_sends_only_the_changes(
    staging_engine, learning_domain, default_password
):
    hook = learning_domain.hook()
    first = LearningDistrict.generate(schools=2, students_per_school=40)
    summary = sync(staging_engine, first, "run-1", hook)

    assert learning_state(hook) == expected_state(first)
    for entity, rows in first.tables():
        assert summary["counts"][entity]["created"] == len(rows)
        assert summary["counts"][entity]["refused"] == summary["counts"][entity]["pending"] == 0
    assert summary["requests"] == requests_for({entity: len(rows) for entity, rows in first.tables()})
    assert summary["rows_sent"] == summary["rows_changed"] == sum(len(rows) for _, rows in first.tables())

    second = first.copy()
    new_student = second.add_user("39990001", "S", "100", "Nadia", "Newcomer")
    second.user_levels["39990001"] = {"external_id": "39990001", "level_id": "9"}
    a_class = next(iter(second.classes))
    second.add_roster(a_class, "39990001", "student")
    renamed = second.students_of("101")[0]
    second.users[renamed]["last_name"] = "Renamed"
    leaving = second.students_of("100")[5]
    leaving_rosters = sum(1 for row in second.rosters.values() if row["user_id"] == leaving)
    leaving_links = sum(1 for row in second.parent_links.values() if row["child_id"] == leaving)
    second.remove_user(leaving)
    dropped = next(key for key, row in second.rosters.items() if row["role"] == "student")
    del second.rosters[dropped]

    summary = sync(staging_engine, second, "run-2", hook)

    assert learning_state(hook) == expected_state(first, second)
    counts = summary["counts"]
    assert counts["users"] | {"unchanged": 0} == {
        "created": 1,
        "updated": 1,
        "unchanged": 0,
        "deactivated": 1,
        "removed": 0,
        "refused": 0,
        "pending": 0,
    }
    assert counts["rosters"]["created"] == 1
    assert counts["rosters"]["removed"] == leaving_rosters + 1
    assert counts["parent_links"]["removed"] == leaving_links
    assert counts["user_levels"]["created"] == 1
    changed = 1 + 1 + 1 + 1 + 1 + leaving_rosters + 1 + leaving_links
    assert summary["rows_changed"] == summary["rows_sent"] == changed
    # one request per entity and action that changed: users upsert, user_levels, rosters
    # remove, rosters upsert, users deactivate, and parent_links remove when the leaver had a parent
    assert summary["requests"] == 5 + (1 if leaving_links else 0)
    assert f"S:{new_student['external_id']}" in learning_state(hook)["users"]

    # a third run with nothing new sends nothing at all
    summary = sync(staging_engine, second, "run-3", hook)
    assert summary["requests"] == summary["rows_sent"] == summary["rows_changed"] == 0
    assert summary["counts"]["rosters"]["unchanged"] == len(second.rosters)


def test_a_student_a_teacher_and_a_parent_with_the_same_number_are_three_users(
    staging_engine, learning_domain, default_password
):
    """Students.DCID, Teachers.DCID and Guardian.GuardianID are separate sequences: the same
    number is three users in Learning, each with its own rows. The teacher leads a class the
    student with their number sits in, the parent with that number is another child's parent;
    when the student leaves, only the student is disabled and only their rows removed."""
    hook = learning_domain.hook()
    first = LearningDistrict.generate(schools=1, students_per_school=4, teachers_per_school=1, parents=False)
    number, other_child = first.students_of("100")[:2]
    # Dict keys of the test district are its own; Learning keys users by type and number.
    teacher = first.add_user(number, "T", "100", "Tess", "Teacher")
    parent = first.add_user(number, "P", "100", "Pat", "Parent")
    first.users = {key: row for key, row in first.users.items() if key != number}
    student = {**teacher, "user_type": "S", "first_name": "Sam", "last_name": "Student", "login": f"sam.{number}"}
    first.users.update({f"T:{number}": teacher, f"P:{number}": parent, f"S:{number}": student})
    first.classes["59990000"] = {
        "class_id": "59990000",
        "name": "Shared number (1) - 1(A)",
        "code": "SN",
        "year": "3500",
        "teacher_id": number,
        "organization_id": "100",
    }
    first.add_roster("59990000", number, "teacher")
    first.add_roster("59990000", number, "student")
    first.parent_links[f"{number}:{other_child}"] = {"parent_id": number, "child_id": other_child}
    sync(staging_engine, first, "run-1", hook)

    state = learning_state(hook)
    assert state == expected_state(first)
    assert {key: row["first_name"] for key, row in state["users"].items() if key.endswith(f":{number}")} == {
        f"S:{number}": "Sam",
        f"T:{number}": "Tess",
        f"P:{number}": "Pat",
    }
    assert {key for key in state["rosters"] if key.startswith("59990000:")} == {
        f"59990000:T:{number}",
        f"59990000:S:{number}",
    }

    # The student leaves: their user, level, roster rows and links go; the teacher and the parent stay.
    second = first.copy()
    del second.users[f"S:{number}"]
    second.user_levels.pop(number, None)
    for key in [key for key, row in second.rosters.items() if row["user_type"] == "S" and row["user_id"] == number]:
        del second.rosters[key]
    summary = sync(staging_engine, second, "run-2", hook)
    state = learning_state(hook)
    assert state == expected_state(first, second)
    assert state["users"][f"S:{number}"]["enabled"] is False
    assert state["users"][f"T:{number}"]["enabled"] is True and state["users"][f"P:{number}"]["enabled"] is True
    assert f"59990000:T:{number}" in state["rosters"] and f"59990000:S:{number}" not in state["rosters"]
    assert summary["counts"]["users"]["deactivated"] == 1


def test_running_the_same_run_twice_sends_nothing_the_second_time(
    sqlite_staging_engine, learning_domain, default_password
):
    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=1, students_per_school=30)
    first = sync(sqlite_staging_engine, district, "run-1", hook)
    again = sync(sqlite_staging_engine, district, "run-1", hook)

    assert again["requests"] == 0
    assert again["counts"] == first["counts"]  # what Learning accepted in this run is kept
    changes = staged_rows(sqlite_staging_engine, ChangeSet, "run-1")
    assert len(changes) == sum(len(rows) for _, rows in district.tables())  # one row per key, no duplicates
    assert learning_state(hook) == expected_state(district)


def test_the_snapshot_keeps_each_users_login_where_the_next_run_reads_it(
    staging_engine, learning_domain, default_password
):
    """``learning_snapshot.login``: the login Learning accepted, written by the load as the row
    advances (validate and transform read every user's login each run: ``held_logins``); a row
    from before the column (no login there) is read from its payload."""
    from sqlalchemy import update

    from sis_learning.staging.changes import held_logins

    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=1, students_per_school=8)
    sync(staging_engine, district, "run-1", hook)
    renamed = district.copy()
    student = renamed.students_of("100")[0]
    renamed.users[student]["login"] = "a.new.login"
    sync(staging_engine, renamed, "run-2", hook)

    snapshot = staged_rows(staging_engine, LearningSnapshot)
    users = {row["key"]: row for row in snapshot if row["entity"] == "users"}
    assert {key: row["login"] for key, row in users.items()} == {
        key: json.loads(row["payload"])["login"] for key, row in users.items()
    }
    assert users[f"S:{student}"]["login"] == "a.new.login"
    assert all(row["login"] is None for row in snapshot if row["entity"] != "users")
    expected = {f"{row['user_type']}:{external_id}": row["login"] for external_id, row in renamed.users.items()}
    with staging_engine.connect() as connection:
        assert held_logins(connection, DISTRICT_ID) == expected
    table = LearningSnapshot.__table__
    with staging_engine.begin() as connection:
        connection.execute(update(table).where(table.c.entity == "users").values(login=None))
    with staging_engine.connect() as connection:
        assert held_logins(connection, DISTRICT_ID) == expected


def test_refused_rows_are_recorded_with_learnings_reason_and_retried_next_run(
    staging_engine, learning_domain, default_password
):
    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=1, students_per_school=20, teachers_per_school=2)
    teachers = [key for key, row in district.users.items() if row["user_type"] == "T"]
    owner, duplicate = teachers
    district.users[duplicate]["login"] = district.users[owner]["login"]  # logins are unique in a domain
    duplicate_classes = [key for key, row in district.classes.items() if row["teacher_id"] == duplicate]
    duplicate_rosters = [key for key, row in district.rosters.items() if row["class_id"] in duplicate_classes]

    summary = sync(staging_engine, district, "run-1", hook)

    assert summary["counts"]["users"]["refused"] == 1
    assert summary["counts"]["classes"]["refused"] == len(duplicate_classes)
    assert summary["counts"]["rosters"]["refused"] == len(duplicate_rosters)
    rejected = {(row["entity"], row["source_id"]): row for row in staged_rows(staging_engine, RejectedRow, "run-1")}
    assert set(rejected) == {("users", f"T:{duplicate}")} | {("classes", key) for key in duplicate_classes} | {
        ("rosters", key) for key in duplicate_rosters
    }
    assert all(row["stage"] == "load" and row["rule"] == "learning_refused" for row in rejected.values())
    assert "login" in rejected[("users", f"T:{duplicate}")]["reason"].lower()
    assert "teacher" in rejected[("classes", duplicate_classes[0])]["reason"].lower()
    # the cascade, row by row: each class failed because of the teacher, each roster row because of its class
    assert {rejected[("classes", key)]["caused_by"] for key in duplicate_classes} == {f"users:T:{duplicate}"}
    assert {rejected[("rosters", key)]["caused_by"] for key in duplicate_rosters} == {
        f"classes:{key}" for key in duplicate_classes
    }
    assert rejected[("users", f"T:{duplicate}")]["caused_by"] is None
    assert rejected[("users", f"T:{duplicate}")]["blocks"] == (
        f"{len(duplicate_classes)} classes, {len(duplicate_rosters)} roster rows"
    )
    assert rejected[("classes", duplicate_classes[0])]["blocks"].endswith("roster rows")
    refused_changes = [row for row in staged_rows(staging_engine, ChangeSet, "run-1") if row["status"] == "refused"]
    assert all(row["learning_result"] == "failed" and row["reason"] for row in refused_changes)
    snapshot_keys = {(row["entity"], row["key"]) for row in staged_rows(staging_engine, LearningSnapshot)}
    assert ("users", f"T:{duplicate}") not in snapshot_keys and ("users", f"T:{owner}") in snapshot_keys
    assert f"T:{duplicate}" not in learning_state(hook)["users"]

    # The district fixes the login in PowerSchool: the next run sends the refused rows again.
    district.users[duplicate]["login"] = "fixed.login." + duplicate
    summary = sync(staging_engine, district, "run-2", hook)
    assert summary["counts"]["users"]["created"] == 1
    assert summary["counts"]["classes"]["created"] == len(duplicate_classes)
    assert summary["counts"]["rosters"]["created"] == len(duplicate_rosters)
    assert summary["rows_sent"] == 1 + len(duplicate_classes) + len(duplicate_rosters)
    assert learning_state(hook) == expected_state(district)
    assert staged_rows(staging_engine, RejectedRow, "run-2") == []


def test_the_next_delta_diff_retries_what_the_load_left_unanswered_and_reads_nothing_when_all_was_accepted(
    staging_engine, learning_domain, default_password
):
    """A completed load records, per entity, the rows it left refused or pending; a delta diff
    based on the run compares those keys again, and reads no entity whose rows were all accepted.
    The record goes when the run's change set is computed again (it would no longer hold)."""
    from sis_learning.delta import left_unanswered
    from sis_learning.diff import _retry_keys

    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=1, students_per_school=12, teachers_per_school=2)
    owner, duplicate = [key for key, row in district.users.items() if row["user_type"] == "T"]
    district.users[duplicate]["login"] = district.users[owner]["login"]
    refused_classes = {key for key, row in district.classes.items() if row["teacher_id"] == duplicate}
    refused_rosters = {key for key, row in district.rosters.items() if row["class_id"] in refused_classes}
    sync(staging_engine, district, "run-1", hook)

    with staging_engine.connect() as connection:
        unanswered = left_unanswered(connection, DISTRICT_ID, "run-1")
        assert unanswered == {
            spec.name: {"users": 1, "classes": len(refused_classes), "rosters": len(refused_rosters)}.get(spec.name, 0)
            for spec in ENTITIES
        }
        retry = _retry_keys(connection, DISTRICT_ID, "run-1")
    snapshot = {(row["entity"], row["key"]) for row in staged_rows(staging_engine, LearningSnapshot)}
    # Without a finished sync_runs row every snapshot key counts as changed since; the refused
    # ones are not in the snapshot, so they come from the change set.
    assert {("users", f"T:{duplicate}")} | {("classes", key) for key in refused_classes} | {
        ("rosters", key) for key in refused_rosters
    } == {(entity, key) for entity, keys in retry.items() for key in keys} - snapshot

    # The district fixes the login: run-2 gets everything accepted, and its record says so.
    district.users[duplicate]["login"] = "fixed.login." + duplicate
    sync(staging_engine, district, "run-2", hook)
    with staging_engine.connect() as connection:
        assert left_unanswered(connection, DISTRICT_ID, "run-2") == dict.fromkeys((spec.name for spec in ENTITIES), 0)

    # run-1's change set computed again (pending once more): its load's record no longer holds,
    # and the next delta diff reads the change set again.
    compute_changes(staging_engine, config(), "run-1")
    with staging_engine.connect() as connection:
        assert left_unanswered(connection, DISTRICT_ID, "run-1") is None
        retry = _retry_keys(connection, DISTRICT_ID, "run-1")
    assert f"T:{owner}" in retry["users"] and len(retry["rosters"]) == len(district.rosters)


def test_mass_removal_stops_the_run_until_approved(staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    first = LearningDistrict.generate(schools=2, students_per_school=40, parents=False)
    sync(staging_engine, first, "run-1", hook)

    second = first.copy()
    leaving = second.students_of("100")[:30]
    for student in leaving:
        second.remove_user(student)
    write_run(staging_engine, second, "run-2")
    compute_changes(staging_engine, config(), "run-2")
    with pytest.raises(MassChangeDetected) as stop:
        check_safety(staging_engine, config(), "run-2", approve_mass_changes=False)

    message = str(stop.value)
    assert "school 100, users: 30 of 44 would be deactivated" in message
    assert "approve_mass_changes=true" in message and "sis_import__loadtest" in message
    assert leaving[0] in message  # examples a district admin can look up
    assert "school 101" not in message  # the other school is untouched
    findings = {(finding["entity"], finding["organization_id"]) for finding in stop.value.findings}
    assert ("users", "100") in findings
    assert learning_state(hook) == expected_state(first)  # nothing was sent

    check_safety(staging_engine, config(), "run-2", approve_mass_changes=True)  # approved: no error
    summary = load_run(staging_engine, config(), "run-2", hook)
    assert summary["counts"]["users"]["deactivated"] == 30
    assert learning_state(hook) == expected_state(first, second)


def test_small_turnover_passes_the_guard(sqlite_staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    first = LearningDistrict.generate(schools=1, students_per_school=40, parents=False)
    sync(sqlite_staging_engine, first, "run-1", hook)
    second = first.copy()
    for index, student in enumerate(second.students_of("100")[:3]):
        second.remove_user(student)
        second.add_user(f"3888000{index}", "S", "100", f"Other{index}", "Arrival")
    summary = sync(sqlite_staging_engine, second, "run-2", hook)  # check_safety raises nothing
    assert summary["counts"]["users"]["deactivated"] == 3


def test_import_id_change_stops_the_run(staging_engine, learning_domain, default_password):
    hook = learning_domain.hook()
    first = LearningDistrict.generate(schools=1, students_per_school=40, parents=False)
    sync(staging_engine, first, "run-1", hook)

    # The same students come back under new Import IDs (new DCIDs), as after a re-key.
    second = LearningDistrict(organizations=dict(first.organizations))
    for key, row in first.users.items():
        new_key = key if row["user_type"] == "T" else "9" + key
        second.users[new_key] = {**row, "external_id": new_key, "login": row["login"] + ".new"}
    write_run(staging_engine, second, "run-2")
    compute_changes(staging_engine, config(), "run-2")
    with pytest.raises(MassChangeDetected) as stop:
        check_safety(staging_engine, config(), "run-2", approve_mass_changes=False)

    kinds = {finding["kind"] for finding in stop.value.findings}
    assert "import_id_change" in kinds
    import_id = next(finding for finding in stop.value.findings if finding["kind"] == "import_id_change")
    assert import_id["rows"] == 40 and import_id["previous_rows"] == 40
    assert "possible Import ID change: 40 of 40 users leaving reappear under a new id" in str(stop.value)
    assert learning_state(hook) == expected_state(first)


class CrashingLearningHook(LearningHook):
    """The real hook, with a crash injected at the Nth write (before or after Learning applied it)."""

    def __init__(self, *args, crash_at: int, after_learning_applied: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.crash_at = crash_at
        self.after_learning_applied = after_learning_applied
        self.writes = 0
        self.lock = threading.Lock()

    def _maybe_crash(self, send):
        with self.lock:  # batches are sent from several threads
            self.writes += 1
            this_write = self.writes
        if this_write == self.crash_at and not self.after_learning_applied:
            raise RuntimeError("worker killed before the batch reached Learning")
        results = send()
        if this_write == self.crash_at:
            raise RuntimeError("worker killed after Learning applied the batch, before it was recorded")
        return results

    def upsert(self, entity, rows):
        return self._maybe_crash(lambda: super(CrashingLearningHook, self).upsert(entity, rows))

    def remove(self, entity, rows):
        return self._maybe_crash(lambda: super(CrashingLearningHook, self).remove(entity, rows))

    def deactivate_users(self, external_ids):
        return self._maybe_crash(lambda: super(CrashingLearningHook, self).deactivate_users(external_ids))


@pytest.mark.parametrize("after_learning_applied", [False, True], ids=["before-send", "after-send"])
def test_crash_mid_load_and_rerun_converges_to_a_clean_runs_state(
    staging_engine, learning_server, learning_domain, default_password, after_learning_applied
):
    first = LearningDistrict.generate(schools=2, students_per_school=40)
    second = first.copy()
    for student in second.students_of("101")[:4]:
        second.remove_user(student)
    second.users[second.students_of("100")[0]]["first_name"] = "Changed"
    for index in range(60):
        second.add_roster(
            list(second.classes)[index % len(second.classes)], second.students_of("100")[-1 - index % 20], "student"
        )

    # The clean reference: the same two runs, without a crash, for another district
    # (its own Learning domain and its own rows in the same staging database).
    clean_name = learning_server.free_domains.pop(0)
    clean = LearningHook.from_settings(
        learning_server.base_url, learning_server.tokens[clean_name], str(learning_server.ca_bundle)
    )
    sync(staging_engine, first, "run-1", clean, district_id="cleanrun")
    sync(staging_engine, second, "run-2", clean, district_id="cleanrun")
    clean_state = learning_state(clean)

    hook = learning_domain.hook()
    sync(staging_engine, first, "run-1", hook)
    crashing = CrashingLearningHook(
        connection=hook.connection(), crash_at=4, after_learning_applied=after_learning_applied
    )
    with pytest.raises(RuntimeError, match="worker killed"):
        sync(staging_engine, second, "run-2", crashing, max_batches_in_flight=2)
    assert learning_state(hook) != expected_state(first, second)  # the crash left Learning half-way

    # The task is retried: the whole load task group runs again for the same run.
    summary = sync(staging_engine, second, "run-2", hook)

    assert summary["counts"]["users"]["pending"] == 0
    final = learning_state(hook)
    assert final == expected_state(first, second)
    assert final == clean_state
    keys = [(row["entity"], row["key"]) for row in staged_rows(staging_engine, ChangeSet, "run-2")]
    assert len(keys) == len(set(keys))  # one change-set row per key
    assert {row["status"] for row in staged_rows(staging_engine, ChangeSet, "run-2")} <= {"accepted", "skipped"}
    snapshot = staged_rows(staging_engine, LearningSnapshot)
    assert {row["key"] for row in snapshot if row["entity"] == "rosters"} == set(second.rosters)


def test_load_alone_resumes_after_a_crash(sqlite_staging_engine, learning_domain, default_password):
    """Retrying only the load task (the diff already done) sends just what is still pending."""
    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=2, students_per_school=40)
    write_run(sqlite_staging_engine, district, "run-1")
    compute_changes(sqlite_staging_engine, config(), "run-1")
    crashing = CrashingLearningHook(connection=hook.connection(), crash_at=3, after_learning_applied=True)
    with pytest.raises(RuntimeError):
        load_run(sqlite_staging_engine, config(), "run-1", crashing, max_batches_in_flight=1)
    summary = load_run(sqlite_staging_engine, config(), "run-1", hook)
    total = sum(len(rows) for _, rows in district.tables())
    # writes 1-2 (organizations, first users batch) were recorded; write 3 (the second users
    # batch) reached Learning but not the change set: it is sent again and comes back unchanged
    assert summary["rows_sent"] == total - len(district.organizations) - BATCH_SIZE
    assert summary["counts"]["users"]["unchanged"] == BATCH_SIZE
    assert summary["counts"]["users"]["created"] == len(district.users) - BATCH_SIZE
    assert learning_state(hook) == expected_state(district)
    assert sum(counts["pending"] for counts in summary["counts"].values()) == 0


class RecordingLearningHook(LearningHook):
    """The real hook, keeping a copy of every users row it sends (to check what went over the wire)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.users_sent: list[dict] = []

    def upsert(self, entity, rows):
        if entity == "users":
            self.users_sent.extend(dict(row) for row in rows)
        return super().upsert(entity, rows)


def test_default_password_goes_to_new_users_only_and_is_never_stored(
    sqlite_staging_engine, learning_domain, default_password, caplog
):
    caplog.set_level("DEBUG")
    plain = learning_domain.hook()
    hook = RecordingLearningHook(connection=plain.connection())
    district = LearningDistrict.generate(schools=1, students_per_school=5, teachers_per_school=1)
    sync(sqlite_staging_engine, district, "run-1", hook)
    assert hook.users_sent and all(
        row["password"] == default_password and row["password_temporary"] is True for row in hook.users_sent
    )

    some_user = next(iter(district.users))
    read_back = hook.read("users", f"{district.users[some_user]['user_type']}:{some_user}")
    assert read_back["has_password"] is True
    assert read_back["password_temporary"] is True

    hook.users_sent.clear()
    district.users[some_user]["first_name"] = "Renamed"
    district.add_user("39990002", "S", "100", "Late", "Arrival")
    sync(sqlite_staging_engine, district, "run-2", hook)
    sent = {row["external_id"]: row for row in hook.users_sent}
    assert set(sent) == {some_user, "39990002"}
    assert "password" not in sent[some_user] and "password_temporary" not in sent[some_user]  # an update
    assert sent["39990002"]["password"] == default_password  # a create

    for table in (ChangeSet, LearningSnapshot, RejectedRow):
        assert default_password not in json.dumps(
            [dict(row) for row in staged_rows(sqlite_staging_engine, table)], default=str
        )
    assert default_password not in caplog.text


def test_missing_default_password_secret_stops_before_anything_is_sent(
    sqlite_staging_engine, learning_domain, monkeypatch
):
    monkeypatch.delenv("LOADTEST_DEFAULT_PASSWORD", raising=False)
    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=1, students_per_school=5)
    write_run(sqlite_staging_engine, district, "run-1")
    compute_changes(sqlite_staging_engine, config(), "run-1")
    with pytest.raises(SecretReferenceError, match="LOADTEST_DEFAULT_PASSWORD is not set"):
        load_run(sqlite_staging_engine, config(), "run-1", hook)
    assert hook.stats.total_requests == 0


def test_entities_are_sent_in_dependency_order(sqlite_staging_engine, learning_domain, default_password):
    hook = learning_domain.hook(max_concurrent_requests=1)
    district = LearningDistrict.generate(schools=1, students_per_school=10)
    sync(sqlite_staging_engine, district, "run-1", hook, max_batches_in_flight=1)
    kinds = list(hook.stats.requests)  # Counter keeps first-seen order
    order = [kind.split()[1].split("/")[0] for kind in kinds if kind.startswith("POST")]
    assert order == ["organizations", "users", "user_levels", "classes", "rosters", "parent_links"]
    assert ENTITY_BY_NAME["rosters"].vanished_action == "remove"


class ServerKillingHook(LearningHook):
    """The real hook; after Learning answers the Nth write, the Learning server process is killed (SIGKILL)."""

    def __init__(self, *args, server, kill_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.server = server
        self.kill_after = kill_after
        self.writes = 0
        self.lock = threading.Lock()

    def _after_write(self, results):
        with self.lock:
            self.writes += 1
            if self.writes == self.kill_after:
                self.server.process.kill()
                self.server.process.wait(timeout=10)
        return results

    def upsert(self, entity, rows):
        return self._after_write(super().upsert(entity, rows))

    def remove(self, entity, rows):
        return self._after_write(super().remove(entity, rows))

    def deactivate_users(self, external_ids):
        return self._after_write(super().deactivate_users(external_ids))


def test_learning_server_killed_mid_load_then_restarted_converges(sqlite_staging_engine, tmp_path, default_password):
    from sandbox.learning.testing import running_learning
    from sis_learning.hooks.http_client import ApiError, RetryPolicy

    token = "server-kill-token-0123456789"
    learning_database = f"sqlite:///{tmp_path / 'learning.sqlite'}"
    district = LearningDistrict.generate(schools=2, students_per_school=40)
    with running_learning(domains={"killed": token}, database_url=learning_database) as server:
        connection = LearningHook.from_settings(server.base_url, token, server.ca_bundle).connection()
        hook = ServerKillingHook(
            connection=connection,
            server=server,
            kill_after=3,
            retry_policy=RetryPolicy(max_retries=2, base_delay_seconds=0.05),
        )
        with pytest.raises(ApiError):
            sync(sqlite_staging_engine, district, "run-1", hook, max_batches_in_flight=1)
        assert hook.writes == 3

    # The server comes back with its database; the task is retried against it.
    with running_learning(domains={"killed": token}, database_url=learning_database) as server:
        hook = LearningHook.from_settings(server.base_url, token, server.ca_bundle)
        summary = sync(sqlite_staging_engine, district, "run-1", hook)
        assert learning_state(hook) == expected_state(district)
        assert sum(counts["pending"] for counts in summary["counts"].values()) == 0
        total = sum(len(rows) for _, rows in district.tables())
        assert summary["rows_sent"] == total - len(district.organizations) - 2 * BATCH_SIZE


def test_users_on_the_districts_sso_domains_are_put_on_sso_authentication(
    sqlite_staging_engine, learning_domain, default_password
):
    """'users ... automatically set to this authentication via the import': a user whose
    sso_email_address is on a Google Apps / Office 365 domain is created on that SSO type;
    one an admin moved to another type keeps it (Learning never lets an import undo it)."""
    sso_config = make_config(
        DISTRICT_ID,
        learning={"connection_id": "learning_loadtest", "batch_size": BATCH_SIZE},
        sso_domains={"google": ["kids.example.org"], "office365": ["staff.example.org"]},
    )
    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=1, students_per_school=3, teachers_per_school=1)
    student, other_student = sorted(key for key, row in district.users.items() if row["user_type"] == "S")[:2]
    teacher = next(key for key, row in district.users.items() if row["user_type"] == "T")
    district.users[student]["sso_email_address"] = f"{student}@kids.example.org"
    district.users[teacher]["sso_email_address"] = f"{teacher}@staff.example.org"

    def run(run_id: str) -> None:
        write_run(sqlite_staging_engine, district, run_id, DISTRICT_ID)
        compute_changes(sqlite_staging_engine, sso_config, run_id)
        check_safety(sqlite_staging_engine, sso_config, run_id, approve_mass_changes=False)
        load_run(sqlite_staging_engine, sso_config, run_id, hook)

    run("run-1")
    assert hook.read("users", f"S:{student}")["authentication_type"] == "google"
    assert hook.read("users", f"T:{teacher}")["authentication_type"] == "office365"
    assert hook.read("users", f"S:{other_student}")["authentication_type"] == "password"

    hook.request(
        "PUT",
        f"/api/v1/admin/users/S/{student}/authentication",  # an admin's choice
        json={"authentication_type": "password"},
    )
    district.users[student]["first_name"] = "Renamed"  # the next import updates this user
    run("run-2")
    assert hook.read("users", f"S:{student}")["first_name"] == "Renamed"
    assert hook.read("users", f"S:{student}")["authentication_type"] == "password", "an import undid an admin's choice"


def test_the_import_writes_the_district_files_domain_switches_to_learning(
    sqlite_staging_engine, learning_domain, default_password
):
    """ "Ignore Parents", "Autogenerate usernames", "Imported passwords are temporary" and "Grade
    Push Config" live in the district YAML; the load makes Learning's Manage Domain say the same
    (the YAML wins over an admin's change in Learning), and writes only when they differ."""
    hook = learning_domain.hook()
    district = LearningDistrict.generate(schools=2, students_per_school=3, teachers_per_school=1, parents=False)
    summary = sync(sqlite_staging_engine, district, "run-1", hook)
    assert summary["domain_settings"] == "updated"
    settings = hook.get_domain_settings()
    assert {
        name: settings[name]
        for name in (
            "ignore_parents",
            "autogenerate_usernames",
            "imported_passwords_temporary",
            "grade_push_organizations",
        )
    } == {
        "ignore_parents": False,
        "autogenerate_usernames": True,
        "imported_passwords_temporary": True,
        "grade_push_organizations": [],
    }
    assert sync(sqlite_staging_engine, district, "run-2", hook)["domain_settings"] == "unchanged"

    # The district turns grade push on for one school and parents off; an admin flips a switch in Learning.
    hook.put_domain_settings({"imported_passwords_temporary": False})
    organization = sorted(district.organizations)[0]
    changed = make_config(
        learning={"connection_id": "learning_loadtest", "batch_size": BATCH_SIZE},
        ignore_parents=True,
        grade_push={"enabled": True, "organizations": [organization]},
    )
    write_run(sqlite_staging_engine, district, "run-3")
    compute_changes(sqlite_staging_engine, changed, "run-3")
    check_safety(sqlite_staging_engine, changed, "run-3", approve_mass_changes=False)
    assert load_run(sqlite_staging_engine, changed, "run-3", hook)["domain_settings"] == "updated"
    settings = hook.get_domain_settings()
    assert (
        settings["ignore_parents"],
        settings["imported_passwords_temporary"],
        settings["grade_push_organizations"],
    ) == (True, True, [organization])
