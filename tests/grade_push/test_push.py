"""Grade push against the sandboxes over HTTPS: arrival, mapping, overwrite, skips, no pull."""

from __future__ import annotations

import json

from sqlalchemy import select

from sis_learning.staging import ledger
from sis_learning.staging.ledger import GradePushAssignment, GradePushScore
from sis_learning.staging.runs import get_run


def test_a_score_saved_in_learning_arrives_in_powerteacher_with_the_source_mapping(world_on_both):
    world = world_on_both  # SQLite, then PostgreSQL
    section = world.pool.take(1)[0]
    world.import_sections([section])
    first, second = section.students[:2]
    gradable = world.gradable(section, "Chapter 4 quiz: fractions", 20, due_date="2026-03-14")
    world.score(gradable, first, "17")
    world.score(gradable, second, "12.5")

    summary = world.push("run_1")

    [entry] = world.assignments(section)
    assert entry["name"] == "Chapter 4 quiz: fractions"
    assert entry["description"] == "Chapter 4 quiz: fractions"  # no description: the title
    assert entry["duedate"] == "2026-03-14"
    assert entry["scoretype"] == "POINTS"
    assert entry["scoreentrypoints"] == 20 and entry["totalpointvalue"] == 20
    assert entry["weight"] == 1 and entry["extracreditpoints"] == 0
    assert entry["publishoption"] == "Immediately"
    assert entry["standardcalcdirection"] == "NONE"
    # the district's Classwork category (the tiny district has one, id 1)
    assert entry["_assignmentcategoryassociations"] == [{"teachercategoryid": 1, "isprimary": True}]
    assert world.scores_by_name(section) == {(entry["name"], first): "17", (entry["name"], second): "12.5"}

    assert summary.counts["scores_pushed"] == 2 and summary.counts["assignments_created"] == 1
    assert summary.counts["put_requests"] == 1  # both scores in one PUT
    with world.engine.connect() as connection:
        [row] = connection.execute(select(GradePushAssignment.__table__)).mappings().all()
        scores = connection.execute(select(GradePushScore.__table__)).mappings().all()
    assert row["status"] == "created" and row["assignment_section_id"] == str(entry["assignmentsectionid"])
    assert row["assignment_id"] == str(entry["assignmentid"]) and row["category_rule"] == "district_classwork"
    assert row["teacher_users_dcid"] == section.users_dcid
    assert {(score["student_id"], score["score"], score["version"], score["status"]) for score in scores} == {
        (first, "17", 1, "pushed"),
        (second, "12.5", 1, "pushed"),
    }
    for score in scores:  # Learning's change time kept beside the push time: the Districts page's latency
        assert score["changed_at"] is not None and score["changed_at"] <= score["pushed_at"], score
    assert ledger.read_cursor(world.engine, world.config.district_id) == summary.cursor_after > 0
    run = get_run(world.engine, world.config.district_id, "run_1", kind="grade_push")
    assert run.status == "success" and run.counts["grade_push"]["scores_pushed"] == 2


def test_description_long_title_and_configured_standardcalcdirection(world):
    world.config = world.config.model_copy(
        update={
            "grade_push": world.config.grade_push.model_copy(
                update={"standardcalcdirection": "RollupAsmtScoreToStandard"}
            )
        }
    )
    section = world.pool.take(1)[0]
    world.import_sections([section])
    title = "Unit 3 project: measuring the schoolyard with ratios, scale drawings and maps"
    gradable = world.gradable(section, title, 50, description="Group work, see rubric")
    world.score(gradable, section.students[0], "44")
    world.push()
    [entry] = world.assignments(section)
    assert len(entry["name"]) <= 50 and entry["name"] == "Unit 3 project: measuring the schoolyard with..."
    assert entry["description"] == "Group work, see rubric"
    assert entry["standardcalcdirection"] == "RollupAsmtScoreToStandard"
    assert entry["duedate"]  # no due date in Learning: the day the score changed


