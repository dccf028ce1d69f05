"""PowerTeacher Pro /ws/xte: categories, assignment create, list with scores, score upsert, 409/412."""

from __future__ import annotations

import json

import pytest

ASSIGNMENT = "/ws/xte/section/assignment/"


@pytest.fixture
def classroom(powerschool_writable):
    """An active lead teacher, one of their current sections and its enrolled students."""
    sandbox, api, store = powerschool_writable
    section = store.query(
        "SELECT se.dcid, se.id, t.users_dcid FROM sections se JOIN teachers t ON t.id = se.teacher "
        "JOIN terms tm ON tm.schoolid = se.schoolid AND tm.id = se.termid "
        "WHERE t.status = 1 AND tm.yearid = 35 AND (SELECT count(*) FROM cc WHERE cc.sectionid = se.id) >= 3 "
        "ORDER BY se.dcid LIMIT 1"
    )[0]
    students = [
        row["dcid"]
        for row in store.query(
            "SELECT st.dcid FROM cc JOIN students st ON st.id = cc.studentid WHERE cc.sectionid = ? ORDER BY st.dcid",
            (section["id"],),
        )
    ]
    return sandbox, api, store, section, students


def assignment_body(section_dcid, category_id, name="Unit 3 quiz", **overrides):
    item = {
        "sectionsdcid": section_dcid,
        "name": name,
        "description": "From Learning",
        "duedate": "2025-10-01",
        "scoretype": "POINTS",
        "scoreentrypoints": 20,
        "totalpointvalue": 20,
        "weight": 1,
        "extracreditpoints": 0,
        "publishoption": "Immediately",
        "_assignmentcategoryassociations": [{"teachercategoryid": category_id, "isprimary": True}],
    }
    item.update(overrides)
    return {"standardcalcdirection": "NONE", "_assignmentsections": [item]}


def classwork(api, users_dcid):
    categories = api.get("/ws/xte/teacher_category", users_dcid=users_dcid).json()
    return next(category["id"] for category in categories if category["name"] == "Classwork")


def test_teacher_categories(classroom):
    _, api, _, section, _ = classroom
    categories = api.get("/ws/xte/teacher_category", users_dcid=section["users_dcid"], year_id=35).json()
    assert isinstance(categories, list)
    assert {"Classwork", "Homework"} <= {category["name"] for category in categories}
    assert {category["categorytype"] for category in categories} <= {"district", "user"}
    assert {"id", "name", "categorytype", "isactive", "displayposition"} <= set(categories[0])


def test_users_dcid_is_required(classroom):
    _, api, _, section, _ = classroom
    response = api.get("/ws/xte/teacher_category")
    assert response.status_code == 400
    assert "users_dcid" in response.json()["message"]
    assert api.post(ASSIGNMENT, assignment_body(section["dcid"], 1)).status_code == 400


def test_create_assignment_then_write_and_rewrite_scores(classroom):
    sandbox, api, _, section, students = classroom
    users_dcid = section["users_dcid"]
    response = api.post(ASSIGNMENT, assignment_body(section["dcid"], classwork(api, users_dcid)), users_dcid=users_dcid)
    assert response.status_code == 201
    assignment_id = int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    section_ids = json.loads(response.headers["AssignmentSectionIds"])
    assert len(section_ids) == 1
    assignment_section = section_ids[0]

    def score(student, value):
        return {
            "studentsdcid": student,
            "_assignmentsection": {"assignmentsectionid": assignment_section},
            "actualscoreentered": value,
            "actualscorekind": "REAL_SCORE",
        }

    first = api.put(
        "/ws/xte/score",
        {"assignment_scores": [score(students[0], "17"), score(students[1], "12.5")]},
        users_dcid=users_dcid,
    )
    assert first.status_code == 200, first.text
    again = api.put("/ws/xte/score", {"assignment_scores": [score(students[0], "19")]}, users_dcid=users_dcid)
    assert again.status_code == 200

    listed = api.get(ASSIGNMENT, users_dcid=users_dcid, section_ids=section["dcid"]).json()
    created = next(item for item in listed if item["assignmentid"] == assignment_id)
    scores = {entry["studentsdcid"]: entry for entry in created["_assignmentsections"][0]["_assignmentscores"]}
    assert scores[students[0]]["actualscoreentered"] == "19"  # last write wins
    assert scores[students[1]]["actualscoreentered"] == "12.5"
    assert created["_assignmentsections"][0]["name"] == "Unit 3 quiz"

    readback = sandbox.scores(assignment_section_id=assignment_section)
    assert {(row["studentsdcid"], row["actualscoreentered"], row["writes"]) for row in readback} == {
        (students[0], "19", 2),
        (students[1], "12.5", 1),
    }
    assert sandbox.assignments(section["dcid"])[-1]["assignmentid"] == assignment_id


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"name": "x" * 51}, "name"),
        ({"name": ""}, "name"),
        ({"sectionsdcid": 999999999}, "sectionsdcid"),
        ({"duedate": "10/01/2025"}, "duedate"),
        ({"_assignmentcategoryassociations": [{"teachercategoryid": 987654, "isprimary": True}]}, "teachercategoryid"),
        ({"totalpointvalue": "lots"}, "totalpointvalue"),
    ],
)
def test_invalid_assignments_are_409(classroom, override, field):
    _, api, _, section, _ = classroom
    users_dcid = section["users_dcid"]
    body = assignment_body(section["dcid"], classwork(api, users_dcid))
    body["_assignmentsections"][0].update(override)
    response = api.post(ASSIGNMENT, body, users_dcid=users_dcid)
    assert response.status_code == 409
    assert field in {error["field"] for error in response.json()["errors"]}


