"""/ws/v1: the response shapes of docs/powerschool-api.md and architecture.md, and the five quirks."""

from __future__ import annotations

import pytest

from tests.sandbox.powerschool.conftest import as_list


def schools(api):
    return as_list(api.get_json("/ws/v1/district/school")["schools"]["school"])


def test_metadata_reports_every_max_page_size_and_the_district(api):
    metadata = api.get_json("/ws/v1/metadata")["metadata"]
    for resource in (
        "student",
        "staff",
        "section",
        "section_enrollment",
        "school",
        "term",
        "course",
        "schema_table_query",
    ):
        assert metadata[f"{resource}_max_page_size"] >= 100
    assert metadata["district_timezone"] == "America/Chicago"
    assert metadata["powerschool_version"]


def test_district_schools_envelope_and_count(api, oracle):
    body = api.get_json("/ws/v1/district/school")
    assert set(body) == {"schools"}
    assert {"@expansions", "@extensions", "school"} <= set(body["schools"])
    listed = schools(api)
    assert [school["id"] for school in listed] == [row["dcid"] for row in oracle.rows("schools")]
    assert api.get_json("/ws/v1/district/school/count") == {"resource": {"count": len(listed)}}
    first = listed[0]
    assert {"id", "name", "school_number", "low_grade", "high_grade"} <= set(first)


def test_quirk_1_one_element_list_is_an_object_at_top_level_and_nested(api):
    school_id = schools(api)[0]["id"]
    page = api.get_json(f"/ws/v1/school/{school_id}/student", pagesize=1)["students"]["student"]
    assert isinstance(page, dict)
    staff = as_list(
        api.get_json(f"/ws/v1/school/{school_id}/staff", expansions="school_affiliations", pagesize=100)["staffs"][
            "staff"
        ]
    )
    shapes = {type(member["school_affiliations"]["school_affiliation"]) for member in staff}
    # home-school teachers have one affiliation (an object), itinerant co-teachers several (a list)
    assert shapes == {dict, list}


def test_quirk_2_empty_nested_object_is_an_empty_string(api, oracle):
    no_email = next(row for row in oracle.rows("students", "email IS NULL AND enroll_status = 0"))
    student = api.get_json(f"/ws/v1/student/{no_email['dcid']}", expansions="contact_info,addresses")["student"]
    assert student["contact_info"] == ""
    assert student["addresses"] == ""
    with_email = next(row for row in oracle.rows("students", "email IS NOT NULL"))
    student = api.get_json(f"/ws/v1/student/{with_email['dcid']}", expansions="contact_info")["student"]
    assert student["contact_info"] == {"email": with_email["email"]}


def test_quirk_3_digit_only_strings_are_numbers_others_stay_strings(api, oracle):
    school_id = schools(api)[0]["id"]
    courses = as_list(api.get_json(f"/ws/v1/school/{school_id}/course")["courses"]["course"])
    kinds = {type(course["course_number"]) for course in courses}
    assert kinds == {int, str}
    student = as_list(api.get_json(f"/ws/v1/school/{school_id}/student")["students"]["student"])[0]
    assert isinstance(student["local_id"], int)
    row = next(oracle.rows("students", "dcid = ?", (student["id"],)))
    assert str(student["local_id"]) == row["student_number"]


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("missing", {"students": {"@expansions": ..., "@extensions": ...}}),
        ("null", {"students": {"@expansions": ..., "@extensions": ..., "student": None}}),
        ("empty_string", {"students": ""}),
        ("empty_list", {"students": {"@expansions": ..., "@extensions": ..., "student": []}}),
        ("empty_object", {"students": {"@expansions": ..., "@extensions": ..., "student": {}}}),
    ],
)
def test_quirk_4_empty_page_shapes(api, powerschool, style, expected):
    powerschool.configure(empty_page_style=style)
    body = api.get_json("/ws/v1/district/student", page=999)
    if isinstance(expected["students"], dict):
        assert set(body["students"]) == set(expected["students"])
        assert body["students"].get("student", "absent") == expected["students"].get("student", "absent")
    else:
        assert body == expected


def test_quirk_4_rotates_through_every_empty_shape_by_default(api):
    shapes = set()
    for _ in range(5):
        body = api.get_json("/ws/v1/district/student", page=999)["students"]
        shapes.add(repr(body if body == "" else body.get("student", "absent")))
    assert shapes == {"''", "'absent'", "None", "[]", "{}"}


