"""Gradables, not only scores: created at once, edited, deleted; cleared scores; linked classes; types.

Against the sandboxes over HTTPS (source document: imported classes "and those linked to
imported classes" send "their Gradable items and Scores"; Grade Mappings).
"""

from __future__ import annotations

from sqlalchemy import select

from sis_learning.notify import refusal_email
from sis_learning.staging.ledger import GradePushAssignment, GradePushScore


def _assignment_row(world, gradable_id):
    with world.engine.connect() as connection:
        return (
            connection.execute(
                select(GradePushAssignment.__table__).where(GradePushAssignment.gradable_id == str(gradable_id))
            )
            .mappings()
            .one()
        )


def _last_sequence(world) -> int:
    log = world.powerschool.request_log()
    return log[-1]["sequence"] if log else 0


def test_a_new_gradable_creates_its_assignment_at_once_with_the_full_grade_mapping(world_on_both):
    world = world_on_both  # SQLite, then PostgreSQL
    section = world.pool.take(1)[0]
    world.import_sections([section])
    world.gradable(section, "Field trip reflection", 15, due_date="2026-04-02", type="Dropbox")  # no score yet

    summary = world.push()

    [entry] = world.assignments(section)
    assert summary.counts["assignments_created"] == 1 and summary.counts["put_requests"] == 0
    assert entry["name"] == "Field trip reflection"  # the section's name
    [assignment] = world.powerschool.assignments(int(section.section_dcid))
    assert assignment["name"] == "Field trip reflection"  # assignment/name <- gradable.title
    assert entry["_onlinework"] == {"issubtypeopt1enabled": False}
    assert (entry["duedate"], entry["totalpointvalue"], entry["scoreentrypoints"]) == ("2026-04-02", 15, 15)
    assert entry["_assignmentscores"] == []