def test_a_fifty_character_name_is_fine(classroom):
    _, api, _, section, _ = classroom
    users_dcid = section["users_dcid"]
    body = assignment_body(section["dcid"], classwork(api, users_dcid), name="y" * 50)
    assert api.post(ASSIGNMENT, body, users_dcid=users_dcid).status_code == 201


def test_a_teacher_cannot_write_to_a_section_they_do_not_teach(classroom):
    _, api, store, section, _ = classroom
    other = store.query(
        "SELECT t.users_dcid FROM teachers t WHERE t.status = 1 AND t.id NOT IN "
        "(SELECT teacherid FROM sectionteacher WHERE sectionid = ?) LIMIT 1",
        (section["id"],),
    )[0]
    body = assignment_body(section["dcid"], 1)
    assert api.post(ASSIGNMENT, body, users_dcid=other["users_dcid"]).status_code == 403


def test_score_validation_and_resubmit(classroom):
    sandbox, api, store, section, students = classroom
    users_dcid = section["users_dcid"]
    response = api.post(ASSIGNMENT, assignment_body(section["dcid"], classwork(api, users_dcid)), users_dcid=users_dcid)
    assignment_section = json.loads(response.headers["AssignmentSectionIds"])[0]
    outsider = store.query(
        "SELECT dcid FROM students WHERE id NOT IN (SELECT studentid FROM cc WHERE sectionid = ?) LIMIT 1",
        (section["id"],),
    )[0]["dcid"]

    def put(student, value, kind="REAL_SCORE"):
        return api.put(
            "/ws/xte/score",
            {
                "assignment_scores": [
                    {
                        "studentsdcid": student,
                        "_assignmentsection": {"assignmentsectionid": assignment_section},
                        "actualscoreentered": value,
                        "actualscorekind": kind,
                    }
                ]
            },
            users_dcid=users_dcid,
        )

    assert put(outsider, "10").status_code == 409
    assert put(students[0], "ten").status_code == 409
    assert put(students[0], "-1").status_code == 409
    assert put(students[0], "5", kind="NOT_A_KIND").status_code == 409
    assert (
        api.put(
            "/ws/xte/score",
            {
                "assignment_scores": [
                    {
                        "studentsdcid": students[0],
                        "_assignmentsection": {"assignmentsectionid": 10**9},
                        "actualscoreentered": "1",
                    }
                ]
            },
            users_dcid=users_dcid,
        ).status_code
        == 409
    )
    sandbox.configure(resubmit_rate=1.0)
    resubmit = put(students[0], "10")
    assert resubmit.status_code == 412
    assert resubmit.json()["message"] == "Resubmit"
    assert sandbox.scores(assignment_section_id=assignment_section) == []
    sandbox.configure(resubmit_rate=0.0)
    assert put(students[0], "10").status_code == 200


def test_json_is_required(classroom):
    _, api, _, section, _ = classroom
    response = api.http.post(
        ASSIGNMENT,
        params={"users_dcid": section["users_dcid"]},
        content=b"name=x",
        headers={**api.headers(), "Content-Type": "text/plain"},
    )
    assert response.status_code == 415


def test_an_inactive_category_is_listed_but_refused(classroom):
    _, api, _, section, _ = classroom
    users_dcid = section["users_dcid"]
    categories = api.get("/ws/xte/teacher_category", users_dcid=users_dcid).json()
    retired = next(category for category in categories if not category["isactive"])
    response = api.post(ASSIGNMENT, assignment_body(section["dcid"], retired["id"]), users_dcid=users_dcid)
    assert response.status_code == 409
    assert "not an active category" in response.json()["errors"][0]["message"]