def test_students_default_to_active_and_filter_by_status(api, oracle):
    active = oracle.count("students", "enroll_status = 0")
    everyone = oracle.count("students")
    assert api.get_json("/ws/v1/district/student/count") == {"resource": {"count": active}}
    q = "school_enrollment.enroll_status_code==(0,-1,2,3,4)"
    assert api.get_json("/ws/v1/district/student/count", q=q)["resource"]["count"] == everyone
    letters = api.get_json("/ws/v1/district/student/count", q="school_enrollment.enroll_status==(A,P)")
    assert letters["resource"]["count"] == oracle.count("students", "enroll_status IN (0, -1)")


def test_student_view_with_school_enrollment(api, oracle):
    row = next(oracle.rows("students", "enroll_status = 2"))
    student = api.get_json(f"/ws/v1/student/{row['dcid']}", expansions="school_enrollment")["student"]
    school = next(oracle.rows("schools", "school_number = ?", (row["schoolid"],)))
    assert student["id"] == row["dcid"]
    assert student["name"]["last_name"] == row["last_name"]
    enrollment = student["school_enrollment"]
    assert enrollment["enroll_status"] == "T"
    assert enrollment["enroll_status_code"] == 2
    assert enrollment["school_id"] == school["dcid"]
    assert enrollment["grade_level"] == row["grade_level"]
    assert enrollment["exit_date"] == row["exitdate"]


def test_names_with_accents_apostrophes_and_non_latin_scripts_survive(api, oracle):
    q = "school_enrollment.enroll_status_code==(0,-1,2,3,4)"
    names = set()
    for school in schools(api):
        for student in as_list(api.get_json(f"/ws/v1/school/{school['id']}/student", q=q)["students"].get("student")):
            names.add(student["name"]["last_name"])
    assert {"Núñez", "O'Brien", "李", "Иванова"} <= names


def test_sections_filter_on_term_start_year_and_expand_term(api, oracle):
    school_id = schools(api)[0]["id"]
    everything = api.get_json(f"/ws/v1/school/{school_id}/section/count")["resource"]["count"]
    current = as_list(
        api.get_json(f"/ws/v1/school/{school_id}/section", q="term.start_year==2025", expansions="term")["sections"][
            "section"
        ]
    )
    assert 0 < len(current) < everything
    assert {section["term"]["start_year"] for section in current} == {2025}
    no_teacher = [section for section in current if "staff_id" not in section]
    assert no_teacher, "every school has a current section without a teacher"
    older = api.get_json(f"/ws/v1/school/{school_id}/section/count", q="term.start_year=lt=2025")
    assert older["resource"]["count"] + len(current) == everything


def test_section_term_and_course_ids_are_dcids(api, oracle):
    school_id = schools(api)[0]["id"]
    section = as_list(api.get_json(f"/ws/v1/school/{school_id}/section", expansions="term")["sections"]["section"])[1]
    row = next(oracle.rows("sections", "dcid = ?", (section["id"],)))
    term = next(oracle.rows("terms", "schoolid = ? AND id = ?", (row["schoolid"], row["termid"])))
    assert section["term_id"] == term["dcid"] != row["termid"]
    assert section["term"]["local_id"] == row["termid"]
    if row["teacher"]:
        teacher = next(oracle.rows("teachers", "id = ?", (row["teacher"],)))
        assert section["staff_id"] == teacher["dcid"]


def test_staff_lists_only_active_staff(api, oracle):
    for school in schools(api):
        listed = as_list(api.get_json(f"/ws/v1/school/{school['id']}/staff")["staffs"].get("staff"))
        number = school["school_number"]
        expected = oracle.query(
            "SELECT t.dcid FROM teachers t JOIN teacher_schools ts ON ts.teacherid = t.id "
            "WHERE ts.schoolid = ? AND t.status = 1 ORDER BY t.dcid",
            (number,),
        )
        assert [member["id"] for member in listed] == [row["dcid"] for row in expected]
    inactive = next(oracle.rows("teachers", "status = 2"))
    assert api.get_json(f"/ws/v1/staff/{inactive['dcid']}")["staff"]["id"] == inactive["dcid"]


def test_staff_view_fields(api, oracle):
    row = next(
        oracle.rows("teachers", "status = 1 AND email_addr LIKE '%@demo-usd.org' AND teacherloginid IS NOT NULL")
    )
    staff = api.get_json(f"/ws/v1/staff/{row['dcid']}", expansions="emails,school_affiliations")["staff"]
    assert staff["local_id"] == row["id"]
    assert staff["users_dcid"] == row["users_dcid"]
    assert staff["teacher_username"] == row["teacherloginid"]
    assert staff["emails"] == {"work_email": row["email_addr"]}


