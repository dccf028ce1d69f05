"""The mapping rules (name shortening, category choice, bodies) and the ledger on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sis_learning.grade_push import (
    PUSHED_GRADABLE_TYPES,
    assignment_body,
    assignment_name,
    choose_category,
    clear_score_body,
    ptg_assignment_body,
    ptg_score_body,
    score_body,
)
from sis_learning.staging import ledger


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Quiz 1", "Quiz 1"),
        ("  Quiz \t 1 \n", "Quiz 1"),
        ("", "Untitled"),
        (None, "Untitled"),
        ("x" * 50, "x" * 50),
        (
            "The quick brown fox jumps over the lazy dog and keeps running far away",
            "The quick brown fox jumps over the lazy dog and...",
        ),
        (
            "Unit 3 Test: Fractions, Decimals and Percents - Part 2 (retake)",
            "Unit 3 Test: Fractions, Decimals and Percents...",
        ),
        (
            "Supercalifragilisticexpialidocious-and-even-longer-words-without-any-space",
            "Supercalifragilisticexpialidocious-and-even-lon...",
        ),
        (
            "Évaluation de compréhension orale : écoute d'un dialogue au marché",
            "Évaluation de compréhension orale : écoute d'un...",
        ),
    ],
)
def test_assignment_name_keeps_50_characters_by_the_documented_rule(title, expected):
    name = assignment_name(title)
    assert name == expected and len(name) <= 50


def test_category_rule():
    district = [
        {"id": 1, "name": "Classwork", "categorytype": "district", "isactive": True, "displayposition": 3},
        {"id": 2, "name": "Homework", "categorytype": "district", "isactive": True, "displayposition": 1},
    ]
    teacher = [
        {"id": 101, "name": "Labs", "categorytype": "user", "isactive": True, "displayposition": 2},
        {"id": 102, "name": "Classwork", "categorytype": "user", "isactive": True, "displayposition": 0},
    ]
    # the district's Classwork category wins even when it is not first, and a teacher's own "Classwork" is not it
    assert choose_category(district + teacher, "Classwork") == ("1", "district_classwork")
    assert choose_category(district + teacher, " CLASSWORK ") == ("1", "district_classwork")
    # no district category of that name: the teacher's first category by display position
    assert choose_category(district[1:] + teacher, "Classwork") == ("102", "teacher_first")
    # inactive categories never count
    inactive = [{**category, "isactive": False} for category in district]
    assert choose_category(inactive + teacher[:1], "Classwork") == ("101", "teacher_first")
    assert choose_category(inactive, "Classwork") is None
    assert choose_category([], "Classwork") is None


def test_assignment_and_score_bodies_follow_the_grade_mappings():
    body = assignment_body(
        {"id": 9, "title": "Quiz", "description": None, "due_date": "2026-05-01", "total_points": 12.0},
        "300006",
        "4",
        "NONE",
        "2026-01-01",
    )
    assert body == {
        "name": "Quiz",
        "standardcalcdirection": "NONE",
        "_assignmentsections": [
            {
                "sectionsdcid": 300006,
                "name": "Quiz",
                "description": "Quiz",
                "duedate": "2026-05-01",
                "scoretype": "POINTS",
                "scoreentrypoints": 12,
                "totalpointvalue": 12,
                "weight": 1,
                "extracreditpoints": 0,
                "publishoption": "Immediately",
                "_onlinework": {"issubtypeopt1enabled": False},
                "_assignmentcategoryassociations": [{"teachercategoryid": 4, "isprimary": True}],
            }
        ],
    }
    no_date = assignment_body({"title": "Q", "total_points": 2.5}, "1", "4", "RollupAsmtScoreToStandard", "2026-01-02")
    assert no_date["_assignmentsections"][0]["duedate"] == "2026-01-02"
    assert no_date["_assignmentsections"][0]["totalpointvalue"] == 2.5
    assert score_body("1000009", "77", "8.5") == {
        "studentsdcid": 1000009,
        "_assignmentsection": {"assignmentsectionid": 77},
        "actualscoreentered": "8.5",
        "actualscorekind": "REAL_SCORE",
    }
    # a cleared score: the one (UNCONFIRMED) clear call of powerschool-api.md
    assert (
        score_body("1000009", "77", None)
        == clear_score_body("1000009", "77")
        == {
            "studentsdcid": 1000009,
            "_assignmentsection": {"assignmentsectionid": 77},
            "actualscoreentered": None,
            "scorepoints": None,
            "actualscorekind": "REAL_SCORE",
        }
    )
    # the legacy PowerTeacher Gradebook: score/student_id and score/assignment_score/score_entered
    assert ptg_score_body("1000009", "8.5") == {"student": {"id": 1000009}, "score_entered": "8.5"}
    assert ptg_score_body("1000009", None) == {"student": {"id": 1000009}, "score_entered": None}
    long_title = "Unit 3 Test: Fractions, Decimals and Percents - Part 2 (retake)"
    assert ptg_assignment_body({"title": long_title, "total_points": 40, "due_date": None}, "2026-02-03") == {
        "name": "Unit 3 Test: Fractions, Decimals and Percents...",
        "abbreviation": "Unit 3 Tes",
        "description": long_title,
        "date_assignment_due": "2026-02-03",
        "points_possible": 40,
    }


def test_only_the_source_documents_gradable_types_are_pushed():
    assert {"Dropbox", "Assignment", "LTI_SCORM", "Discussion", "Wiki", "Assessment"} == PUSHED_GRADABLE_TYPES


def test_ledger_never_goes_back(staging_engine):
    engine = staging_engine
    with engine.begin() as connection:
        ledger.save_cursor(connection, "d", 10, "r1")
        ledger.save_cursor(connection, "d", 7, "r2")  # an older run finishing late
    assert ledger.read_cursor(engine, "d") == 10 and ledger.read_cursor(engine, "other") == 0

    row = {
        "district_id": "d",
        "gradable_id": "5",
        "class_id": "300006",
        "teacher_users_dcid": "50003",
        "name": "Q",
        "run_id": "r1",
    }
    with engine.begin() as connection:
        ledger.record_assignment_intent(connection, row)
        ledger.update_assignment(
            connection, "d", "5", status=ledger.ASSIGNMENT_CREATED, assignment_id="1", assignment_section_id="2"
        )
        ledger.record_assignment_intent(connection, {**row, "name": "Changed"})  # never back to "creating"
        [stored] = ledger.assignments_for(connection, "d", ["5"]).values()
    assert stored["status"] == "created" and stored["name"] == "Q" and stored["assignment_section_id"] == "2"

    score = {
        "district_id": "d",
        "gradable_id": "5",
        "student_id": "9",
        "assignment_section_id": "2",
        "cursor": 3,
        "run_id": "r1",
    }
    with engine.begin() as connection:
        ledger.record_pushed_scores(connection, [{**score, "score": "8", "version": 2}])
        ledger.record_pushed_scores(connection, [{**score, "score": "5", "version": 1}])  # older: ignored
        ledger.record_refused_scores(connection, [{**score, "version": 2, "message": "late refusal"}])  # not newer
        stored = ledger.scores_for(connection, "d", [("5", "9")])[("5", "9")]
    assert (stored["score"], stored["version"], stored["status"]) == ("8", 2, "pushed")
    with engine.begin() as connection:
        ledger.record_refused_scores(connection, [{**score, "version": 3, "message": "Validation Failed"}])
        stored = ledger.scores_for(connection, "d", [("5", "9")])[("5", "9")]
    assert (stored["score"], stored["version"], stored["status"], stored["refused_version"]) == ("8", 2, "refused", 3)


def test_legacy_per_item_answers_are_matched_to_the_request_by_student():
    """The PTG v2 score PUT answers 200 with a batch_result per item; a refused one is found by its student."""
    from sis_learning.hooks.powerteacher import PowerTeacherClient

    class Answer:
        status_code = 200
        content = b"x"

        def json(self):
            return {
                "assignment_scores": {
                    "assignment_score": [
                        {"student": {"id": 3}, "batch_result": {"code": 409, "message": "student 3 is not enrolled"}},
                        {"student": {"id": 1}, "batch_result": {"code": 200, "message": "OK"}},
                        {"student": {"id": 2}, "batch_result": {"code": "409", "message": "not a score"}},
                    ]
                }
            }

    class Fake:
        def request(self, *args, **kwargs):
            return Answer()

    refused = PowerTeacherClient(Fake()).ptg_put_scores(
        "7", [ptg_score_body("1", "5"), ptg_score_body("2", "x"), ptg_score_body("3", "4")]
    )
    assert refused == {2: "student 3 is not enrolled", 1: "not a score"}
