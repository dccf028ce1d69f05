"""The admin API changes the district between two reads, as a school office would between imports."""

from __future__ import annotations

import pytest

from sandbox.powerschool.testing import SandboxError
from tests.sandbox.powerschool.conftest import as_list


def test_enroll_and_drop_show_in_the_api(powerschool_writable):
    sandbox, api, store = powerschool_writable
    student = next(store.rows("students", "enroll_status = 0"))
    section = store.query(
        "SELECT * FROM sections WHERE id NOT IN (SELECT abs(sectionid) FROM cc WHERE studentid = ?) LIMIT 1",
        (student["id"],),
    )[0]
    before = api.get_json(f"/ws/v1/section/{section['dcid']}/section_enrollment/count")["resource"]["count"]
    created = sandbox.enroll_student(student["dcid"], section["dcid"])
    listed = as_list(
        api.get_json(f"/ws/v1/section/{section['dcid']}/section_enrollment")["section_enrollments"][
            "section_enrollment"
        ]
    )
    assert len(listed) == before + 1
    mine = next(item for item in listed if item["id"] == created["cc_dcid"])
    assert mine["student_id"] == student["dcid"] and mine["dropped"] is False

    sandbox.drop_enrollment(student["dcid"], section["dcid"], dateleft="2025-11-01")
    row = next(store.rows("cc", "dcid = ?", (created["cc_dcid"],)))
    assert row["sectionid"] == -section["id"]
    assert row["dateleft"] == "2025-11-01"
    listed = as_list(
        api.get_json(f"/ws/v1/section/{section['dcid']}/section_enrollment")["section_enrollments"][
            "section_enrollment"
        ]
    )
    assert next(item for item in listed if item["id"] == created["cc_dcid"])["dropped"] is True
    with pytest.raises(SandboxError, match="no active enrollment"):
        sandbox.drop_enrollment(student["dcid"], section["dcid"])


def test_rename_a_student_and_a_teacher(powerschool_writable):
    sandbox, api, store = powerschool_writable
    student = next(store.rows("students", "enroll_status = 0"))
    sandbox.rename("student", student["dcid"], last_name="Ó Súilleabháin")
    assert api.get_json(f"/ws/v1/student/{student['dcid']}")["student"]["name"]["last_name"] == "Ó Súilleabháin"
    teacher = next(store.rows("teachers", "status = 1"))
    sandbox.rename("teacher", teacher["dcid"], first_name="Zoë", teacherloginid="zoe.new")
    staff = api.get_json(f"/ws/v1/staff/{teacher['dcid']}")["staff"]
    assert staff["name"]["first_name"] == "Zoë" and staff["teacher_username"] == "zoe.new"
    with pytest.raises(SandboxError, match="changes must be"):
        sandbox.rename("student", student["dcid"], shoe_size=9)
    with pytest.raises(SandboxError, match="not found"):
        sandbox.rename("student", 1, last_name="Nobody")


def test_deactivate_a_teacher_removes_them_from_the_staff_list(powerschool_writable):
    sandbox, api, store = powerschool_writable
    teacher = next(store.rows("teachers", "status = 1"))
    school = next(store.rows("schools", "school_number = ?", (teacher["schoolid"],)))

    def listed():
        return {
            member["id"]
            for member in as_list(
                api.get_json(f"/ws/v1/school/{school['dcid']}/staff", pagesize=100)["staffs"].get("staff")
            )
        }

    assert teacher["dcid"] in listed()
    sandbox.deactivate_teacher(teacher["dcid"])
    assert teacher["dcid"] not in listed()


def test_add_a_section_with_a_co_teacher(powerschool_writable):
    sandbox, api, store = powerschool_writable
    school = next(store.rows("schools"))
    course = next(store.rows("courses", "schoolid = ?", (school["school_number"],)))
    teachers = store.query(
        "SELECT t.dcid, t.id FROM teachers t JOIN teacher_schools ts ON ts.teacherid = t.id "
        "WHERE ts.schoolid = ? AND t.status = 1 ORDER BY t.id LIMIT 2",
        (school["school_number"],),
    )
    created = sandbox.add_section(
        school["dcid"],
        course["course_number"],
        3500,
        teacher_dcid=teachers[0]["dcid"],
        co_teacher_dcids=[teachers[1]["dcid"]],
        section_number="99",
    )
    section = api.get_json(f"/ws/v1/section/{created['section_dcid']}", expansions="term")["section"]
    assert section["staff_id"] == teachers[0]["dcid"]
    assert section["term"]["start_year"] == 2025
    assert section["course_id"] == course["dcid"]
    roles = {
        row["teacherid"]: row["roleid"]
        for row in store.rows("sectionteacher", "sectionid = ?", (created["section_id"],))
    }
    assert roles == {teachers[0]["id"]: 1, teachers[1]["id"]: 2}
    with pytest.raises(SandboxError, match="term 1234"):
        sandbox.add_section(school["dcid"], course["course_number"], 1234)


def test_student_status_change(powerschool_writable):
    sandbox, api, store = powerschool_writable
    student = next(store.rows("students", "enroll_status = 0"))
    before = api.get_json("/ws/v1/district/student/count")["resource"]["count"]
    sandbox.set_enroll_status(student["dcid"], 2, exitdate="2025-12-01")
    assert api.get_json("/ws/v1/district/student/count")["resource"]["count"] == before - 1
    with pytest.raises(SandboxError, match="enroll_status"):
        sandbox.set_enroll_status(student["dcid"], 9)


def test_add_a_student_and_a_teacher(powerschool_writable):
    sandbox, api, store = powerschool_writable
    school = next(store.rows("schools"))
    student = sandbox.add_student(
        school["dcid"],
        "Ngozi",
        "Adébáyọ̀",
        grade_level=2,
        student_web_id="nadebayo",
        email="nadebayo@students.demo-usd.org",
    )
    view = api.get_json(f"/ws/v1/student/{student['dcid']}", expansions="school_enrollment,contact_info")["student"]
    assert view["name"]["last_name"] == "Adébáyọ̀"
    assert view["school_enrollment"]["school_id"] == school["dcid"]
    assert view["contact_info"] == {"email": "nadebayo@students.demo-usd.org"}
    teacher = sandbox.add_teacher(school["dcid"], "Kai", "Ōta", teacherloginid="kota")
    listed = {
        member["id"]
        for member in as_list(api.get_json(f"/ws/v1/school/{school['dcid']}/staff", pagesize=100)["staffs"]["staff"])
    }
    assert teacher["dcid"] in listed


def test_rekey_students_changes_their_dcids_everywhere(powerschool_writable):
    sandbox, api, store = powerschool_writable
    before = {row["id"]: row["dcid"] for row in store.rows("students")}
    changed = sandbox.rekey("students", 5)
    assert len(changed) == 5
    after = {row["id"]: row["dcid"] for row in store.rows("students")}
    assert sorted(before.values())[:5] == [old for old, _ in changed]
    assert {after[internal] for internal, dcid in before.items() if dcid in dict(changed)} == {
        new for _, new in changed
    }
    old, new = changed[0]
    assert api.get(f"/ws/v1/student/{old}").status_code == 404
    assert api.get(f"/ws/v1/student/{new}").status_code == 200
    assert store.count("guardianstudent", "studentsdcid = ?", (old,)) == 0
    with pytest.raises(SandboxError, match="rekey needs"):
        sandbox.rekey("schools", 1)