def test_section_enrollments_include_dropped_ones_flagged(api, oracle):
    dropped = next(oracle.rows("cc", "sectionid < 0"))
    section = next(oracle.rows("sections", "id = ?", (-dropped["sectionid"],)))
    listed = as_list(
        api.get_json(f"/ws/v1/section/{section['dcid']}/section_enrollment")["section_enrollments"].get(
            "section_enrollment"
        )
    )
    expected = oracle.count("cc", "sectionid IN (?, ?)", (section["id"], -section["id"]))
    assert len(listed) == expected
    assert api.get_json(f"/ws/v1/section/{section['dcid']}/section_enrollment/count")["resource"]["count"] == expected
    flagged = {item["id"]: item["dropped"] for item in listed}
    assert flagged[dropped["dcid"]] is True
    student = next(oracle.rows("students", "id = ?", (dropped["studentid"],)))
    match = next(item for item in listed if item["id"] == dropped["dcid"])
    assert match["student_id"] == student["dcid"]
    assert match["section_id"] == section["dcid"]


def test_terms_carry_start_year_and_dates(api):
    school_id = schools(api)[0]["id"]
    terms = as_list(api.get_json(f"/ws/v1/school/{school_id}/term")["terms"]["term"])
    assert {term["start_year"] for term in terms} == {2023, 2024, 2025}
    assert all(term["start_date"] < term["end_date"] for term in terms)


@pytest.mark.parametrize(
    "path",
    ["/ws/v1/school/999999/student", "/ws/v1/student/1", "/ws/v1/section/1/section_enrollment", "/ws/v1/nothing"],
)
def test_unknown_records_are_404_with_a_message(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response.json()["message"]


@pytest.mark.parametrize(
    "q", ["nonsense", "unknown_field==1", "school_enrollment.enroll_status==Z", "school_enrollment.grade_level==ten"]
)
def test_bad_filters_are_400_naming_the_problem(api, q):
    response = api.get("/ws/v1/district/student", q=q)
    assert response.status_code == 400
    assert "q filter" in response.json()["message"]


def test_wildcard_and_comparison_filters(api, oracle):
    count = api.get_json(
        "/ws/v1/district/student/count", q="name.last_name==O*;school_enrollment.enroll_status_code==(0,-1,2,3,4)"
    )
    assert count["resource"]["count"] == oracle.count("students", "last_name LIKE 'O%'")
    count = api.get_json("/ws/v1/district/student/count", q="school_enrollment.grade_level=ge=9")
    assert count["resource"]["count"] == oracle.count("students", "grade_level >= 9 AND enroll_status = 0")


def test_quirk_1_in_table_extensions(api, oracle):
    row = next(oracle.rows("students", "enroll_status = 0"))
    one = api.get_json(f"/ws/v1/student/{row['dcid']}", extensions="studentcorefields")["student"]
    extension = one["_extension_data"]["_table_extension"]
    assert isinstance(extension, dict) and extension["name"] == "studentcorefields"
    assert {"name": "pscore_legal_last_name", "value": row["last_name"]} in extension["_field"]
    two = api.get_json(f"/ws/v1/student/{row['dcid']}", extensions="studentcorefields,s_stu_x")["student"]
    assert [item["name"] for item in two["_extension_data"]["_table_extension"]] == ["s_stu_x", "studentcorefields"]


def test_concurrent_clients_each_see_every_row_once(powerschool):
    """Four clients paging the same list at once (the pipeline's concurrency) get consistent pages."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.sandbox.powerschool.conftest import ApiClient

    q = "school_enrollment.enroll_status_code==(0,-1,2,3,4)"

    def page_all(pagesize):
        client = ApiClient(powerschool)
        try:
            seen, page = [], 1
            while True:
                body = client.get_json("/ws/v1/district/student", q=q, page=page, pagesize=pagesize)["students"]
                items = as_list(body.get("student") if isinstance(body, dict) else body)
                seen.extend(item["id"] for item in items)
                if len(items) < pagesize:
                    return seen
                page += 1
        finally:
            client.close()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(page_all, [3, 3, 7, 11]))
    assert all(sorted(result) == sorted(results[0]) and len(set(result)) == len(result) for result in results)
