"""The CSV mapping engine and the shipped specs (include/mappings/).

Expected rows are worked out by hand from the source document's mapping tables
(Student, Users Levels, Teacher, Parent, Parent Child, Organizational, Course mappings).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sis_learning.config import MAPPINGS_DIR
from sis_learning.mapping import MappingContext, MappingSpecError, generate_logins, load_spec

SPEC_FILES = sorted(MAPPINGS_DIR.glob("*.csv"))


def spec(name: str):
    return load_spec(MAPPINGS_DIR / f"{name}.csv")


def context(**overrides) -> MappingContext:
    settings = {"sso_domains": frozenset({"students.test.org", "test.org"})}
    settings.update(overrides)
    return MappingContext(**settings)


def records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def test_every_shipped_spec_loads_and_one_exists_per_learning_entity() -> None:
    names = {path.stem for path in SPEC_FILES}
    assert {
        "organizations",
        "users_students",
        "users_teachers",
        "users_parents",
        "user_levels",
        "classes",
        "rosters_students",
        "rosters_teachers",
        "rosters_co_teachers",
        "parent_links",
    } <= names
    for path in SPEC_FILES:
        assert load_spec(path).fields


def test_student_spec_matches_the_student_mapping_table() -> None:
    students = pd.DataFrame(
        {
            "student_id": ["3001", "3002"],
            "first_name": ["Ana", "Ben"],
            "last_name": ["Lopez", "Okafor"],
            "student_username": ["alopez", None],
            "email": ["ana.lopez@students.test.org", "ben@gmail.com"],
            "school_id": ["100", "101"],
            "grade_level": pd.array([9, 10], dtype="Int64"),
        }
    )
    result = spec("users_students").apply(students, context(imported_passwords_temporary=True))
    assert records(result) == [
        {
            "external_id": "3001",
            "first_name": "Ana",
            "last_name": "Lopez",
            "email": "ana.lopez@students.test.org",
            "sso_email_address": "ana.lopez@students.test.org",
            "login": "alopez",
            "login_generated": False,
            "password_temporary": True,
            "user_type": "S",
            "organization_id": "100",
            "enabled": "1",
        },
        {
            "external_id": "3002",
            "first_name": "Ben",
            "last_name": "Okafor",
            "email": "ben@gmail.com",
            "sso_email_address": None,
            "login": "ben.okafor.s3002",
            "login_generated": True,
            "password_temporary": True,
            "user_type": "S",
            "organization_id": "101",
            "enabled": "1",
        },
    ]


def test_teacher_spec_matches_the_teacher_mapping_table() -> None:
    staff = pd.DataFrame(
        {
            "staff_id": ["200"],
            "first_name": ["Grace"],
            "last_name": ["Hopper"],
            "teacher_username": ["ghopper"],
            "email": ["Grace.Hopper@TEST.org"],
            "organization_school_id": ["100"],
        }
    )
    result = spec("users_teachers").apply(staff, context(imported_passwords_temporary=False))
    assert records(result) == [
        {
            "external_id": "200",
            "first_name": "Grace",
            "last_name": "Hopper",
            "email": "Grace.Hopper@TEST.org",
            "sso_email_address": "Grace.Hopper@TEST.org",
            "login": "ghopper",
            "login_generated": False,
            "password_temporary": False,
            "user_type": "T",
            "organization_id": "100",
            "enabled": "1",
        },
    ]


def test_parent_spec_takes_the_organization_of_the_first_child_by_lookup() -> None:
    guardians = pd.DataFrame(
        {
            "guardian_id": ["600"],
            "first_name": ["Maria"],
            "last_name": ["Lopez"],
            "portal_username": ["mlopez"],
            "email": ["maria@mail.example.com"],
            "first_child_id": ["3001"],
        }
    )
    students = pd.DataFrame({"school_id": ["105"]}, index=pd.Index(["3001"], name="student_id"))
    result = spec("users_parents").apply(guardians, context(lookups={"students": students}))
    assert records(result) == [
        {
            "external_id": "600",
            "first_name": "Maria",
            "last_name": "Lopez",
            "email": "maria@mail.example.com",
            "login": "mlopez",
            "login_generated": False,
            "password_temporary": True,
            "user_type": "P",
            "organization_id": "105",
            "enabled": "1",
        },
    ]


def test_organization_user_level_and_parent_link_specs() -> None:
    schools = pd.DataFrame({"school_id": ["100"], "school_number": ["1100"], "name": ["Lincoln High"]})
    assert records(spec("organizations").apply(schools)) == [{"organization_id": "100", "name": "Lincoln High"}]
    students = pd.DataFrame({"student_id": ["3001"], "grade_level": pd.array([11], dtype="Int64")})
    assert records(spec("user_levels").apply(students)) == [{"external_id": "3001", "level_id": "11"}]
    links = pd.DataFrame({"guardian_id": ["600"], "student_id": ["3001"]})
    assert records(spec("parent_links").apply(links)) == [{"parent_id": "600", "child_id": "3001"}]


def test_class_spec_builds_the_name_exactly_as_the_source_document_gives_it() -> None:
    sections = pd.DataFrame(
        {
            "section_id": ["4101"],
            "section_number": ["3"],
            "expression": ["2(A-B)"],
            "term_id": ["3500"],
            "staff_id": ["200"],
            "school_id": ["100"],
            "course_name": ["Algebra I"],
            "course_number": ["MA101"],
        }
    )
    assert records(spec("classes").apply(sections)) == [
        {
            "class_id": "4101",
            "name": "Algebra I (3) - 2(A-B)",
            "code": "MA101",
            "year": "3500",
            "teacher_id": "200",
            "organization_id": "100",
        },
    ]


def test_roster_specs_give_each_source_its_role() -> None:
    enrollments = pd.DataFrame({"section_id": ["4101"], "student_id": ["3001"]})
    sections = pd.DataFrame({"section_id": ["4101"], "staff_id": ["200"]})
    co_teachers = pd.DataFrame({"section_id": ["4101"], "staff_id": ["201"]})
    assert records(spec("rosters_students").apply(enrollments)) == [
        {"class_id": "4101", "user_type": "S", "user_id": "3001", "role": "student"}
    ]
    assert records(spec("rosters_teachers").apply(sections)) == [
        {"class_id": "4101", "user_type": "T", "user_id": "200", "role": "teacher"}
    ]
    assert records(spec("rosters_co_teachers").apply(co_teachers)) == [
        {"class_id": "4101", "user_type": "T", "user_id": "201", "role": "co-teacher"}
    ]


def test_both_source_spellings_resolve_to_the_same_column(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(
        "target,source,constant,transform,argument,note\n"
        "a,student/name/first_name,,,,\n"
        "b,Students.First_Name,,,,\n"
        "c,students.first_name,,,,case does not matter\n",
        encoding="utf-8",
    )
    loaded = load_spec(path)
    assert [field.column for field in loaded.fields] == ["first_name", "first_name", "first_name"]


def test_sso_email_only_for_the_districts_domains() -> None:
    rows = pd.DataFrame(
        {
            "email": [
                "a@test.org",
                "b@STUDENTS.TEST.ORG",
                "c@gmail.com",
                "d@nottest.org",
                "e@test.org.evil.com",
                None,
                "no-at-sign",
            ]
        }
    )
    path_spec = spec("users_teachers")
    sso_field = next(field for field in path_spec.fields if field.target == "sso_email_address")
    from sis_learning.mapping import TRANSFORMS

    result = TRANSFORMS["sso_email"][0](rows, sso_field, context(), {})
    assert result.tolist() == ["a@test.org", "b@STUDENTS.TEST.ORG", pd.NA, pd.NA, pd.NA, pd.NA, pd.NA]


# ---- generated logins ---------------------------------------------------------------------

STUDENT_TEMPLATE = "{first_name}.{last_name}.s{student_id}"


def test_generated_logins_are_the_same_every_run() -> None:
    students = pd.DataFrame({"student_id": ["7", "8"], "first_name": ["Ana", "Ana"], "last_name": ["Diaz", "Diaz"]})
    first = generate_logins(students, STUDENT_TEMPLATE, set())
    second = generate_logins(students.iloc[::-1].iloc[::-1], STUDENT_TEMPLATE, set())
    assert first.tolist() == second.tolist() == ["ana.diaz.s7", "ana.diaz.s8"]


def test_generated_login_collisions_are_resolved_in_row_order() -> None:
    people = pd.DataFrame(
        {"student_id": ["1", "2", "3"], "first_name": ["Ana", "Ana", "Bo"], "last_name": ["Diaz", "Díaz", "Li"]}
    )
    taken = {"bo.li"}  # a SIS username another user already has
    logins = generate_logins(people, "{first_name}.{last_name}", taken)
    assert logins.tolist() == ["ana.diaz", "ana.diaz-2", "bo.li-2"]
    assert {"ana.diaz", "ana.diaz-2", "bo.li-2", "bo.li"} <= taken
    # The same input gives the same answer on the next run.
    assert generate_logins(people, "{first_name}.{last_name}", {"bo.li"}).tolist() == logins.tolist()


def test_generated_logins_fold_accents_and_drop_other_scripts() -> None:
    people = pd.DataFrame(
        {
            "student_id": ["11", "12", "13", "14", "15"],
            "first_name": ["José", "Zoë", "Дмитрий", "小龙", "Ærøskøbing"],
            "last_name": ["Núñez", "O'Brien-Smith", "Иванов", "李", "Ç"],
        }
    )
    assert generate_logins(people, STUDENT_TEMPLATE, set()).tolist() == [
        "jose.nunez.s11",
        "zoe.obriensmith.s12",
        "s13",
        "s14",
        "aeroskobing.c.s15",
    ]


def test_generated_logins_fit_learnings_length_limit() -> None:
    people = pd.DataFrame({"student_id": ["99999999"], "first_name": ["A" * 300], "last_name": ["B" * 300]})
    login = generate_logins(people, STUDENT_TEMPLATE, set()).iloc[0]
    assert len(login) <= 100 and login.endswith(".s99999999")


def test_sso_email_is_the_login_when_there_is_no_username_and_nothing_is_generated_otherwise() -> None:
    students = pd.DataFrame(
        {
            "student_id": ["1", "2"],
            "first_name": ["Ana", "Ben"],
            "last_name": ["Diaz", "Cole"],
            "student_username": [" ", None],
            "email": ["ana@students.test.org", "ben@gmail.com"],
            "school_id": ["100", "100"],
            "grade_level": pd.array([9, 9], dtype="Int64"),
        }
    )
    result = spec("users_students").apply(students, context(autogenerate_usernames=False))
    assert result["login"].tolist() == ["ana@students.test.org", pd.NA]
    result = spec("users_students").apply(students, context(autogenerate_usernames=True))
    assert result["login"].tolist() == ["ana@students.test.org", "ben.cole.s2"]
    assert result["login_generated"].tolist() == [True, True]


def test_names_keep_accents_and_other_scripts_unchanged() -> None:
    students = pd.DataFrame(
        {
            "student_id": ["1", "2"],
            "first_name": ["Zoë", "小龙"],
            "last_name": ["Ångström", "李"],
            "student_username": ["zoe", "xiaolong"],
            "email": [None, None],
            "school_id": ["100", "100"],
            "grade_level": pd.array([9, 9], dtype="Int64"),
        }
    )
    result = spec("users_students").apply(students, context())
    assert result["first_name"].tolist() == ["Zoë", "小龙"]
    assert result["last_name"].tolist() == ["Ångström", "李"]


def test_no_spec_output_carries_a_password_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_DEFAULT_PASSWORD", "Sentinel-Secret-123")
    for name in ("users_students", "users_teachers", "users_parents"):
        assert "password" not in spec(name).targets
        assert "password_temporary" in spec(name).targets


# ---- malformed specs ----------------------------------------------------------------------

HEADER = "target,source,constant,transform,argument,note\n"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("first_name,student/name/nickname,,,,\n", 2, "unknown source 'student/name/nickname'"),
        ("external_id,student/id,,,,\nfirst_name,Students.Nick_Name,,,,\n", 3, "unknown source 'Students.Nick_Name'"),
        ("login,student/student_username,,make_login,,\n", 2, "unknown transform 'make_login'"),
        ("name,,,template,{course_name} ({section_nr}),\n", 2, "placeholder {section_nr}"),
        ("name,,,template,,\n", 2, "needs a template"),
        ("password,,secret123,,,\n", 2, "never carries a password"),
        ("user_type,,,,,\n", 2, "no source, constant or transform"),
        ("user_type,student/id,S,,,\n", 2, "not both"),
        ("a,student/id,,,,\na,student/id,,,,\n", 3, "already mapped on line 2"),
        ("organization_id,first_child_id,,lookup,students,\n", 2, "lookup_name.column"),
        ("sso_email_address,,,sso_email,,\n", 2, "needs a 'source'"),
        ("a,student/id,,,,,extra\n", 2, "more than 6 columns"),
    ],
)
def test_a_malformed_spec_is_an_error_naming_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    path = tmp_path / "users_students.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(MappingSpecError) as raised:
        load_spec(path)
    assert f"{path}:{line}:" in str(raised.value)
    assert message in str(raised.value)


def test_a_spec_with_a_wrong_header_or_no_rows_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "classes.csv"
    path.write_text("field,from\nname,section/id\n", encoding="utf-8")
    with pytest.raises(MappingSpecError, match=r"classes.csv:1: header must be"):
        load_spec(path)
    path.write_text(HEADER, encoding="utf-8")
    with pytest.raises(MappingSpecError, match="maps no field"):
        load_spec(path)
    with pytest.raises(MappingSpecError, match="cannot read"):
        load_spec(tmp_path / "missing.csv")


def test_applying_a_spec_to_rows_without_its_columns_is_a_clear_error() -> None:
    with pytest.raises(MappingSpecError, match=r"no column\(s\) \['course_name'"):
        spec("classes").apply(pd.DataFrame({"section_id": ["1"]}))


def test_every_spec_target_is_a_column_of_its_learning_table(tmp_path: Path) -> None:
    from sis_learning.transform import SPEC_ENTITIES, load_specs

    specs = load_specs()
    assert set(specs) == set(SPEC_ENTITIES)
    for path in MAPPINGS_DIR.glob("*.csv"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "user_levels.csv").write_text(
        HEADER + "external_id,student/id,,,,\nlevel,student/school_enrollment/grade_level,,,,\n", encoding="utf-8"
    )
    with pytest.raises(
        MappingSpecError,
        match=r"user_levels.csv:3: target 'level' is not a column of "
        r"learning_user_levels \(external_id, level_id\)",
    ):
        load_specs(tmp_path)


def test_a_parent_without_a_usable_portal_username_gets_a_generated_login() -> None:
    """The Parent Portal username validate cleared (shared with another user, or too long) is
    replaced like a missing one: a generated login with the parent's letter, when the
    district autogenerates usernames."""
    guardians = pd.DataFrame(
        {
            "guardian_id": ["600", "601"],
            "first_name": ["María", "Li"],
            "last_name": ["López", "Wei"],
            "portal_username": [None, "lwei"],
            "email": [None, None],
            "first_child_id": ["3001", "3001"],
        }
    )
    students = pd.DataFrame({"school_id": ["105"]}, index=pd.Index(["3001"], name="student_id"))
    result = spec("users_parents").apply(
        guardians, context(lookups={"students": students}, autogenerate_usernames=True, taken_logins=set())
    )
    assert list(result["login"]) == ["maria.lopez.p600", "lwei"]
    assert list(result["login_generated"]) == [True, False]
