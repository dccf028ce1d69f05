"""validate_run and check_thresholds on hand-made staged rows, on SQLite and PostgreSQL.

Each expectation and row-level rule gets a failing row beside rows that pass every
rule; exclusions by design are checked apart from failures; the cascade is checked row
by row; the co-teacher cap at 24, 25, 26 and 60 sections.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from sis_learning import validate
from sis_learning.staging.quality import ExcludedRow, RejectedRow, ValidationResult, ValidationWarning
from tests.validate.staged_rows import RUN_ID, StagedRun, district_config, small_district


def outcome_rows(engine, model) -> pd.DataFrame:
    table = model.__table__
    with engine.connect() as connection:
        return pd.read_sql(select(table).where(table.c.run_id == RUN_ID).order_by(table.c.id), connection)


def keyed(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    return {(row.entity, row.source_id, row.rule) for row in frame.itertuples()}


def run_validate(engine, staged: StagedRun, tmp_path: Path, **config_overrides):
    staged.insert(engine)
    config = district_config(**config_overrides)
    counts = validate.validate_run(engine, config, RUN_ID, tmp_path / "results")
    return config, counts, outcome_rows(engine, RejectedRow), outcome_rows(engine, ExcludedRow)


def test_every_rule_rejects_its_failing_row_and_passes_the_good_rows(staging_engine, tmp_path: Path) -> None:
    staged = small_district()  # all of these pass every rule
    long_name = "N" * 101
    # schools
    staged.school("101", name=None)
    staged.student("318", school_id="101")
    staged.school("102")
    staged.school("102")
    # terms and courses
    staged.term("3600", start_year=None)
    staged.course("701", course_name=None)
    staged.course("702", course_number=None)
    staged.course("703", course_name="C" * 250)
    # staff
    staged.staff("201")
    staged.staff("201")
    staged.staff("202", first_name=None)
    staged.staff("203", last_name="  ")
    staged.staff("204", first_name=long_name)
    staged.staff("205", last_name=long_name)
    staged.staff("206", email="not-an-email")
    staged.staff("207", email="a" * 250 + "@test.org")
    staged.staff("208", teacher_username="u" * 101)
    staged.staff("209", teacher_username="TEACHER200")
    staged.staff("220", status=2)
    # students
    staged.student(" ", last_name="NoId", student_username="noid", email=None)
    staged.student("311")
    staged.student("311")
    staged.student("312", first_name=None)
    staged.student("313", last_name=None)
    staged.student("314", grade_level=None)
    staged.student("315", email="two@@students.test.org")
    staged.student("316", school_id="999")
    staged.student("317", student_username="s" * 101)
    # guardians
    staged.guardian("610", "300", first_name=None)
    staged.guardian("611", "300", email="parent at home")
    staged.guardian("612", "300", portal_username="p" * 101)
    staged.guardian("620", "9999")
    # the same DCID as teacher 200: no conflict, Learning identifies a user by type and id
    staged.guardian("200", "301", portal_username="sameid")
    # sections
    staged.section("410")
    staged.section("410")
    staged.section("411", section_number=None)
    staged.section("412", term_id="9999")
    staged.section("413", course_id="9999")
    staged.section("414", staff_id="9999")
    staged.section("415", staff_id="220")
    staged.section("416", course_id="703")
    staged.section("417", staff_id="202")
    staged.section("418", term_id="3600")
    # enrollments
    staged.enrollment("", "400", "301")
    staged.enrollment("510", "9999", "300")
    staged.enrollment("511", "400", "9999")
    staged.enrollment("512", "417", "300")
    staged.enrollment("513", "400", "312")
    # section teachers
    staged.section_teacher("9999", "200")
    staged.section_teacher("400", "9999")
    staged.section_teacher("400", "200", role="Lead Teacher")

    _config, counts, rejected, excluded = run_validate(staging_engine, staged, tmp_path)

    expected = {
        ("schools", "101", "name_present"),
        ("schools", "102", "id_unique"),
        ("terms", "3600", "start_year_present"),
        ("courses", "701", "course_name_present"),
        ("courses", "702", "course_number_present"),
        ("staff", "201", "id_unique"),
        ("staff", "202", "first_name_present"),
        ("staff", "203", "last_name_present"),
        ("staff", "204", "first_name_length"),
        ("staff", "205", "last_name_length"),
        ("students", None, "id_present"),
        ("students", "311", "id_unique"),
        ("students", "312", "first_name_present"),
        ("students", "313", "last_name_present"),
        ("students", "316", "school_reference"),
        ("guardians", "610", "first_name_present"),
        ("parent_links", "620:9999", "child_reference"),
        ("sections", "410", "id_unique"),
        ("sections", "411", "section_number_present"),
        ("sections", "412", "term_reference"),
        ("sections", "413", "course_reference"),
        ("sections", "416", "class_name_length"),
        ("sections", "417", "teacher_rejected"),
        ("sections", "418", "term_rejected"),
        ("section_enrollments", None, "id_present"),
        ("section_enrollments", "510", "section_reference"),
        ("section_enrollments", "511", "student_reference"),
        ("section_enrollments", "512", "section_rejected"),
        ("section_enrollments", "513", "student_rejected"),
        ("section_teachers", "9999:200", "section_reference"),
        ("section_teachers", "400:9999", "staff_reference"),
    }
    found = {(entity, None if pd.isna(source) else source, rule) for entity, source, rule in keyed(rejected)}
    assert expected <= found, sorted(expected - found, key=str)
    # The cascade from the failing parents and children adds only these rows:
    extra = found - expected
    assert (
        extra
        == {
            ("students", "318", "school_rejected"),
            ("parent_links", "610:300", "parent_rejected"),
            ("guardians", "620", "child_rejected"),
            ("section_enrollments", "512", "section_rejected"),
        }
        - expected
    )
    # The good rows pass: nothing of the small district is rejected or excluded.
    good = {
        ("schools", "100"),
        ("terms", "3500"),
        ("courses", "700"),
        ("staff", "200"),
        ("students", "300"),
        ("students", "301"),
        ("guardians", "600"),
        ("sections", "400"),
        ("section_enrollments", "500"),
        ("section_enrollments", "501"),
        ("parent_links", "600:300"),
        ("guardians", "200"),
        ("parent_links", "200:301"),
        # a bad field is a warning, not a rejection: the user is imported without it
        ("staff", "206"),
        ("staff", "207"),
        ("students", "314"),
        ("students", "315"),
        ("guardians", "611"),
        ("parent_links", "611:300"),
        # a username Learning cannot take is a warning too: the user gets another login (line 109)
        ("staff", "208"),
        ("staff", "209"),
        ("students", "317"),
        ("guardians", "612"),
        ("parent_links", "612:300"),
    }
    assert not good & {(row.entity, row.source_id) for row in rejected.itertuples()}
    warnings = outcome_rows(staging_engine, ValidationWarning)
    assert {(row.entity, row.source_id, row.rule, row.field, row.action) for row in warnings.itertuples()} == {
        ("staff", "206", "email_format", "email", "cleared"),
        ("staff", "207", "email_length", "email", "cleared"),
        ("students", "314", "grade_level_present", "grade_level", "cleared"),
        ("students", "315", "email_format", "email", "cleared"),
        ("guardians", "611", "email_format", "email", "cleared"),
        ("staff", "208", "login_length", "teacher_username", "cleared"),
        ("staff", "209", "login_unique", "teacher_username", "cleared"),
        ("students", "317", "login_length", "student_username", "cleared"),
        ("guardians", "612", "login_length", "portal_username", "cleared"),
    }
    warned = {(row.entity, row.source_id): row for row in warnings.itertuples()}
    assert warned[("staff", "206")].value == "not-an-email"
    assert warned[("staff", "206")].reason == (
        "the email address 'not-an-email' is not a valid email address: imported without an email "
        "(and without a Google / Office 365 SSO email)"
    )
    assert len(warned[("staff", "207")].value) == 200  # a warning quotes at most 200 characters
    assert "a" * 201 not in warned[("staff", "207")].reason
    assert counts["staff"]["warned"] == 4 and counts["students"]["warned"] == 3
    # Reasons speak to a district admin and carry the offending value.
    assert warned[("staff", "209")].reason == (
        "the login 'teacher200' is already used by teacher 200 (Learning logins are unique): imported without it, "
        "the Google / Office 365 email is the login"
    )
    assert warned[("guardians", "612")].reason == (
        f"the Parent Portal username '{'p' * 101}' is longer than the 100 characters Learning accepts: imported "
        "without it, with a generated login"
    )
    reasons = {(row.entity, row.source_id, row.rule): row.reason for row in rejected.itertuples()}
    # A section whose lead teacher is inactive (or left out by rule) is excluded by design: only
    # active teachers are imported, and a class comes over only with its teacher.
    excluded_reasons = {(row.entity, row.source_id, row.rule): row.reason for row in excluded.itertuples()}
    assert "is not among the active staff" in excluded_reasons[("sections", "414", "teacher_not_active")]
    assert (
        "lead teacher 220 is not imported: the teacher is not active"
        in excluded_reasons[("sections", "415", "teacher_not_imported")]
    )
    assert not {("sections", "414"), ("sections", "415")} & {
        (row.entity, row.source_id) for row in rejected.itertuples()
    }
    assert "longer than the 255 characters" in reasons[("sections", "416", "class_name_length")]
    assert reasons[("students", "318", "school_rejected")] == "the student's school 101 failed: the school has no name"
    school = rejected[(rejected["entity"] == "schools") & (rejected["source_id"] == "101")].iloc[0]
    assert school["blocks"] == "1 student(s)"
    assert (
        rejected[(rejected["entity"] == "sections") & (rejected["source_id"] == "418")].iloc[0]["caused_by"]
        == "terms:3600"
    )
    # The inactive teacher is excluded by design, not rejected.
    assert ("staff", "220", "inactive_staff") in keyed(excluded)
    assert counts["staff"] == {"evaluated": 12, "passed": 5, "rejected": 6, "excluded": 1, "warned": 4}
    assert counts["students"]["passed"] == 5  # 314, 315 and 317 pass with a warning
    # The lead teacher's own section-teacher row is not a co-teacher placement and passes.
    assert ("section_teachers", "400:200") not in {(row.entity, row.source_id) for row in rejected.itertuples()}
    assert ("section_teachers", "400:200") not in {(row.entity, row.source_id) for row in excluded.itertuples()}


def test_exclusions_by_design_are_kept_apart_from_failures(staging_engine, tmp_path: Path) -> None:
    staged = small_district()
    staged.school("150")  # not selected
    staged.term("3400", start_year=2024)
    staged.staff("230", status=2)
    staged.staff("231", school_id="150", school_ids="150")
    staged.staff("232", school_id="150", school_ids="150,100")  # affiliated with a selected school: imported
    staged.student("320", enroll_status_code=-1)
    staged.student("321", enroll_status_code=2)
    staged.student("322", enroll_status_code=3)
    staged.student("323", school_id="150")
    staged.section("420", staff_id=None)
    staged.section("421", term_id="3400")
    staged.section("422", school_id="150")
    staged.enrollment("520", "400", "300")  # the same student twice in one section
    staged.enrollment("521", "400", "301", dropped=True)
    staged.enrollment("522", "420", "300")
    staged.enrollment("523", "400", "320")
    staged.guardian("630", "300", portal_username=None)
    staged.guardian("631", "300", portal_enabled=False)
    staged.guardian("632", "321")

    _config, counts, rejected, excluded = run_validate(staging_engine, staged, tmp_path, schools=["100"])

    assert rejected.empty, rejected[["entity", "source_id", "rule", "reason"]].to_string()
    assert keyed(excluded) == {
        ("schools", "150", "school_not_selected"),
        ("terms", "3400", "term_before_import_start_year"),
        ("staff", "230", "inactive_staff"),
        ("staff", "231", "school_not_selected"),
        ("students", "320", "inactive_enrollment"),
        ("students", "321", "inactive_enrollment"),
        ("students", "322", "inactive_enrollment"),
        ("students", "323", "school_not_selected"),
        ("sections", "420", "no_teacher"),
        ("sections", "421", "term_before_import_start_year"),
        ("sections", "422", "school_not_selected"),
        ("section_enrollments", "520", "duplicate_enrollment"),
        ("section_enrollments", "521", "dropped_enrollment"),
        ("section_enrollments", "522", "section_not_imported"),
        ("section_enrollments", "523", "student_not_imported"),
        ("guardians", "630", "no_portal_account"),
        ("guardians", "631", "portal_account_disabled"),
        ("guardians", "632", "no_imported_child"),
        ("parent_links", "630:300", "parent_not_imported"),
        ("parent_links", "631:300", "parent_not_imported"),
        ("parent_links", "632:321", "child_not_imported"),
    }
    reasons = {(row.entity, row.source_id): row.reason for row in excluded.itertuples()}
    assert reasons[("students", "321")] == (
        "the student's enroll status is 2, not 0 (Active); only active students are imported"
    )
    assert reasons[("section_enrollments", "522")].startswith(
        "the section 420 is not imported: the section has no lead"
    )
    assert counts["students"] == {"evaluated": 6, "passed": 2, "rejected": 0, "excluded": 4, "warned": 0}
    assert counts["section_enrollments"] == {"evaluated": 6, "passed": 2, "rejected": 0, "excluded": 4, "warned": 0}


def test_a_student_enrolled_again_after_dropping_a_section_is_in_it(staging_engine, tmp_path: Path) -> None:
    """PowerSchool keeps the dropped CC row and adds a new one: the new one is the enrollment, not a
    duplicate of the dropped one (the bug: it was excluded as ``duplicate_enrollment``, so the
    student never came back to the class in Learning)."""
    staged = small_district()
    staged.student("302")
    staged.enrollment("510", "400", "302", dropped=True)  # staged before the new row, as PowerSchool sends it
    staged.enrollment("511", "400", "302")
    staged.enrollment("512", "400", "302")  # a true duplicate of the new enrollment is still one
    _config, counts, rejected, excluded = run_validate(staging_engine, staged, tmp_path)
    assert rejected.empty, rejected[["entity", "source_id", "rule", "reason"]].to_string()
    enrollments = {(row.source_id, row.rule) for row in excluded.itertuples() if row.entity == "section_enrollments"}
    assert enrollments == {("510", "dropped_enrollment"), ("512", "duplicate_enrollment")}
    assert counts["section_enrollments"] == {"evaluated": 5, "passed": 3, "rejected": 0, "excluded": 2, "warned": 0}


def test_a_status_powerschool_sent_empty_is_not_active(staging_engine, tmp_path: Path) -> None:
    """ "" is PowerSchool's null (staged empty): a teacher without a status, or a student
    without an enroll status, is not known to be active, so neither is imported; the
    reason says the value is missing."""
    staged = small_district()
    staged.staff("233", status=None)
    staged.student("324", enroll_status_code=None)
    _config, counts, rejected, excluded = run_validate(staging_engine, staged, tmp_path)
    assert rejected.empty, rejected[["entity", "source_id", "rule", "reason"]].to_string()
    reasons = {(row.entity, row.source_id, row.rule): row.reason for row in excluded.itertuples()}
    assert reasons[("staff", "233", "inactive_staff")] == (
        "the teacher has no status in PowerSchool (not known to be active; only active staff are imported)"
    )
    assert reasons[("students", "324", "inactive_enrollment")] == (
        "the student has no enroll status in PowerSchool (not known to be 0, Active); only active students are imported"
    )
    assert counts["staff"]["excluded"] == 1 and counts["students"]["excluded"] == 1


def test_ignore_parents_excludes_every_parent_and_link(staging_engine, tmp_path: Path) -> None:
    _config, counts, rejected, excluded = run_validate(staging_engine, small_district(), tmp_path, ignore_parents=True)
    assert rejected.empty
    assert {("guardians", "600", "ignore_parents"), ("parent_links", "600:300", "parent_not_imported")} == {
        key for key in keyed(excluded) if key[0] in ("guardians", "parent_links")
    }
    assert counts["guardians"]["passed"] == 0


def test_username_missing_fails_only_without_autogeneration_and_sso_email(staging_engine, tmp_path: Path) -> None:
    staged = small_district()
    staged.student("330", student_username=None, email="kid@gmail.com")
    staged.student("331", student_username=None, email="kid331@students.test.org")  # SSO email: its login
    staged.staff("240", teacher_username=" ", email=None)
    _config, _counts, rejected, _excluded = run_validate(staging_engine, staged, tmp_path, autogenerate_usernames=False)
    assert {(entity, source, rule) for entity, source, rule in keyed(rejected) if rule == "username_missing"} == {
        ("students", "330", "username_missing"),
        ("staff", "240", "username_missing"),
    }


@pytest.mark.parametrize("autogenerate", [True, False])
def test_a_shared_or_too_long_username_is_a_warning_unless_the_user_can_get_no_other_login(
    staging_engine, tmp_path: Path, autogenerate: bool
) -> None:
    """Line 109: with autogeneration on (or a Google / Office 365 email), a user whose SIS
    username Learning cannot take (another user's login, or longer than 100 characters) is
    imported without it; only without either is it a rejection, as a missing username is.
    The first by type (teachers, students, parents) and id keeps a shared login, unless
    another of them holds it in Learning already."""
    staged = small_district()
    staged.staff("241", teacher_username="Shared.Login", email="t241@gmail.com")
    staged.student("332", student_username="shared.login", email="kid332@gmail.com")
    staged.student("333", student_username="shared.login", email="kid333@students.test.org")  # SSO email
    staged.guardian("640", "300", portal_username="SHARED.LOGIN")
    staged.student("334", student_username="x" * 101, email=None)
    staged.insert(staging_engine)
    config = district_config(autogenerate_usernames=autogenerate)
    counts = validate.validate_run(staging_engine, config, RUN_ID, tmp_path / "results")
    rejected = {(row.entity, row.source_id): row for row in outcome_rows(staging_engine, RejectedRow).itertuples()}
    warned = {(row.entity, row.source_id): row for row in outcome_rows(staging_engine, ValidationWarning).itertuples()}
    login_rules = {"login_unique", "login_length"}
    got_rejected = {key: row.rule for key, row in rejected.items() if row.rule in login_rules}
    got_warned = {key: row.rule for key, row in warned.items() if row.rule in login_rules}
    # the teacher keeps the login; the student with an SSO email logs in with it either way
    assert ("staff", "241") not in got_rejected and ("staff", "241") not in got_warned
    assert got_warned[("students", "333")] == "login_unique"
    assert warned[("students", "333")].reason.endswith("the Google / Office 365 email is the login")
    if autogenerate:
        assert got_rejected == {}
        assert got_warned == {
            ("students", "332"): "login_unique",
            ("students", "333"): "login_unique",
            ("guardians", "640"): "login_unique",
            ("students", "334"): "login_length",
        }
        assert warned[("students", "332")].reason == (
            "the login 'shared.login' is already used by teacher 241 (Learning logins are unique): imported without "
            "it, with a generated login"
        )
        assert warned[("students", "332")].field == "student_username" and warned[("students", "332")].action == (
            "cleared"
        )
    else:
        assert got_rejected == {
            ("students", "332"): "login_unique",
            ("guardians", "640"): "login_unique",
            ("students", "334"): "login_length",
        }
        assert rejected[("students", "332")].reason.endswith(
            "; the user has no Google / Office 365 email and the district does not autogenerate usernames"
        )
        assert counts["students"]["rejected"] == 2

    # Learning already holds the login for student 332: 332 keeps it, the teacher gets another.
    from sis_learning.staging.changes import LearningSnapshot

    with staging_engine.begin() as connection:
        connection.execute(
            LearningSnapshot.__table__.insert().values(
                district_id=config.district_id,
                entity="users",
                key="S:332",
                organization_id="100",
                content_hash="x",
                payload=json.dumps({"login": "Shared.Login", "user_type": "S"}),
                active=True,
                run_id="earlier",
            )
        )
    validate.validate_run(staging_engine, config, RUN_ID, tmp_path / "results")
    rejected = {(row.entity, row.source_id) for row in outcome_rows(staging_engine, RejectedRow).itertuples()}
    warned = {(row.entity, row.source_id): row for row in outcome_rows(staging_engine, ValidationWarning).itertuples()}
    assert ("students", "332") not in rejected and ("students", "332") not in warned
    if autogenerate:
        assert warned[("staff", "241")].reason.startswith("the login 'shared.login' is already used by student 332")
    else:
        assert ("staff", "241") in rejected


def test_the_cascade_is_recorded_row_by_row(staging_engine, tmp_path: Path) -> None:
    staged = small_district()
    staged.staff("201")
    staged.staff("250", last_name=None)  # fails: owns two classes and co-teaches one
    staged.section("440", staff_id="250")
    staged.section("441", staff_id="250", section_number="2")
    staged.section_teacher("441", "250", role="Lead Teacher")  # the failed lead's own row is held back too
    staged.section_teacher("400", "250")
    staged.section_teacher("440", "201")
    staged.enrollment("540", "440", "300")
    staged.enrollment("541", "440", "301")
    staged.enrollment("542", "441", "300")
    staged.student("340", first_name="")  # fails: in class 400, linked to a parent with another child
    staged.enrollment("543", "400", "340")
    staged.guardian("640", "340")
    staged.guardian("600", "340")

    _config, counts, rejected, _excluded = run_validate(staging_engine, staged, tmp_path)

    by_key = {(row.entity, row.source_id, row.rule): row for row in rejected.itertuples()}
    teacher = by_key[("staff", "250", "last_name_present")]
    assert teacher.caused_by is None
    assert teacher.blocks == "2 class(es) (440, 441), 3 student roster row(s), 3 teacher and co-teacher roster row(s)"
    for key in [
        ("sections", "440", "teacher_rejected"),
        ("sections", "441", "teacher_rejected"),
        ("section_enrollments", "540", "section_rejected"),
        ("section_enrollments", "541", "section_rejected"),
        ("section_enrollments", "542", "section_rejected"),
        ("section_teachers", "400:250", "staff_rejected"),
        ("section_teachers", "440:201", "section_rejected"),
        ("section_teachers", "441:250", "section_rejected"),
    ]:
        assert by_key[key].caused_by == "staff:250", key
        assert "the last name is missing" in by_key[key].reason
    student = by_key[("students", "340", "first_name_present")]
    assert student.blocks == "1 student roster row(s), 1 parent(s), 2 parent link(s)"
    assert by_key[("section_enrollments", "543", "student_rejected")].caused_by == "students:340"
    assert by_key[("parent_links", "640:340", "child_rejected")].caused_by == "students:340"
    assert by_key[("parent_links", "600:340", "child_rejected")].caused_by == "students:340"
    # Parent 640 has no other child: blocked. Parent 600 keeps its link to student 300.
    assert by_key[("guardians", "640", "child_rejected")].caused_by == "students:340"
    assert ("guardians", "600") not in {(row.entity, row.source_id) for row in rejected.itertuples()}
    # The class of the good teacher and its other students are untouched.
    assert ("sections", "400") not in {(row.entity, row.source_id) for row in rejected.itertuples()}
    assert counts["section_enrollments"] == {"evaluated": 6, "passed": 2, "rejected": 4, "excluded": 0, "warned": 0}


def co_teacher_district(sections: int) -> StagedRun:
    """Teacher 200 leads every section; teacher 260 co-teaches them all, in two terms."""
    staged = StagedRun()
    staged.school("100")
    staged.term("3500", start_year=2025, start_date="2025-08-15")
    staged.term("3501", start_year=2026, start_date="2026-01-10")  # the later (current) semester
    staged.course("700")
    staged.staff("200")
    staged.staff("260")
    for number in range(sections):
        section_id = str(1000 + number)
        term_id = "3501" if number % 2 else "3500"
        staged.section(section_id, term_id=term_id, section_number=str(number))
        # Assignments run with their term (the 2026 term ends 2027-06-01): all current.
        term_end = "2027-06-01" if term_id == "3501" else "2026-06-01"
        staged.section_teacher(section_id, "200", role="Lead Teacher", end_date=term_end)
        staged.section_teacher(section_id, "260", end_date=term_end)
    return staged


def expected_kept(sections: int, limit: int = 25) -> list[str]:
    later = [str(1000 + n) for n in range(sections) if n % 2]
    earlier = [str(1000 + n) for n in range(sections) if not n % 2]
    return (later + earlier)[:limit]


@pytest.fixture
def sqlite_engine(sqlite_url: str):
    """SQLite only: for rules that are pure pandas, where a second database adds time, not coverage."""
    from sis_learning.staging.base import create_all, get_engine

    return create_all(get_engine(sqlite_url))


@pytest.mark.parametrize("sections", [24, 25, 26, 60])
def test_a_co_teacher_is_placed_in_at_most_25_classes(sqlite_engine, tmp_path: Path, sections: int) -> None:
    _config, counts, rejected, excluded = run_validate(sqlite_engine, co_teacher_district(sections), tmp_path)
    assert rejected.empty
    capped = excluded[excluded["rule"] == "co_teacher_class_limit"]
    kept = expected_kept(sections)
    dropped = sorted({str(1000 + n) for n in range(sections)} - set(kept))
    assert sorted(capped["source_id"]) == sorted(f"{section}:260" for section in dropped)
    assert len(capped) == max(0, sections - 25)
    if len(capped):
        assert "already has 25 classes" in capped["reason"].iloc[0]
    assert counts["section_teachers"]["excluded"] == max(0, sections - 25)
    assert counts["section_teachers"]["passed"] == sections + min(sections, 25)


def test_the_co_teacher_cap_follows_the_district_setting(sqlite_engine, tmp_path: Path) -> None:
    _config, _counts, _rejected, excluded = run_validate(
        sqlite_engine, co_teacher_district(6), tmp_path, co_teacher_class_limit=2
    )
    capped = excluded[excluded["rule"] == "co_teacher_class_limit"]
    assert sorted(capped["source_id"].str.split(":").str[0]) == sorted(
        set(map(str, range(1000, 1006))) - set(expected_kept(6, limit=2))
    )


def test_results_and_data_docs_are_kept_per_run(staging_engine, tmp_path: Path) -> None:
    staged = small_district()
    staged.student("350", email="bad-email")
    run_validate(staging_engine, staged, tmp_path)
    results = outcome_rows(staging_engine, ValidationResult)
    assert set(results["entity"]) == set(validate.SUITES)
    students = results[results["entity"] == "students"].iloc[0]
    assert (students["evaluated"], students["failed"], bool(students["success"])) == (3, 1, False)
    document = json.loads(Path(students["results_path"]).read_text(encoding="utf-8"))
    assert document["success"] is False
    assert Path(students["data_docs_path"]).is_file()
    page = Path(students["data_docs_path"]).read_text(encoding="utf-8")
    assert "students_suite" in page
    suite_page = tmp_path / "results" / "data_docs" / "expectations" / "students_suite.html"
    assert "rule email_format" in suite_page.read_text(encoding="utf-8")  # each rule's notes, for the reader
    assert (tmp_path / "results" / "data_docs" / "index.html").is_file()


def test_validating_a_run_again_replaces_its_rows(staging_engine, tmp_path: Path) -> None:
    staged = small_district()
    staged.student("360", first_name=None)
    staged.student("361", enroll_status_code=2)
    config, _counts, rejected, excluded = run_validate(staging_engine, staged, tmp_path)
    validate.validate_run(staging_engine, config, RUN_ID, tmp_path / "results")
    assert len(outcome_rows(staging_engine, RejectedRow)) == len(rejected) == 1
    assert len(outcome_rows(staging_engine, ExcludedRow)) == len(excluded) == 1
    assert len(outcome_rows(staging_engine, ValidationResult)) == len(validate.SUITES)


# ---- the run-level guard ------------------------------------------------------------------


def students_with_failures(total: int, failing: int) -> StagedRun:
    staged = StagedRun()
    staged.school("100")
    for number in range(total):
        staged.student(str(3000 + number), first_name=None if number < failing else "Sam")
    staged.student("2999", enroll_status_code=2)  # excluded rows are not in the share
    return staged


def test_the_guard_stops_the_run_naming_entity_rule_share_and_examples(staging_engine, tmp_path: Path) -> None:
    config, *_ = run_validate(staging_engine, students_with_failures(total=20, failing=8), tmp_path)
    with pytest.raises(validate.ValidationThresholdExceeded) as raised:
        validate.check_thresholds(staging_engine, config, RUN_ID)
    message = str(raised.value)
    assert "students: 8 of 20 rows failed validation (40.0%), more than the threshold of 5.0%" in message
    assert "first_name_present (8)" in message
    examples = [line for line in message.splitlines() if line.startswith("  - students")]
    assert len(examples) == 5
    assert examples[0] == "  - students 3000 [first_name_present]: the first name is missing"


def test_the_guard_lets_a_run_within_its_thresholds_pass(staging_engine, tmp_path: Path) -> None:
    config, *_ = run_validate(staging_engine, students_with_failures(total=20, failing=1), tmp_path)
    validate.check_thresholds(staging_engine, config, RUN_ID)  # 5.0% is not more than 5%
    stricter = district_config(validation_thresholds={"default": 0.05, "per_entity": {"students": 0.01}})
    with pytest.raises(validate.ValidationThresholdExceeded, match=r"students: 1 of 20 .* threshold of 1.0%"):
        validate.check_thresholds(staging_engine, stricter, RUN_ID)


def test_warnings_never_count_toward_the_thresholds(staging_engine, tmp_path: Path) -> None:
    """Half the students with an email that is not an address, half without a grade level, a
    teacher with a bad email: every one is imported without that value, so the run is far
    within its 5% thresholds however many warnings it has."""
    staged = StagedRun()
    staged.school("100")
    staged.staff("200", email="n/a")
    for number in range(20):
        staged.student(
            str(3000 + number),
            email="none" if number % 2 else "x@",
            grade_level=None if number < 10 else "4",
        )
    config, counts, rejected, _excluded = run_validate(staging_engine, staged, tmp_path)
    assert rejected.empty
    # one warning per row and field: 20 emails and 10 grade levels
    assert counts["students"]["warned"] == 30 and counts["students"]["passed"] == 20
    assert counts["staff"]["warned"] == 1
    warnings = outcome_rows(staging_engine, ValidationWarning)
    assert len(warnings[warnings["entity"] == "students"]) == 30
    validate.check_thresholds(staging_engine, config, RUN_ID)  # 100% of the students warned: not a failure
    strictest = district_config(validation_thresholds={"default": 0.0})
    validate.check_thresholds(staging_engine, strictest, RUN_ID)


def test_the_guard_counts_an_entitys_own_failures_not_the_cascade(staging_engine, tmp_path: Path) -> None:
    """One teacher with a broken record holds back all 10 of their classes and 40 roster rows: the
    staff share counts that failure (1 of 20 teachers is 5%, within the threshold); the sections and
    enrollments held back by the cascade are that teacher's failure, not 10 broken sections."""
    staged = StagedRun()
    staged.school("100")
    staged.term("3500", start_year=2025, start_date="2025-08-15")
    staged.course("700")
    for number in range(20):
        staged.staff(str(200 + number), last_name=None if number == 0 else "Ng")
    for number in range(20):
        section_id = str(400 + number)
        staged.section(section_id, staff_id="200" if number < 10 else str(200 + number), section_number=str(number))
        for seat in range(4):
            student_id = str(3000 + number * 4 + seat)
            staged.student(student_id)
            staged.enrollment(str(5000 + number * 4 + seat), section_id, student_id)
    config, counts, _rejected, _excluded = run_validate(staging_engine, staged, tmp_path)
    assert counts["sections"]["rejected"] == 10 and counts["section_enrollments"]["rejected"] == 40
    validate.check_thresholds(staging_engine, config, RUN_ID)  # passes: only staff 200 itself is broken
    stricter = district_config(validation_thresholds={"default": 0.05, "per_entity": {"staff": 0.01}})
    with pytest.raises(validate.ValidationThresholdExceeded) as raised:
        validate.check_thresholds(staging_engine, stricter, RUN_ID)
    assert "staff: 1 of 20 rows failed validation (5.0%)" in str(raised.value)
    assert "sections" not in str(raised.value).split("\n", 1)[1]


def test_staged_rows_read_the_same_whether_a_run_is_contiguous_or_interleaved(staging_engine) -> None:
    """SQLite reads a run's rows as a range of row ids when they are (nearly) contiguous, else through the index.

    Either way: the run's rows only, in the order they were staged, blanks read as missing.
    """
    config = district_config()
    contiguous = StagedRun()
    for index in range(6):
        contiguous.student(f"3{index:02d}", first_name="  " if index == 2 else "Sam")
    contiguous.insert(staging_engine, run_id="run-a")
    # run-b: one other district's row after each of its own (range read, others filtered out);
    # run-c: two after each (too spread out for a range: the index).
    for run_id, others in (("run-b", 1), ("run-c", 2)):
        for index in range(6):
            own = StagedRun()
            own.student(f"5{index:02d}")
            own.insert(staging_engine, run_id=run_id)
            other = StagedRun()
            for copy in range(others):
                other.student(f"9{index}{copy}")
            other.insert(staging_engine, run_id=run_id, district_id="other_district")

    run_a = validate.read_staged(staging_engine, config, "run-a")["students"]
    assert run_a["student_id"].tolist() == [f"3{index:02d}" for index in range(6)]
    assert run_a["first_name"].isna().tolist() == [index == 2 for index in range(6)]
    assert str(run_a["grade_level"].dtype) == "Int64" and run_a["grade_level"].tolist() == [9] * 6
    for run_id in ("run-b", "run-c"):
        students = validate.read_staged(staging_engine, config, run_id)["students"]
        assert students["student_id"].tolist() == [f"5{index:02d}" for index in range(6)]


def test_id_order_is_numeric_then_textual_and_stable() -> None:
    frame = pd.DataFrame({"id": pd.array(["10", "9", "x", None, "07", "7", "9", "a"], dtype="string"), "row": range(8)})
    expected = (
        frame.assign(_order=validate.numeric_id_order(frame["id"]))
        .sort_values(["_order", "id"], kind="stable")["row"]
        .tolist()
    )
    assert validate.sorted_by_id(frame, "id")["row"].tolist() == expected == [4, 5, 1, 6, 0, 7, 2, 3]
    # Ties on the number with the same text keep their order (the fast path).
    assert validate.sorted_by_id(frame.iloc[[0, 6, 1]], "id")["row"].tolist() == [6, 1, 0]
    # An id that is not a number sorts last instead of failing (a text column gives Int64).
    assert validate.numeric_id_order(pd.Series(["2", "x", None], dtype="string")).tolist() == [
        2.0,
        float("inf"),
        float("inf"),
    ]
