"""transform_run: validated staged rows -> the learning_* tables, on SQLite and PostgreSQL.

The expected rows are worked out by hand from the source document's mapping tables.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import inspect, select

from sis_learning import transform, validate
from sis_learning.staging.base import Base, create_all, get_engine
from sis_learning.staging.learning import LEARNING_TABLES
from sis_learning.staging.quality import ExcludedRow
from tests.validate.staged_rows import RUN_ID, StagedRun, district_config, small_district
from tests.validate.test_validate import outcome_rows

SECOND_RUN_ID = "scheduled__2026-01-06T00:00:00+00:00"
PASSWORD_SENTINEL = "Sentinel-Default-Password-9f3"


def learning_rows(engine, entity: str, run_id: str = RUN_ID) -> list[dict]:
    table = LEARNING_TABLES[entity].__table__
    columns = [column for column in table.c if column.name not in ("id", "district_id", "run_id")]
    with engine.connect() as connection:
        rows = connection.execute(select(*columns).where(table.c.run_id == run_id).order_by(table.c.id)).mappings()
        return [dict(row) for row in rows]


def validate_and_transform(engine, staged: StagedRun | None, tmp_path: Path, run_id: str = RUN_ID, **overrides):
    if staged is not None:
        staged.insert(engine, run_id=run_id)
    config = district_config(**overrides)
    validate.validate_run(engine, config, run_id, tmp_path / run_id.replace(":", "_"))
    return config, transform.transform_run(engine, config, run_id)


def district_with_everything() -> StagedRun:
    staged = small_district()  # school 100, term 3500, course 700 "English 9", teacher 200, class 400
    staged.school("101", name="Élan Académie")
    staged.student(
        "302",
        first_name="Zoë",
        last_name="Ångström",
        student_username=None,
        email="zoe@gmail.com",
        school_id="101",
        grade_level=11,
    )
    staged.student(
        "303", first_name="小龙", last_name="李", student_username=None, email="li@students.test.org", grade_level=10
    )
    staged.student("304", first_name="Дмитрий", last_name="Иванов", student_username="divanov", email=None)
    staged.student("305", enroll_status_code=2)  # excluded: not in Learning at all
    staged.staff("201", first_name="Renée", last_name="O'Connor", teacher_username=None, email="renee@test.org")
    staged.staff("202", last_name=None)  # fails, with its class 401 and roster
    staged.section("401", staff_id="202")
    staged.section("402", staff_id="201", course_id="700", section_number="7", expression="3-4(A)")
    staged.section_teacher("400", "200", role="Lead Teacher")
    staged.section_teacher("400", "201")
    staged.enrollment("502", "402", "302")
    staged.enrollment("503", "402", "303")
    staged.enrollment("504", "401", "304")
    staged.enrollment("505", "402", "304", dropped=True)
    staged.guardian("601", "302")  # parent of a student of school 101, and of student 300 (lower id)
    staged.guardian("601", "300")
    staged.guardian("602", "305")  # only child not imported: parent left out
    staged.guardian("603", "304", portal_username=None)
    return staged


def test_a_district_maps_to_exactly_the_learning_rows_worked_out_by_hand(
    staging_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DEFAULT_PASSWORD", PASSWORD_SENTINEL)
    _config, counts = validate_and_transform(staging_engine, district_with_everything(), tmp_path)

    assert counts == {"organizations": 2, "users": 9, "user_levels": 5, "classes": 2, "rosters": 7, "parent_links": 3}
    assert learning_rows(staging_engine, "organizations") == [
        {"organization_id": "100", "name": "School 100"},
        {"organization_id": "101", "name": "Élan Académie"},
    ]
    user = {"enabled": True, "password_temporary": True, "login_generated": False}
    assert learning_rows(staging_engine, "users") == [
        {
            **user,
            "external_id": "200",
            "first_name": "Pat",
            "last_name": "Teacher200",
            "login": "teacher200",
            "email": "teacher200@test.org",
            "user_type": "T",
            "organization_id": "100",
            "sso_email_address": "teacher200@test.org",
        },
        {
            **user,
            "external_id": "201",
            "first_name": "Renée",
            "last_name": "O'Connor",
            "login": "renee@test.org",
            "email": "renee@test.org",
            "user_type": "T",
            "organization_id": "100",
            "sso_email_address": "renee@test.org",
            "login_generated": True,
        },
        {
            **user,
            "external_id": "300",
            "first_name": "Sam",
            "last_name": "Student300",
            "login": "student300",
            "email": "student300@students.test.org",
            "user_type": "S",
            "organization_id": "100",
            "sso_email_address": "student300@students.test.org",
        },
        {
            **user,
            "external_id": "301",
            "first_name": "Sam",
            "last_name": "Student301",
            "login": "student301",
            "email": "student301@students.test.org",
            "user_type": "S",
            "organization_id": "100",
            "sso_email_address": "student301@students.test.org",
        },
        {
            **user,
            "external_id": "302",
            "first_name": "Zoë",
            "last_name": "Ångström",
            "login": "zoe.angstrom.s302",
            "email": "zoe@gmail.com",
            "user_type": "S",
            "organization_id": "101",
            "sso_email_address": None,
            "login_generated": True,
        },
        {
            **user,
            "external_id": "303",
            "first_name": "小龙",
            "last_name": "李",
            "login": "li@students.test.org",
            "email": "li@students.test.org",
            "user_type": "S",
            "organization_id": "100",
            "sso_email_address": "li@students.test.org",
            "login_generated": True,
        },
        {
            **user,
            "external_id": "304",
            "first_name": "Дмитрий",
            "last_name": "Иванов",
            "login": "divanov",
            "email": None,
            "user_type": "S",
            "organization_id": "100",
            "sso_email_address": None,
        },
        {
            **user,
            "external_id": "600",
            "first_name": "Alex",
            "last_name": "Parent600",
            "login": "parent600",
            "email": "parent600@mail.example.com",
            "user_type": "P",
            "organization_id": "100",
            "sso_email_address": None,
        },
        {
            **user,
            "external_id": "601",
            "first_name": "Alex",
            "last_name": "Parent601",
            "login": "parent601",
            "email": "parent601@mail.example.com",
            "user_type": "P",
            "organization_id": "100",
            "sso_email_address": None,
        },
    ]
    assert learning_rows(staging_engine, "user_levels") == [
        {"external_id": "300", "level_id": "9"},
        {"external_id": "301", "level_id": "9"},
        {"external_id": "302", "level_id": "11"},
        {"external_id": "303", "level_id": "10"},
        {"external_id": "304", "level_id": "9"},
    ]
    assert learning_rows(staging_engine, "classes") == [
        {
            "class_id": "400",
            "name": "English 9 (1) - 1(A)",
            "code": "ENG700",
            "year": "3500",
            "teacher_id": "200",
            "organization_id": "100",
        },
        {
            "class_id": "402",
            "name": "English 9 (7) - 3-4(A)",
            "code": "ENG700",
            "year": "3500",
            "teacher_id": "201",
            "organization_id": "100",
        },
    ]
    assert learning_rows(staging_engine, "rosters") == [
        {"class_id": "400", "user_type": "T", "user_id": "200", "role": "teacher"},
        {"class_id": "402", "user_type": "T", "user_id": "201", "role": "teacher"},
        {"class_id": "400", "user_type": "T", "user_id": "201", "role": "co-teacher"},
        {"class_id": "400", "user_type": "S", "user_id": "300", "role": "student"},
        {"class_id": "400", "user_type": "S", "user_id": "301", "role": "student"},
        {"class_id": "402", "user_type": "S", "user_id": "302", "role": "student"},
        {"class_id": "402", "user_type": "S", "user_id": "303", "role": "student"},
    ]
    assert learning_rows(staging_engine, "parent_links") == [
        {"parent_id": "600", "child_id": "300"},
        {"parent_id": "601", "child_id": "300"},
        {"parent_id": "601", "child_id": "302"},
    ]


def test_no_password_value_reaches_any_staged_table(
    staging_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DEFAULT_PASSWORD", PASSWORD_SENTINEL)
    validate_and_transform(staging_engine, district_with_everything(), tmp_path, imported_passwords_temporary=False)
    assert "password" not in {column["name"] for column in inspect(staging_engine).get_columns("learning_users")}
    assert {row["password_temporary"] for row in learning_rows(staging_engine, "users")} == {False}
    with staging_engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                assert PASSWORD_SENTINEL not in repr(tuple(row)), table.name
    for path in (tmp_path).rglob("*.json"):
        assert PASSWORD_SENTINEL not in path.read_text(encoding="utf-8")


def test_logins_are_the_same_every_run_and_avoid_sis_usernames(staging_engine, tmp_path: Path) -> None:
    def staged_run() -> StagedRun:
        staged = small_district()
        staged.student("310", first_name="Ana", last_name="Díaz", student_username=None, email=None)
        staged.student("311", first_name="Ana", last_name="Díaz", student_username="ana.diaz.s312", email=None)
        staged.student("312", first_name="Ana", last_name="Diaz", student_username=None, email=None)
        staged.staff("210", first_name="Ana", last_name="Diaz", teacher_username=None, email=None)
        return staged

    validate_and_transform(staging_engine, staged_run(), tmp_path, run_id=RUN_ID)
    validate_and_transform(staging_engine, staged_run(), tmp_path, run_id=SECOND_RUN_ID)
    first = {row["external_id"]: row["login"] for row in learning_rows(staging_engine, "users", RUN_ID)}
    second = {row["external_id"]: row["login"] for row in learning_rows(staging_engine, "users", SECOND_RUN_ID)}
    assert first == second
    assert first["310"] == "ana.diaz.s310"
    assert first["311"] == "ana.diaz.s312"  # the SIS username is kept
    assert first["312"] == "ana.diaz.s312-2"  # its generated login collided with it
    assert first["210"] == "ana.diaz.t210"  # teachers and students never collide: t / s
    assert len(set(first.values())) == len(first)


def test_name_lengths_count_characters_not_bytes(staging_engine, tmp_path: Path) -> None:
    staged = small_district()
    staged.student("320", first_name="Ж" * 100, last_name="名" * 100)
    staged.student("321", first_name="Ж" * 101)
    validate_and_transform(staging_engine, staged, tmp_path)
    users = {row["external_id"]: row for row in learning_rows(staging_engine, "users")}
    assert users["320"]["first_name"] == "Ж" * 100 and users["320"]["last_name"] == "名" * 100
    assert "321" not in users


def test_the_co_teacher_cap_and_ignore_parents_reach_the_learning_rows(sqlite_url: str, tmp_path: Path) -> None:
    engine = create_all(get_engine(sqlite_url))
    staged = small_district()
    staged.staff("260")
    for number in range(26):
        staged.section(str(1000 + number), staff_id="200", section_number=str(number))
        staged.section_teacher(str(1000 + number), "260")
    _config, counts = validate_and_transform(engine, staged, tmp_path, ignore_parents=True)
    rosters = pd.DataFrame(learning_rows(engine, "rosters"))
    co_teaching = rosters[(rosters["user_id"] == "260") & (rosters["role"] == "co-teacher")]
    assert sorted(co_teaching["class_id"]) == [str(1000 + number) for number in range(25)]
    assert counts["parent_links"] == 0
    assert "P" not in {row["user_type"] for row in learning_rows(engine, "users")}


def test_transforming_a_run_again_replaces_its_rows(staging_engine, tmp_path: Path) -> None:
    config, first = validate_and_transform(staging_engine, small_district(), tmp_path)
    second = transform.transform_run(staging_engine, config, RUN_ID)
    assert first == second
    assert len(learning_rows(staging_engine, "rosters")) == first["rosters"] == 3


def test_a_bad_spec_stops_transform_before_it_writes(sqlite_url: str, tmp_path: Path) -> None:
    from sis_learning.config import MAPPINGS_DIR
    from sis_learning.mapping import MappingSpecError

    engine = create_all(get_engine(sqlite_url))
    specs = tmp_path / "mappings"
    specs.mkdir()
    for path in MAPPINGS_DIR.glob("*.csv"):
        (specs / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (specs / "classes.csv").write_text(
        "target,source,constant,transform,argument,note\nclass_id,section/id,,,,\nname,,,template,{course_title},\n",
        encoding="utf-8",
    )
    small_district().insert(engine)
    with pytest.raises(MappingSpecError, match=r"classes.csv:3: template placeholder \{course_title\}"):
        transform.transform_run(engine, district_config(), RUN_ID, mappings_dir=specs)
    with engine.connect() as connection:
        for model in LEARNING_TABLES.values():
            assert connection.execute(select(model.__table__)).first() is None


def test_transform_reads_only_the_staged_columns_its_specs_and_preparation_need() -> None:
    specs = transform.load_specs()
    columns = transform.staged_columns(specs)
    # Validate-only columns are not read again (every column costs time at district scale) ...
    assert "terms" not in columns
    assert "dropped" not in columns["section_enrollments"]
    assert "enroll_status_code" not in columns["students"]
    assert "portal_enabled" not in columns["guardians"]
    assert "status" not in columns["staff"]
    # ... and every column a spec reads from a staged entity is.
    for name, spec in specs.items():
        entity = transform.SPEC_SOURCES[name]
        staged = set(validate.STAGED_COLUMNS[entity][1])
        assert spec.source_columns & staged <= columns[entity], name
    assert transform.staged_columns(None) is None


def test_read_staged_reads_the_columns_asked_for(staging_engine) -> None:
    small_district().insert(staging_engine)
    config = district_config()
    frames = validate.read_staged(staging_engine, config, RUN_ID, {"students": {"student_id", "grade_level"}})
    assert list(frames) == ["students"]
    assert list(frames["students"].columns) == ["student_id", "grade_level"]
    every = validate.read_staged(staging_engine, config, RUN_ID)
    assert list(every) == list(validate.STAGED_COLUMNS)
    assert frames["students"].equals(every["students"][["student_id", "grade_level"]])


def test_a_bad_email_or_a_missing_grade_level_is_a_warning_and_the_user_comes_without_it(
    staging_engine, tmp_path: Path
) -> None:
    """The source document fails a user only for a missing username: a student whose email is
    not an address, or who has no grade level (pre-K), is imported without that value."""
    staged = small_district()
    staged.student("330", email="none", grade_level=None, student_username="prek330")
    staged.student("331", email="n/a", student_username="na331")
    staged.staff("230", email="x@", teacher_username="teacher230")
    staged.enrollment("530", "400", "330")
    validate_and_transform(staging_engine, staged, tmp_path)
    users = {(row["user_type"], row["external_id"]): row for row in learning_rows(staging_engine, "users")}
    assert users[("S", "330")]["email"] is None and users[("S", "330")]["sso_email_address"] is None
    assert users[("S", "331")]["email"] is None
    assert users[("T", "230")]["email"] is None
    levels = {row["external_id"] for row in learning_rows(staging_engine, "user_levels")}
    assert "330" not in levels and "331" in levels
    rosters = {(row["class_id"], row["user_type"], row["user_id"]) for row in learning_rows(staging_engine, "rosters")}
    assert ("400", "S", "330") in rosters  # in their class, like any student


def test_current_teachers_only_ended_section_teacher_rows_are_not_rostered(staging_engine, tmp_path: Path) -> None:
    """Ended SectionTeacher rows (lead or co-teacher) are not rostered and do not count toward
    the 25-class cap; a lead teacher replaced mid-year leaves the class to the current lead."""
    staged = StagedRun()
    staged.school("100")
    staged.term("3500")  # 2025-08-15 .. 2026-06-01
    staged.course("700")
    for staff_id in ("200", "201", "260", "261"):
        staged.staff(staff_id)
    # Section 400: teacher 200 led it until the winter break, 201 leads it since (Sections.Teacher).
    staged.section("400", staff_id="201")
    staged.section_teacher("400", "200", role="Lead Teacher", end_date="2025-12-19")
    staged.section_teacher("400", "201", role="Lead Teacher", start_date="2026-01-05")
    # Co-teacher 260's assignment ended in October; 261's is current.
    staged.section_teacher("400", "260", end_date="2025-10-31")
    staged.section_teacher("400", "261")
    # Co-teacher 260 has 25 current classes besides: the ended one does not take a place.
    for number in range(25):
        section_id = str(1000 + number)
        staged.section(section_id, staff_id="200", section_number=str(number))
        staged.section_teacher(section_id, "200", role="Lead Teacher")
        staged.section_teacher(section_id, "260")
    staged.student("300")
    staged.enrollment("500", "400", "300")
    validate_and_transform(staging_engine, staged, tmp_path)

    excluded = {
        (row.entity, row.source_id, row.rule): row.reason
        for row in outcome_rows(staging_engine, ExcludedRow).itertuples()
    }
    assert excluded[("section_teachers", "400:260", "section_teacher_ended")] == (
        "the teacher's assignment to the section ended on 2025-10-31 (only current teachers are rostered)"
    )
    assert ("section_teachers", "400:200", "section_teacher_ended") in excluded
    assert not [key for key in excluded if key[2] == "co_teacher_class_limit"]  # 25 current classes: at the cap
    rosters = {
        (row["class_id"], row["user_type"], row["user_id"]): row["role"]
        for row in learning_rows(staging_engine, "rosters")
    }
    assert rosters[("400", "T", "201")] == "teacher"
    assert rosters[("400", "T", "261")] == "co-teacher"
    assert ("400", "T", "200") not in rosters and ("400", "T", "260") not in rosters
    assert sum(1 for (_class, _type, user), role in rosters.items() if user == "260" and role == "co-teacher") == 25
    assert {row["class_id"]: row["teacher_id"] for row in learning_rows(staging_engine, "classes")}["400"] == "201"


def test_an_assignment_ending_later_in_the_term_is_current_until_then(sqlite_url: str, tmp_path: Path) -> None:
    """Before the run's day an end date in the future leaves the teacher in; after it, out."""
    from sis_learning.staging.runs import start_run

    engine = create_all(get_engine(sqlite_url))
    staged = StagedRun()
    staged.school("100")
    staged.term("3500")
    staged.course("700")
    staged.staff("200")
    staged.staff("260")
    staged.section("400", staff_id="200")
    staged.section_teacher("400", "260", end_date="2026-03-01")
    staged.insert(engine)
    assert validate.run_date(engine, district_config(), RUN_ID) is None  # no sync_runs row: term end only
    start_run(engine, "test_district", RUN_ID)
    assert (
        validate.run_date(engine, district_config(), RUN_ID)
        == datetime.now(ZoneInfo("America/Chicago")).date().isoformat()
    )
    for as_of, rostered in (("2026-02-01", True), ("2026-03-01", True), ("2026-03-02", False)):
        frames = validate.read_staged(engine, district_config(), RUN_ID)
        (tmp_path / as_of).mkdir()
        outcome = validate.evaluate(district_config(), frames, tmp_path / as_of, as_of=as_of).outcomes
        ended = outcome["section_teachers"].status.eq(1).tolist()
        assert ended == [not rostered], as_of