def test_an_assignment_is_replaced_and_its_scoring_changes_over_scores_only_with_update_scores(classroom):
    sandbox, api, _, section, students = classroom
    users_dcid = section["users_dcid"]
    category = classwork(api, users_dcid)
    created = api.post(ASSIGNMENT, assignment_body(section["dcid"], category, name="Replace me"), users_dcid=users_dcid)
    assignment_id = int(created.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    assignment_section = json.loads(created.headers["AssignmentSectionIds"])[0]
    path = f"{ASSIGNMENT}{assignment_id}"

    # no score yet: the scoring may change without update_scores
    renamed = api.put(
        path,
        assignment_body(
            section["dcid"], category, name="Replaced", duedate="2025-10-08", totalpointvalue=25, scoreentrypoints=25
        ),
        users_dcid=users_dcid,
    )
    assert renamed.status_code == 204, renamed.text
    assert json.loads(renamed.headers["AssignmentSectionIds"]) == [assignment_section]  # the same section, changed
    api.put(
        "/ws/xte/score",
        {
            "assignment_scores": [
                {
                    "studentsdcid": students[0],
                    "_assignmentsection": {"assignmentsectionid": assignment_section},
                    "actualscoreentered": "20",
                    "actualscorekind": "REAL_SCORE",
                }
            ]
        },
        users_dcid=users_dcid,
    )

    # scored: a change of the points is refused unless update_scores=true; a name change is not
    rescaled = assignment_body(section["dcid"], category, name="Replaced", totalpointvalue=30, scoreentrypoints=30)
    refused = api.put(path, rescaled, users_dcid=users_dcid)
    assert refused.status_code == 409 and refused.json()["errors"][0]["field"] == "update_scores"
    assert (
        api.put(
            path,
            assignment_body(section["dcid"], category, name="Replaced again", totalpointvalue=25, scoreentrypoints=25),
            users_dcid=users_dcid,
        ).status_code
        == 204
    )
    assert api.put(path, rescaled, users_dcid=users_dcid, update_scores="true").status_code == 204
    [entry] = [item for item in sandbox.assignments(section["dcid"]) if item["assignmentid"] == assignment_id]
    [view] = entry["_assignmentsections"]
    assert (view["name"], view["totalpointvalue"], view["duedate"]) == ("Replaced", 30, "2025-10-01")
    assert [score["actualscoreentered"] for score in view["_assignmentscores"]] == ["20"]  # kept


def test_a_graded_assignment_is_not_deleted_without_force_and_a_cleared_score_is_no_grade(classroom):
    sandbox, api, _, section, students = classroom
    users_dcid = section["users_dcid"]
    created = api.post(
        ASSIGNMENT,
        assignment_body(section["dcid"], classwork(api, users_dcid), name="Delete me"),
        users_dcid=users_dcid,
    )
    assignment_id = int(created.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    assignment_section = json.loads(created.headers["AssignmentSectionIds"])[0]
    path = f"{ASSIGNMENT}{assignment_id}"

    def score(**values):
        return api.put(
            "/ws/xte/score",
            {
                "assignment_scores": [
                    {
                        "studentsdcid": students[0],
                        "_assignmentsection": {"assignmentsectionid": assignment_section},
                        "actualscorekind": "REAL_SCORE",
                        **values,
                    }
                ]
            },
            users_dcid=users_dcid,
        )

    assert score(actualscoreentered="7").status_code == 200
    kept = api.http.delete(path, params={"users_dcid": users_dcid}, headers=api.headers())
    assert kept.status_code == 412 and kept.json()["message"] == "Assignment has grades associated"

    # the clear (UNCONFIRMED call, modelled): both fields present and null
    assert score(actualscoreentered=None, scorepoints=None).status_code == 200
    [row] = sandbox.scores(assignment_section_id=assignment_section)
    assert (row["actualscoreentered"], row["writes"]) == (None, 2)
    assert score(actualscoreentered=None).status_code == 409  # a null score without scorepoints: not a clear

    gone = api.http.delete(path, params={"users_dcid": users_dcid}, headers=api.headers())
    assert gone.status_code == 204  # no grade left
    assert api.http.delete(path, params={"users_dcid": users_dcid}, headers=api.headers()).status_code == 404
    assert all(item["assignmentid"] != assignment_id for item in sandbox.assignments(section["dcid"]))
