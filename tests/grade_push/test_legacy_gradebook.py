"""Sections on the legacy PowerTeacher Gradebook go through its v2 API (source document: SIS 8.2+ / 10.1+).

The section's ``gradebooktype`` (1) decides; the Grade Mappings rows ``score/assignment_id``,
``score/student_id``, ``score/assignment_score/score_entered`` are that API's, and its
category is 'TEST' when the teacher has one, else 'UNDEFINED'.
"""

from __future__ import annotations

from sqlalchemy import select

from sis_learning.staging.ledger import GradePushAssignment, GradePushScore


def test_a_legacy_section_gets_its_assignment_and_scores_through_the_ptg_api(world_on_both):
    world = world_on_both  # SQLite, then PostgreSQL
    section = world.pool.take(1)[0]
    not_enrolled = "99999001"  # on the Learning roster, not enrolled in the SIS section
    world.import_sections([section], legacy=True, extra_students={section.section_dcid: [not_enrolled]})
    first, second = section.students[:2]
    gradable = world.gradable(section, "Chapter 5 test: the water cycle and weather", 30, due_date="2026-05-04")
    world.score(gradable, first, "27")
    world.score(gradable, second, "19.5")
    world.score(gradable, not_enrolled, "30")

    summary = world.push()

    assert world.assignments(section) == []  # nothing through PowerTeacher Pro
    [assignment] = world.ptg_assignments(section)
    assert assignment["name"] == "Chapter 5 test: the water cycle and weather"
    assert assignment["date_assignment_due"] == "2026-05-04" and assignment["points_possible"] == 30
    assert assignment["category"] == {"name": "TEST"}  # the tiny district has an active "Test" category
    # 200 with a per-item 409: the refused score is recorded, the others are written
    assert world.ptg_scores_by_name(section) == {
        (assignment["name"], first): "27",
        (assignment["name"], second): "19.5",
    }
    assert summary.counts["scores_pushed"] == 2 and summary.counts["scores_refused"] == 1
    assert summary.counts["put_requests"] == 1
    [refusal] = summary.refusals
    assert refusal["student_id"] == not_enrolled and "not enrolled" in refusal["message"]
    with world.engine.connect() as connection:
        row = connection.execute(select(GradePushAssignment.__table__)).mappings().one()
        scores = {
            item["student_id"]: item["status"]
            for item in connection.execute(select(GradePushScore.__table__)).mappings()
        }
    assert (row["gradebook"], row["assignment_id"], row["category_rule"]) == (
        "ptg",
        str(assignment["id"]),
        "ptg_api_rule",
    )
    assert scores == {first: "pushed", second: "pushed", not_enrolled: "refused"}

    # a cleared score and an edit go the same way
    world.score(gradable, second, None)
    world.learning.update_gradable(world.domain, gradable["id"], total_points=40)
    summary = world.push("run_2")
    [assignment] = world.ptg_assignments(section)
    assert assignment["points_possible"] == 40 and assignment["updates"] == 1
    assert world.ptg_scores_by_name(section)[(assignment["name"], second)] is None
    assert summary.counts["scores_cleared"] == 1 and summary.counts["assignments_updated"] == 1

    # deleted in Learning: it has grades, so the legacy gradebook keeps it and the district hears of it
    world.learning.delete_gradable(world.domain, gradable["id"])
    summary = world.push("run_3")
    assert len(world.ptg_assignments(section)) == 1 and summary.counts["assignments_delete_refused"] == 1


def test_the_ptg_category_is_undefined_without_a_test_category_and_test_with_the_teachers_own(world, powerschool):
    import sqlite3

    section = world.pool.take(1)[0]
    world.import_sections([section], legacy=True)
    connection = sqlite3.connect(powerschool.database_path)
    added = None
    try:
        connection.execute("UPDATE teachercategory SET isactive = 0 WHERE categorytype = 'district' AND name = 'Test'")
        connection.commit()
        world.score(world.gradable(section, "Unit quiz", 10), section.students[0], "8")
        world.push("run_1")
        added = world.powerschool.add_teacher_category(int(section.users_dcid), "TEST")
        world.score(world.gradable(section, "Unit quiz 2", 10), section.students[0], "9")
        world.push("run_2")
    finally:  # other tests' sections share the district categories and this teacher
        connection.execute("UPDATE teachercategory SET isactive = 1 WHERE categorytype = 'district' AND name = 'Test'")
        if added is not None:
            connection.execute("DELETE FROM teachercategory WHERE id = ?", (added,))
        connection.commit()
        connection.close()
    categories = {assignment["name"]: assignment["category"]["name"] for assignment in world.ptg_assignments(section)}
    assert categories == {"Unit quiz": "UNDEFINED", "Unit quiz 2": "TEST"}


def test_the_simulator_reports_the_gradebook_type_and_refuses_the_wrong_api(world):
    section = world.pool.take(1)[0]
    world.powerschool.set_gradebook_type(int(section.section_dcid), 1)
    hook = world.powerschool_hook()
    view = hook.request_json("GET", f"/ws/v1/section/{section.section_dcid}", kind="GET /ws/v1/section")
    assert view["section"]["gradebooktype"] == 1
    from sis_learning.grade_push import assignment_body
    from sis_learning.hooks.powerteacher import Refusal

    refused = world.powerteacher().create_assignment(
        section.users_dcid,
        assignment_body({"title": "x", "total_points": 1}, section.section_dcid, "1", "NONE", "2026-01-01"),
    )
    assert isinstance(refused, Refusal) and "PowerTeacher Gradebook" in refused.message
    world.powerschool.set_gradebook_type(int(section.section_dcid), 2)
    assert (
        hook.request_json("GET", f"/ws/v1/section/{section.section_dcid}", kind="GET /ws/v1/section")["section"][
            "gradebooktype"
        ]
        == 2
    )