def test_an_edit_updates_the_assignment_and_rescales_scores_only_when_the_points_change(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    gradable = world.gradable(section, "Essay", 20, due_date="2026-03-01")
    world.score(gradable, student, "15")
    world.push("run_1")
    [before] = world.assignments(section)

    world.learning.update_gradable(
        world.domain, gradable["id"], title="Essay (final)", due_date="2026-03-08", description="Two pages"
    )
    log_start = _last_sequence(world)
    summary = world.push("run_2")
    [entry] = world.assignments(section)
    assert summary.counts["assignments_updated"] == 1 and summary.counts["assignments_created"] == 0
    assert entry["assignmentsectionid"] == before["assignmentsectionid"]  # the same assignment, changed
    assert (entry["name"], entry["duedate"], entry["description"]) == ("Essay (final)", "2026-03-08", "Two pages")
    puts = [
        item
        for item in world.powerschool.request_log(log_start)
        if item["method"] == "PUT" and "/ws/xte/section/assignment/" in item["path"]
    ]
    assert len(puts) == 1 and "update_scores" not in puts[0]["query"]  # scoring unchanged

    world.learning.update_gradable(world.domain, gradable["id"], total_points=25)
    summary = world.push("run_3")
    [entry] = world.assignments(section)
    # PowerTeacher refuses a scoring change over existing scores without update_scores=true (409)
    assert summary.counts["assignments_updated"] == 1 and summary.counts["assignments_update_refused"] == 0
    assert (entry["totalpointvalue"], entry["scoreentrypoints"]) == (25, 25)
    assert world.scores_by_name(section) == {("Essay (final)", student): "15"}
    row = _assignment_row(world, gradable["id"])
    assert (row["revision"], row["total_points"], row["name"]) == (3, "25", "Essay (final)")
    assert world.push("run_4").counts["assignments_updated"] == 0  # nothing new: no PUT again


def test_a_deleted_gradable_deletes_its_assignment_when_it_has_no_scores(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradable = world.gradable(section, "Cancelled quiz", 10)
    world.push("run_1")
    assert len(world.assignments(section)) == 1
    world.learning.delete_gradable(world.domain, gradable["id"])
    summary = world.push("run_2")
    assert world.assignments(section) == []
    assert summary.counts["assignments_deleted"] == 1 and not summary.refusals
    assert _assignment_row(world, gradable["id"])["status"] == "deleted"

    # made and deleted between two pushes: nothing reaches PowerTeacher at all
    brief = world.gradable(section, "Typo gradable", 10)
    world.learning.delete_gradable(world.domain, brief["id"])
    summary = world.push("run_3")
    assert world.assignments(section) == [] and summary.counts["gradables_deleted_before_push"] == 1
    assert summary.counts["assignments_created"] == 0


def test_a_deleted_gradable_with_scores_is_left_in_powerteacher_and_reported(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradable = world.gradable(section, "Graded lab", 10)
    world.score(gradable, section.students[0], "9")
    world.push("run_1")
    world.learning.delete_gradable(world.domain, gradable["id"])

    summary = world.push("run_2")

    assert len(world.assignments(section)) == 1  # PowerTeacher answered 412 "Assignment has grades associated"
    assert world.scores_by_name(section) == {("Graded lab", section.students[0]): "9"}
    assert summary.counts["assignments_delete_refused"] == 1 and summary.counts["assignments_deleted"] == 0
    row = _assignment_row(world, gradable["id"])
    assert row["status"] == "delete_refused" and "grades associated" in row["message"]
    [report] = summary.refusals
    assert report["kind"] == "delete_refused" and report["class_id"] == section.section_dcid
    email = refusal_email(world.config, summary)
    assert "1 assignment change(s) not made" in email.subject
    assert all("Graded lab" in body and "grades associated" in body for body in (email.text, email.html))
    assert world.push("run_3").counts["assignments_delete_refused"] == 0  # reported once, not every run


def test_a_cleared_score_clears_powerteachers(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    first, second = section.students[:2]
    gradable = world.gradable(section, "Spelling test", 10)
    world.score(gradable, first, "7")
    world.score(gradable, second, "8")
    world.push("run_1")
    world.score(gradable, first, None)
    summary = world.push("run_2")
    assert summary.counts["scores_cleared"] == 1 and summary.counts["scores_pushed"] == 0
    assert world.scores_by_name(section) == {("Spelling test", first): None, ("Spelling test", second): "8"}
    with world.engine.connect() as connection:
        row = (
            connection.execute(select(GradePushScore.__table__).where(GradePushScore.student_id == first))
            .mappings()
            .one()
        )
    assert (row["score"], row["version"], row["status"]) == (None, 2, "pushed")
    # entered again: written again
    world.score(gradable, first, "6")
    world.push("run_3")
    assert world.scores_by_name(section)[("Spelling test", first)] == "6"
    # entered and cleared between two pushes: PowerTeacher never had it, nothing is sent
    other = world.gradable(section, "Dictation", 10)
    world.score(other, first, "5")
    world.score(other, first, None)
    summary = world.push("run_4")
    assert summary.counts["skipped_clear_never_pushed"] == 1 and summary.counts["put_requests"] == 0


def test_only_the_source_documents_gradable_types_are_pushed_and_the_others_counted(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    for kind in ("Assessment", "Wiki", "LTI_SCORM"):
        world.score(world.gradable(section, f"{kind} item", 10, type=kind), student, "5")
    poll = world.gradable(section, "Opinion poll", 1, type="Poll")
    world.score(poll, student, "1")
    summary = world.push()
    assert sorted(entry["name"] for entry in world.assignments(section)) == [
        "Assessment item",
        "LTI_SCORM item",
        "Wiki item",
    ]
    assert summary.counts["skipped_gradable_type"] == 2  # the poll's gradable_created and score_set entries
    assert summary.counts["scores_pushed"] == 3


def test_a_class_linked_to_an_imported_class_pushes_into_that_section(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    own = f"LRN-{section.section_dcid}"  # a class a teacher made in Learning
    world.learning.upsert(
        world.domain, "classes", [{**world.class_row(section), "class_id": own, "name": "My own class"}]
    )
    world.learning.upsert(
        world.domain, "rosters", [{"class_id": own, "user_type": "S", "user_id": student, "role": "student"}]
    )
    early = world.gradable_in(own, "Before the link", 10)
    world.learning.set_score(world.domain, early["id"], student, "4")
    summary = world.push("run_1")
    assert summary.counts["skipped_class_not_imported"] == 2 and world.assignments(section) == []

    world.learning.link_class(world.domain, own, section.section_dcid)
    later = world.gradable_in(own, "After the link", 20)
    world.learning.set_score(world.domain, later["id"], student, "18")
    summary = world.push("run_2")
    # what was made before the link is re-emitted after the class_linked entry and pushed too
    assert world.scores_by_name(section) == {("Before the link", student): "4", ("After the link", student): "18"}
    assert summary.counts["class_link_events"] == 1 and summary.counts["changes_via_linked_class"] == 4
    assert {_assignment_row(world, item["id"])["class_id"] for item in (early, later)} == {section.section_dcid}

    world.learning.link_class(world.domain, own, None)
    world.learning.set_score(world.domain, later["id"], student, "19")
    summary = world.push("run_3")
    assert summary.counts["skipped_class_not_imported"] == 1  # unlinked: no longer pushed
    assert world.scores_by_name(section)[("After the link", student)] == "18"


def test_an_edit_powerteacher_refuses_keeps_the_assignment_is_reported_and_tried_again_on_the_next_change(
    world, powerschool
):
    import sqlite3

    section = world.pool.take(1)[0]
    world.import_sections([section])
    first, second = section.students[:2]
    gradable = world.gradable(section, "Lab report", 10)
    world.score(gradable, first, "7")
    world.push("run_1")
    category = _assignment_row(world, gradable["id"])["teacher_category_id"]

    # the district retires the category the assignment was made in: PowerTeacher refuses the edit (409)
    connection = sqlite3.connect(powerschool.database_path)
    try:
        connection.execute("UPDATE teachercategory SET isactive = 0 WHERE id = ?", (int(category),))
        connection.commit()
        world.learning.update_gradable(world.domain, gradable["id"], title="Lab report (revised)")
        world.score(gradable, second, "9")
        summary = world.push("run_2")
    finally:  # the district categories are shared with other tests' sections
        connection.execute("UPDATE teachercategory SET isactive = 1 WHERE id = ?", (int(category),))
        connection.commit()
        connection.close()

    assert summary.counts["assignments_update_refused"] == 1 and summary.counts["assignments_updated"] == 0
    [entry] = world.assignments(section)
    assert entry["name"] == "Lab report"  # left as it was
    # the score of the same page is written all the same, into the existing assignment
    assert world.scores_by_name(section) == {("Lab report", first): "7", ("Lab report", second): "9"}
    row = _assignment_row(world, gradable["id"])
    assert row["revision"] == 1 and row["message"].startswith("update refused:") and "category" in row["message"]
    [report] = summary.refusals
    assert report["kind"] == "update_refused" and report["class_id"] == section.section_dcid
    email = refusal_email(world.config, summary)
    assert "1 assignment change(s) not made" in email.subject
    assert all("Lab report" in body and "update_refused" in body for body in (email.text, email.html))

    # the next change of the gradable carries its current fields: the edit is sent again and lands
    world.score(gradable, first, "8")
    summary = world.push("run_3")
    assert summary.counts["assignments_updated"] == 1 and not summary.refusals
    [entry] = world.assignments(section)
    assert entry["name"] == "Lab report (revised)"
    row = _assignment_row(world, gradable["id"])
    assert (row["revision"], row["message"]) == (2, None)