def test_a_later_change_overwrites_and_an_older_version_never_does(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    gradable = world.gradable(section, "Lab report 2", 10)
    world.score(gradable, student, "6")
    world.push("run_1")
    world.score(gradable, student, "8")
    world.score(gradable, student, "9")  # two versions in one page: only the newest is written
    summary = world.push("run_2")
    assert world.scores_by_name(section) == {("Lab report 2", student): "9"}
    assert summary.counts["skipped_superseded"] == 1 and summary.counts["scores_pushed"] == 1
    assert summary.counts["assignments_created"] == 0  # the assignment is made once
    assert len(world.assignments(section)) == 1
    [entry] = world.assignments(section)
    assert entry["_assignmentscores"][0]["writes"] == 2

    # An old change replayed (a feed re-read from an older cursor) is not written over the newer one.
    old = [
        next(
            change
            for change in world.learning.changes(world.domain, after=0, limit=100)["changes"]
            if change["event"] == "score_set"
        )
    ]
    push_again = world.push("run_3")  # nothing new after the cursor
    assert push_again.counts["changes_read"] == 0
    from sis_learning.grade_push import GradePush

    replay = GradePush(world.config, world.engine, world.learning_hook(), world.powerteacher(), "run_replay")
    replay._load_domain_settings()
    replay.process_page(old)
    assert replay.summary.counts["skipped_already_pushed"] == 1 and replay.summary.counts["put_requests"] == 0
    assert world.scores_by_name(section) == {("Lab report 2", student): "9"}


def test_learning_overwrites_a_score_changed_in_powerteacher(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    gradable = world.gradable(section, "Essay draft", 10)
    world.score(gradable, student, "7")
    world.push("run_1")
    with world.engine.connect() as connection:
        section_id = connection.scalar(select(GradePushScore.assignment_section_id))
    # a teacher edits the score in PowerTeacher Pro
    from sis_learning.grade_push import score_body

    assert world.powerteacher().put_scores(section.users_dcid, [score_body(student, section_id, "2")]) is None
    assert world.scores_by_name(section) == {("Essay draft", student): "2"}
    world.score(gradable, student, "7.5")
    world.push("run_2")
    assert world.scores_by_name(section) == {("Essay draft", student): "7.5"}


def test_no_grade_is_ever_pulled_into_learning(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    gradable = world.gradable(section, "Reading log", 5)
    world.score(gradable, student, "4")
    learning = world.learning_hook()
    world.push("run_1", learning=learning)
    with world.engine.connect() as connection:
        section_id = connection.scalar(select(GradePushScore.assignment_section_id))
    from sis_learning.grade_push import score_body

    world.powerteacher().put_scores(section.users_dcid, [score_body(student, section_id, "1")])
    feed_before = world.learning.changes(world.domain, after=0, limit=1000)
    world.push("run_2", learning=learning)
    # Learning still has its own score, and its gradebook saw no write at all.
    assert world.learning.changes(world.domain, after=0, limit=1000) == feed_before
    assert feed_before["changes"][-1]["score"] == "4"
    # The pipeline only ever read from Learning (the change feed and the domain settings).
    kinds = set(learning.stats.as_dict()["requests"])
    assert kinds and all(kind.startswith("GET ") for kind in kinds), kinds
    assert world.scores_by_name(section) == {("Reading log", student): "1"}  # PowerTeacher keeps its edit


def test_organization_without_grade_push_is_skipped_and_counted(world):
    enabled = world.pool.take(1)[0]
    disabled = world.pool.take(1, not_school=enabled.school_dcid)[0]
    world.config = world.config.model_copy(
        update={"grade_push": world.config.grade_push.model_copy(update={"organizations": (enabled.school_dcid,)})}
    )
    world.import_sections([enabled, disabled])
    for section in (enabled, disabled):
        world.score(world.gradable(section, f"Quiz {section.section_dcid}", 10), section.students[0], "5")
    summary = world.push()
    # the disabled class's gradable_created and score_set entries
    assert summary.counts["skipped_organization_disabled"] == 2 and summary.counts["scores_pushed"] == 1
    assert world.assignments(disabled) == [] and len(world.assignments(enabled)) == 1

    # Learning's own Grade Push Config (domain settings) is honoured as well.
    world.learning.settings(world.domain, grade_push_organizations=[disabled.school_dcid])
    world.score(
        world.learning.create_gradable(world.domain, enabled.section_dcid, "Quiz again", 10), enabled.students[0], "3"
    )
    summary = world.push("run_2")
    assert summary.counts["skipped_organization_disabled"] == 2 and summary.counts["scores_pushed"] == 0
    assert ledger.read_cursor(world.engine, world.config.district_id) == summary.cursor_after  # skipped, not stuck


def test_a_class_not_imported_is_skipped_and_counted(world):
    imported, not_imported = world.pool.take(2)
    world.import_sections([imported])
    world.import_sections([not_imported], stage=False)  # in Learning, but never through the import
    world.score(world.gradable(imported, "Imported class quiz", 10), imported.students[0], "9")
    world.score(world.gradable(not_imported, "Local class quiz", 10), not_imported.students[0], "9")
    world.score(world.gradable(not_imported, "Local class quiz 2", 10), not_imported.students[1], "8")
    summary = world.push()
    # two gradable_created and two score_set entries of the class that was not imported
    assert summary.counts["skipped_class_not_imported"] == 4 and summary.counts["scores_pushed"] == 1
    assert world.assignments(not_imported) == []
    run = get_run(world.engine, world.config.district_id, "run_1", kind="grade_push")
    assert run.counts["grade_push"]["skipped_class_not_imported"] == 4


def test_category_is_the_teachers_first_when_the_district_has_no_classwork_category(world):
    # Teacher users_dcid 50014 has its own categories Labs (position 1) and Projects (2).
    section = world.pool.take(1, users_dcid="50014")[0]
    world.config = world.config.model_copy(
        update={"grade_push": world.config.grade_push.model_copy(update={"classwork_category": "Daily Work"})}
    )  # no district category of that name
    world.import_sections([section])
    world.score(world.gradable(section, "Lab 1", 10), section.students[0], "10")
    world.push()
    [entry] = world.assignments(section)
    categories = world.powerteacher().teacher_categories(section.users_dcid)
    first = min(categories, key=lambda category: (category["displayposition"], category["id"]))
    assert entry["_assignmentcategoryassociations"][0]["teachercategoryid"] == first["id"]
    with world.engine.connect() as connection:
        assert connection.scalar(select(GradePushAssignment.category_rule)) == "teacher_first"


def test_category_classwork_name_matches_case_insensitively_and_a_teacher_without_categories_is_refused(
    world, powerschool
):
    import sqlite3

    section = world.pool.take(1, users_dcid="50014")[0]
    world.config = world.config.model_copy(
        update={"grade_push": world.config.grade_push.model_copy(update={"classwork_category": "  homework "})}
    )
    world.import_sections([section])
    world.score(world.gradable(section, "Homework 1", 10), section.students[0], "10")
    world.push("run_1")
    [entry] = world.assignments(section)
    assert entry["_assignmentcategoryassociations"][0]["teachercategoryid"] == 2  # district Homework

    # Every category switched off in PowerTeacher: the assignment is refused with a reason, nothing is made.
    connection = sqlite3.connect(powerschool.database_path)
    try:
        connection.execute("UPDATE teachercategory SET isactive = 0")
        connection.commit()
        world.score(world.gradable(section, "Homework 2", 10), section.students[0], "8")
        summary = world.push("run_2")
    finally:
        connection.execute("UPDATE teachercategory SET isactive = 1")
        connection.commit()
        connection.close()
    assert summary.counts["assignments_refused"] == 1 and summary.counts["scores_refused"] == 1
    assert len(world.assignments(section)) == 1
    assert "no active category" in summary.refusals[0]["message"]


def test_ledger_json_is_queryable_and_holds_no_secret(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    world.score(world.gradable(section, "Check", 10), section.students[0], "1")
    world.push()
    token = world.learning.tokens[world.domain]
    with world.engine.connect() as connection:
        dump = json.dumps(
            [
                dict(row)
                for table in (GradePushAssignment, GradePushScore)
                for row in connection.execute(select(table.__table__)).mappings()
            ],
            default=str,
        )
    assert token not in dump and world.powerschool.client_secret not in dump