def accept_users(engine, run_id: str) -> None:
    """What a load that Learning accepted leaves behind: the run's users in the snapshot."""
    from sis_learning.staging.changes import LearningSnapshot

    with engine.begin() as connection:
        for user in learning_rows(engine, "users", run_id):
            key = f"{user['user_type']}:{user['external_id']}"
            connection.execute(LearningSnapshot.__table__.delete().where(LearningSnapshot.key == key))
            payload = {name: user[name] for name in ("external_id", "first_name", "last_name", "login", "user_type")}
            connection.execute(
                LearningSnapshot.__table__.insert().values(
                    district_id="test_district",
                    entity="users",
                    key=key,
                    organization_id=user["organization_id"],
                    content_hash="x",
                    payload=json.dumps(payload),
                    active=True,
                    run_id=run_id,
                )
            )


def test_a_generated_login_stays_the_users_for_good(staging_engine, tmp_path: Path) -> None:
    """Renamed, moved to another school, away (deactivated) and back: the generated login
    Learning accepted stays; a username from the SIS still follows the SIS; new generated
    logins avoid every login Learning holds, not only this run's."""

    def run(number: int) -> StagedRun:
        staged = small_district()
        staged.school("101")
        renamed = number > 1
        staged.student(
            "310",
            first_name="Ana",
            last_name="Díaz López" if renamed else "Díaz",
            student_username=None,
            email=None,
            school_id="101" if renamed else "100",
        )
        staged.student("311", student_username="sis.second" if renamed else "sis.first")
        if number != 2:  # away in the second run (deactivated in Learning), back in the third, renamed
            staged.student(
                "330",
                first_name="Bo",
                last_name="Lee" if number == 1 else "Lee-Park",
                student_username=None,
                email=None,
            )
        staged.staff(
            "210", first_name="Ana", last_name="Diaz" if number == 1 else "Moreno", teacher_username=None, email=None
        )
        if number == 3:
            staged.student("340", first_name="Cy", last_name="Ray", student_username=None, email=None)
        return staged

    runs = [f"scheduled__2026-01-0{day}T12:00:00+00:00" for day in (5, 6, 7)]
    logins = []
    for number, run_id in enumerate(runs, start=1):
        validate_and_transform(staging_engine, run(number), tmp_path, run_id=run_id)
        logins.append(
            {
                f"{row['user_type']}:{row['external_id']}": row["login"]
                for row in learning_rows(staging_engine, "users", run_id)
            }
        )
        accept_users(staging_engine, run_id)
        if number == 2:
            # A login Learning holds for a user of another type (the snapshot is every login it holds).
            with staging_engine.begin() as connection:
                from sis_learning.staging.changes import LearningSnapshot

                connection.execute(
                    LearningSnapshot.__table__.insert().values(
                        district_id="test_district",
                        entity="users",
                        key="P:77",
                        organization_id="100",
                        content_hash="x",
                        payload=json.dumps({"login": "cy.ray.s340", "user_type": "P"}),
                        active=True,
                        run_id=run_id,
                    )
                )
    first, second, third = logins
    assert first["S:310"] == "ana.diaz.s310" == second["S:310"] == third["S:310"]  # renamed and moved: kept
    assert first["T:210"] == "ana.diaz.t210" == second["T:210"]
    assert first["S:330"] == "bo.lee.s330" == third["S:330"] and "S:330" not in second  # back after deactivation
    assert (first["S:311"], second["S:311"]) == ("sis.first", "sis.second")  # an SIS username follows the SIS
    assert third["S:340"] == "cy.ray.s340-2"  # Learning holds cy.ray.s340 already (parent 77)
    generated = {row["external_id"]: row["login_generated"] for row in learning_rows(staging_engine, "users", runs[2])}
    assert generated["310"] is True and generated["311"] is False


def test_a_kept_login_yields_to_a_sis_username_that_claims_it(staging_engine, tmp_path: Path) -> None:
    def run(number: int) -> StagedRun:
        staged = small_district()
        staged.student("310", first_name="Ana", last_name="Díaz", student_username=None, email=None)
        if number == 2:  # the SIS now gives that login to student 312 as their username
            staged.student("312", student_username="Ana.Diaz.S310")
        return staged

    runs = [RUN_ID, SECOND_RUN_ID]
    validate_and_transform(staging_engine, run(1), tmp_path, run_id=runs[0])
    accept_users(staging_engine, runs[0])
    validate_and_transform(staging_engine, run(2), tmp_path, run_id=runs[1])
    second = {row["external_id"]: row["login"] for row in learning_rows(staging_engine, "users", runs[1])}
    assert second["312"] == "Ana.Diaz.S310"
    assert second["310"] == "ana.diaz.s310-2"
