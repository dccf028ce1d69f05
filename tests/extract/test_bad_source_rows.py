"""Bad source rows never crash the extract: they are staged for validate to reject, by name.

A record without an id, a non-integer id where PowerSchool's ids are integers, and an id
listed twice with different values are staged with their problem (``source_problem``)
and rejected by validate under ``missing_source_id``, ``non_integer_source_id`` and
``duplicate_source_id``, naming the field and the value; an identical repeat (a page that
shifted while reading) is dropped and counted. On SQLite and on PostgreSQL staging.

The sandbox cannot serve such records (its SIS tables key on integer DCIDs), so the
PowerSchool answers here are scripted at the hook's JSON layer: paging, quirk parsing,
de-duplication, staging and validation are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from sis_learning.extract import extract_guardians, extract_schools, extract_staff, extract_students
from sis_learning.hooks.powerschool import PowerSchoolHook
from sis_learning.staging.quality import ExcludedRow, RejectedRow
from sis_learning.staging.source import ExtractCount, StgGuardian, StgStaff, StgStudent
from sis_learning.validate import validate_run
from tests.extract.conftest import make_config

RUN = "manual__2026-02-02T06:00:00+00:00"
SCHOOL = {"id": 11, "school_number": 100, "name": "Lincoln Elementary School"}


def student(identifier: Any, last_name: str = "Smith", web_id: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": {"first_name": "Ann", "last_name": last_name},
        "school_enrollment": {"school_id": 11, "enroll_status": "A", "enroll_status_code": 0, "grade_level": 3},
        "student_username": web_id or f"ann{last_name.lower()}",
    }
    if identifier is not None:
        record["id"] = identifier
    return record


class ScriptedPowerSchool(PowerSchoolHook):
    """A PowerSchoolHook whose JSON answers come from ``pages`` (path -> list of pages)."""

    def __init__(self, pages: dict[str, list[Any]], query_pages: list[Any] | None = None) -> None:
        connection = self.connection_from_settings("https://powerschool.invalid", "client", "secret")
        super().__init__(connection=connection, max_concurrent_requests=2)
        self.pages = pages
        self.query_pages = query_pages or []

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        params = kwargs.get("params") or {}
        if path == "/ws/v1/metadata":
            return {
                "metadata": {
                    f"{name}_max_page_size": 100
                    for name in (
                        "school",
                        "student",
                        "staff",
                        "section",
                        "section_enrollment",
                        "term",
                        "course",
                        "schema_table_query",
                    )
                }
            }
        if path.endswith("/count"):
            listed = self.query_pages if "/ws/schema/query/" in path else self.pages.get(path[: -len("/count")], [])
            return {"count": sum(len(page) for page in listed)}
        page = int(params.get("page", 1))
        if path == "/ws/v1/district/school":
            return {"schools": {"school": SCHOOL}} if page == 1 else {"schools": ""}
        if "/ws/schema/query/" in path:
            rows = self.query_pages[page - 1] if page <= len(self.query_pages) else []
            return {"name": "guardians", "record": rows}
        listed = self.pages.get(path, [])
        rows = listed[page - 1] if page <= len(listed) else []
        wrapper, item = {"student": ("students", "student"), "staff": ("staffs", "staff")}[path.rsplit("/", 1)[-1]]
        return {wrapper: {item: rows}} if rows else {wrapper: ""}


def full_page(first_id: int, count: int = 100) -> list[dict[str, Any]]:
    return [student(first_id + offset, last_name=f"Name{offset}") for offset in range(count)]


def staged(engine, model, *columns):
    table = model.__table__
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                select(*(table.c[column] for column in columns)).where(table.c.run_id == RUN).order_by(table.c.id)
            )
        ]


def rejections(engine, entity: str) -> dict[str | None, list[tuple[str, str]]]:
    table = RejectedRow.__table__
    found: dict[str | None, list[tuple[str, str]]] = {}
    with engine.connect() as connection:
        for source_id, rule, reason in connection.execute(
            select(table.c.source_id, table.c.rule, table.c.reason).where(
                table.c.run_id == RUN, table.c.entity == entity
            )
        ):
            found.setdefault(source_id, []).append((rule, reason))
    return found


def test_students_without_an_id_or_with_a_non_integer_id_are_staged_and_rejected_by_name(
    staging_engine, tmp_path: Path
):
    pages = {
        "/ws/v1/school/11/student": [
            [
                student(2001, "Good"),
                student(None, "Noid"),
                student("", "Emptyid"),
                student("12a", "Letters"),
                student(2002.5, "Fraction"),
                student(2003, "Fine"),
            ]
        ]
    }
    hook = ScriptedPowerSchool(pages)
    config = make_config()
    result = extract_students(hook, staging_engine, config, RUN)  # used to die with an IntegrityError

    assert result["rows"] == 6
    rows = staged(staging_engine, StgStudent, "student_id", "last_name", "source_problem", "source_problem_reason")
    by_name = {last_name: (student_id, problem, reason) for student_id, last_name, problem, reason in rows}
    assert by_name["Good"] == ("2001", None, None)
    assert by_name["Fine"] == ("2003", None, None)
    assert by_name["Noid"][:2] == (None, "missing_source_id")
    assert by_name["Emptyid"][:2] == (None, "missing_source_id")  # "" is PowerSchool's null
    assert by_name["Letters"][:2] == ("12a", "non_integer_source_id")
    assert "'12a'" in by_name["Letters"][2] and "id" in by_name["Letters"][2]
    assert by_name["Fraction"][:2] == ("2002.5", "non_integer_source_id")
    (count,) = [row for row in staged(staging_engine, ExtractCount, "note", "entity") if row[1] == "students"]
    assert "2 records staged for rejection as missing_source_id" in count[0]
    assert "2 records staged for rejection as non_integer_source_id" in count[0]

    extract_schools(hook, staging_engine, config, RUN)
    validate_run(staging_engine, config, RUN, tmp_path / "results")
    rejected = rejections(staging_engine, "students")
    assert rejected["12a"][0][0] == "non_integer_source_id"
    assert "'12a'" in rejected["12a"][0][1]
    assert rejected["2002.5"][0][0] == "non_integer_source_id"
    missing = [rule for rule, _reason in rejected[None]]
    assert missing.count("missing_source_id") == 2
    assert "2001" not in rejected and "2003" not in rejected


def test_repeats_across_pages_dropped_and_differing_duplicates_both_rejected(staging_engine, tmp_path: Path):
    first = full_page(3000)
    # Page 2 starts with the last record of page 1 again (a row was inserted before it
    # while reading: the page shifted), then a second, different record under id 3005.
    second = [dict(first[-1]), student(3005, "Other"), student(3200, "Last")]
    hook = ScriptedPowerSchool({"/ws/v1/school/11/student": [first, second]})
    config = make_config()
    result = extract_students(hook, staging_engine, config, RUN)

    assert result["rows"] == 102  # 100 + the differing 3005 + 3200; the identical repeat dropped
    rows = staged(staging_engine, StgStudent, "student_id", "last_name", "source_problem")
    copies = [(last_name, problem) for student_id, last_name, problem in rows if student_id == "3005"]
    assert sorted(copies) == [("Name5", "duplicate_source_id"), ("Other", "duplicate_source_id")]
    assert sum(1 for student_id, *_ in rows if student_id == str(first[-1]["id"])) == 1
    assert all(problem is None for student_id, _name, problem in rows if student_id != "3005")
    (count,) = [row for row in staged(staging_engine, ExtractCount, "note", "entity") if row[1] == "students"]
    assert "1 repeated rows dropped" in count[0]
    assert "1 ids listed more than once with different values" in count[0]

    extract_schools(hook, staging_engine, config, RUN)
    validate_run(staging_engine, config, RUN, tmp_path / "results")
    rejected = rejections(staging_engine, "students")
    assert [rule for rule, _reason in rejected["3005"]].count("duplicate_source_id") == 2
    assert "id 3005" in rejected["3005"][0][1]
    assert set(rejected) == {"3005"}


def test_staff_duplicate_in_one_school_is_kept_and_a_status_sent_empty_is_not_active(staging_engine, tmp_path: Path):
    def staff(identifier, last_name, **extra):
        return {
            "id": identifier,
            "users_dcid": identifier + 100,
            "name": {"first_name": "T", "last_name": last_name},
            "teacher_username": f"t{last_name.lower()}",
            "homeschool_id": 11,
            "school_affiliations": {"school_affiliation": {"school_id": 11, "status": 1}},
            **extra,
        }

    pages = {
        "/ws/v1/school/11/staff": [
            [staff(41, "Alpha"), staff(42, "Beta", status=""), staff(41, "Gamma"), staff(43, "Delta", status="1")]
        ]
    }
    hook = ScriptedPowerSchool(pages)
    extract_staff(hook, staging_engine, make_config(), RUN)
    rows = staged(staging_engine, StgStaff, "staff_id", "last_name", "status", "source_problem")
    assert rows == [
        ("41", "Alpha", 1, "duplicate_source_id"),
        ("42", "Beta", None, None),
        ("41", "Gamma", 1, "duplicate_source_id"),
        ("43", "Delta", 1, None),
    ]
    # "" is PowerSchool's null: a staff status sent empty is not "active" by accident.
    extract_schools(hook, staging_engine, make_config(), RUN)
    validate_run(staging_engine, make_config(), RUN, tmp_path / "results")
    excluded = ExcludedRow.__table__
    with staging_engine.connect() as connection:
        left_out = set(
            connection.execute(
                select(excluded.c.source_id, excluded.c.rule).where(
                    excluded.c.run_id == RUN, excluded.c.entity == "staff"
                )
            )
        )
    assert left_out == {("42", "inactive_staff")}


def test_guardian_links_without_ids_are_staged_for_rejection(staging_engine, tmp_path: Path):
    config = make_config()
    hook = ScriptedPowerSchool(
        {"/ws/v1/school/11/student": [[student(2001, "Good")]]},
        query_pages=[
            [
                {
                    "studentsdcid": "2001",
                    "guardianid": "9001",
                    "firstname": "Pat",
                    "lastname": "Good",
                    "username": "pgood",
                    "isenabled": "1",
                    "emailaddress": "",
                },
                {
                    "studentsdcid": "2001",
                    "guardianid": "",
                    "firstname": "Lee",
                    "lastname": "Good",
                    "username": "lgood",
                    "isenabled": "1",
                    "emailaddress": "lee@example.org",
                },
            ]
        ],
    )
    extract_students(hook, staging_engine, config, RUN)
    extract_guardians(hook, staging_engine, config, RUN)
    rows = staged(staging_engine, StgGuardian, "guardian_id", "first_name", "email", "source_problem")
    assert rows == [("9001", "Pat", None, None), (None, "Lee", "lee@example.org", "missing_source_id")]


def test_a_staging_database_of_an_older_version_is_upgraded_and_keeps_its_rows(staging_url):
    """stg_students as an older version made it (student_id NOT NULL, no source_problem):
    create_all adds the columns, drops the NOT NULL (SQLite: rebuilds the table) and keeps
    the rows, so a student without an id is staged instead of failing the insert."""
    from sqlalchemy import create_engine, inspect, text

    from sis_learning.staging.base import create_all

    engine = create_engine(staging_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE stg_students (id INTEGER PRIMARY KEY, district_id VARCHAR(64) NOT NULL, "
                "run_id VARCHAR(250) NOT NULL, scope VARCHAR(64) NOT NULL DEFAULT 'district', "
                "student_id VARCHAR(64) NOT NULL, last_name VARCHAR(400))"
            )
        )
        connection.execute(text("CREATE INDEX ix_stg_students_run ON stg_students (district_id, run_id, student_id)"))
        connection.execute(
            text(
                "INSERT INTO stg_students (id, district_id, run_id, scope, student_id, last_name) "
                "VALUES (1, 'tiny', 'old-run', '11', '2001', 'Kept')"
            )
        )
    create_all(engine)
    create_all(engine)  # idempotent
    columns = {column["name"]: column for column in inspect(engine).get_columns("stg_students")}
    assert {"source_problem", "source_problem_reason", "grade_level"} <= set(columns)
    assert columns["student_id"]["nullable"]
    with engine.begin() as connection:
        assert connection.execute(text("SELECT student_id, last_name FROM stg_students")).all() == [("2001", "Kept")]
        connection.execute(
            text(
                "INSERT INTO stg_students (id, district_id, run_id, scope, student_id, source_problem) "
                "VALUES (2, 'tiny', 'new-run', '11', NULL, 'missing_source_id')"
            )
        )
    assert "ix_stg_students_run" in {index["name"] for index in inspect(engine).get_indexes("stg_students")}
    engine.dispose()


def warnings_of(engine, entity: str) -> dict[str, list[tuple[str, str, str, str, str]]]:
    from sis_learning.staging.quality import ValidationWarning

    table = ValidationWarning.__table__
    found: dict[str, list[tuple[str, str, str, str, str]]] = {}
    with engine.connect() as connection:
        for row in connection.execute(
            select(table.c.source_id, table.c.rule, table.c.field, table.c.value, table.c.reason, table.c.action).where(
                table.c.run_id == RUN, table.c.entity == entity
            )
        ):
            found.setdefault(row.source_id, []).append(tuple(row)[1:])
    return found


def test_control_characters_and_non_integer_numbers_are_cleaned_and_named_never_truncated(
    staging_engine, tmp_path: Path
):
    """NUL and bidirectional overrides are removed from names and logins with a warning
    (PostgreSQL staging refuses NUL); 3.5 and "ten" in an integer field are never
    truncated: a grade level is a warning (imported without a level), an enroll status or
    a staff status rejects the row; every reason quotes at most 200 characters."""

    def with_enrollment(record, **enrollment):
        record["school_enrollment"] = {**record["school_enrollment"], **enrollment}
        return record

    nul = student(2101, "Nul\x00son", web_id="nul\x00son")
    bidi = student(2102, "\u202eEvil", web_id="bidi.kid")
    half = with_enrollment(student(2103, "Half"), grade_level="3.5")
    ten = with_enrollment(student(2104, "Ten"), enroll_status_code="ten")
    whole = with_enrollment(student(2105, "Whole"), grade_level="4.0")
    long_name = student(2106, "L" * 300 + "\x00")
    staff = {
        "id": 44,
        "users_dcid": 144,
        "name": {"first_name": "T", "last_name": "Status"},
        "teacher_username": "tstatus",
        "homeschool_id": 11,
        "status": "ten",
        "school_affiliations": {"school_affiliation": {"school_id": 11, "status": 1}},
    }
    hook = ScriptedPowerSchool(
        {"/ws/v1/school/11/student": [[nul, bidi, half, ten, whole, long_name]], "/ws/v1/school/11/staff": [[staff]]}
    )
    config = make_config()
    extract_schools(hook, staging_engine, config, RUN)
    extract_students(hook, staging_engine, config, RUN)
    extract_staff(hook, staging_engine, config, RUN)

    rows = {
        student_id: (last_name, username, grade, status)
        for student_id, last_name, username, grade, status in staged(
            staging_engine,
            StgStudent,
            "student_id",
            "last_name",
            "student_username",
            "grade_level",
            "enroll_status_code",
        )
    }
    assert rows["2101"][:2] == ("Nulson", "nulson")
    assert rows["2102"][0] == "Evil"
    assert rows["2103"][2] is None and rows["2104"][3] is None  # never 3, never a guess
    assert rows["2105"][2] == 4
    assert staged(staging_engine, StgStaff, "staff_id", "status") == [("44", None)]

    validate_run(staging_engine, config, RUN, tmp_path / "results")
    warned = warnings_of(staging_engine, "students")
    assert sorted((rule, field, action) for rule, field, _value, _reason, action in warned["2101"]) == [
        ("control_characters", "last_name", "cleaned"),
        ("control_characters", "student_username", "cleaned"),
    ]
    assert {value for _rule, _field, value, _reason, _action in warned["2101"]} == {"Nul\\u0000son", "nul\\u0000son"}
    assert warned["2102"][0][:2] == ("control_characters", "last_name")
    assert warned["2103"] == [
        (
            "non_integer_value",
            "grade_level",
            "3.5",
            "the grade_level '3.5' is not an integer (PowerSchool stores a whole number there); "
            "it is not truncated or guessed",
            "cleared",
        )
    ]
    long_warning = warned["2106"][0]
    # the value staged and every value the reason quotes: at most 200 characters each
    assert len(long_warning[2]) == 200 and "L" * 201 not in long_warning[3]
    rejected = rejections(staging_engine, "students")
    assert [rule for rule, _reason in rejected["2104"]] == ["non_integer_value"]
    assert "'ten'" in rejected["2104"][0][1]
    assert not {"2101", "2102", "2103", "2105"} & set(rejected)  # warned rows pass
    # 300 letters are too long for Learning anyway: rejected, the reason quoting 200 of them
    assert "last_name_length" in [rule for rule, _reason in rejected["2106"]]
    assert all("L" * 201 not in reason for _rule, reason in rejected["2106"])
    staff_rejected = rejections(staging_engine, "staff")
    assert [rule for rule, _reason in staff_rejected["44"]] == ["non_integer_value"]
