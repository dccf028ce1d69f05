"""PowerTeacher Pro (``/ws/xte``): the calls the grade push writes through.

Implements "Grade push: PowerTeacher Pro" of docs/powerschool-api.md, which serves the
source document's rule that Learning scores are written to PowerTeacher immediately and
overwrite what is there: teacher categories, assignment create (201 with ``Location`` and
``AssignmentSectionIds``; 409 for invalid input; ``users_dcid`` required), the assignment
list with ``_assignmentscores``, and ``PUT /ws/xte/score`` (upsert on
(assignmentsectionid, studentsdcid), last write wins; 409 on validation errors; a
configurable share of 412 "Resubmit").
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from typing import TYPE_CHECKING, Any

from sandbox.powerschool.routing import HttpError, Request, Response, Route, json_response

if TYPE_CHECKING:
    from sandbox.powerschool.server import PowerSchoolApp

ASSIGNMENT_NAME_LIMIT = 50
SCORE_TYPES = {"POINTS", "PERCENT", "GRADESCALE", "COLLECTED", "CHECKMARK"}
SCORE_KINDS = {"REAL_SCORE", "EXEMPT", "INCOMPLETE", "MISSING", "LATE", "COLLECTED"}
PUBLISH_OPTIONS = {"Immediately", "OnSpecificDate", "DaysBeforeDueDate", "Never"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def routes(app: PowerSchoolApp) -> list[Route]:
    return [
        Route("GET", re.compile(r"^/ws/xte/teacher_category/?$"), lambda request: teacher_categories(app, request),
              "api"),
        Route("POST", re.compile(r"^/ws/xte/section/assignment/?$"), lambda request: create_assignment(app, request),
              "api"),
        Route("GET", re.compile(r"^/ws/xte/section/assignment/?$"), lambda request: list_assignments(app, request),
              "api"),
        Route("PUT", re.compile(r"^/ws/xte/score/?$"), lambda request: put_scores(app, request), "api"),
    ]


def _conflict(message: str, errors: list[dict[str, Any]] | None = None) -> HttpError:
    return HttpError(409, message, {"message": message, "errors": errors or []})


def _acting_teacher(app: PowerSchoolApp, request: Request) -> sqlite3.Row:
    raw = request.parameter("users_dcid")
    if not raw:
        raise HttpError(400, "users_dcid is required: pass the acting teacher's Users.DCID as a query parameter")
    try:
        users_dcid = int(raw)
    except ValueError as error:
        raise HttpError(400, f"users_dcid must be a number, got {raw!r}") from error
    teacher = app.connection().execute(
        "SELECT * FROM teachers WHERE users_dcid = ? ORDER BY status LIMIT 1", (users_dcid,)
    ).fetchone()
    if teacher is None:
        raise HttpError(404, f"no user with users_dcid {users_dcid}")
    if teacher["status"] != 1:
        raise HttpError(403, f"user {users_dcid} is inactive and cannot write to PowerTeacher Pro")
    return teacher


def _json_body(request: Request) -> Any:
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HttpError(415, "the request body must be application/json")
    try:
        return json.loads(request.body or b"null")
    except json.JSONDecodeError as error:
        raise HttpError(400, f"the request body is not valid JSON: {error}") from error


def _category(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["name"], "categorytype": row["categorytype"],
        "isactive": bool(row["isactive"]), "displayposition": row["displayposition"], "color": row["color"],
        "description": row["description"] or "", "teachermodified": row["categorytype"] == "user",
        "defaultscoretype": "POINTS", "defaultscoreentrypoints": 10, "defaulttotalvalue": 10,
        "defaultweight": 1, "defaultextracreditpoints": 0, "defaultpublishstate": "Immediately",
    }


def _categories_for(app: PowerSchoolApp, users_dcid: int) -> list[sqlite3.Row]:
    """District categories and the teacher's own, inactive ones included (flagged ``isactive``)."""
    return app.connection().execute(
        "SELECT * FROM teachercategory WHERE (users_dcid IS NULL OR users_dcid = ?) "
        "ORDER BY CASE categorytype WHEN 'district' THEN 0 ELSE 1 END, displayposition, id", (users_dcid,)
    ).fetchall()


def teacher_categories(app: PowerSchoolApp, request: Request) -> Response:
    teacher = _acting_teacher(app, request)
    return json_response(200, [_category(row) for row in _categories_for(app, teacher["users_dcid"])])


def _teaches(connection: sqlite3.Connection, teacher_id: int, section_id: int, lead: int) -> bool:
    if lead == teacher_id:
        return True
    return connection.execute(
        "SELECT 1 FROM sectionteacher WHERE sectionid = ? AND teacherid = ?", (section_id, teacher_id)
    ).fetchone() is not None


def _number(value: Any, field_name: str, errors: list[dict[str, Any]], index: int) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        errors.append({"index": index, "field": field_name, "code": "required", "message": f"{field_name} is required"})
        return None
    try:
        number = float(value)
    except ValueError:
        errors.append({"index": index, "field": field_name, "code": "invalid", "message": f"{field_name} must be a number"})
        return None
    if number < 0:
        errors.append({"index": index, "field": field_name, "code": "invalid", "message": f"{field_name} must be >= 0"})
    return number


def create_assignment(app: PowerSchoolApp, request: Request) -> Response:
    teacher = _acting_teacher(app, request)
    body = _json_body(request)
    sections = body.get("_assignmentsections") if isinstance(body, dict) else None
    if not isinstance(sections, list) or not sections:
        raise _conflict("_assignmentsections must be a non-empty list")
    connection = app.connection()
    allowed_categories = {row["id"] for row in _categories_for(app, teacher["users_dcid"]) if row["isactive"]}
    errors: list[dict[str, Any]] = []
    prepared = []
    for index, item in enumerate(sections):
        if not isinstance(item, dict):
            errors.append({"index": index, "field": "_assignmentsections", "code": "invalid",
                           "message": "each assignment section must be an object"})
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append({"index": index, "field": "name", "code": "required", "message": "name is required"})
        elif len(name) > ASSIGNMENT_NAME_LIMIT:
            errors.append({"index": index, "field": "name", "code": "maxlength",
                           "message": f"name is longer than {ASSIGNMENT_NAME_LIMIT} characters ({len(name)})"})
        section = connection.execute(
            "SELECT id, dcid, teacher FROM sections WHERE dcid = ?", (_as_int(item.get("sectionsdcid")),)
        ).fetchone()
        if section is None:
            errors.append({"index": index, "field": "sectionsdcid", "code": "notfound",
                           "message": f"section {item.get('sectionsdcid')!r} does not exist"})
        elif not _teaches(connection, teacher["id"], section["id"], section["teacher"]):
            raise HttpError(403, f"user {teacher['users_dcid']} does not teach section {section['dcid']}")
        if item.get("scoretype", "POINTS") not in SCORE_TYPES:
            errors.append({"index": index, "field": "scoretype", "code": "invalid",
                           "message": f"scoretype must be one of {', '.join(sorted(SCORE_TYPES))}"})
        total = _number(item.get("totalpointvalue"), "totalpointvalue", errors, index)
        _number(item.get("scoreentrypoints", total), "scoreentrypoints", errors, index)
        _number(item.get("weight", 1), "weight", errors, index)
        _number(item.get("extracreditpoints", 0), "extracreditpoints", errors, index)
        due = item.get("duedate")
        if not isinstance(due, str) or not _DATE.match(due):
            errors.append({"index": index, "field": "duedate", "code": "invalid", "message": "duedate must be YYYY-MM-DD"})
        if item.get("publishoption", "Immediately") not in PUBLISH_OPTIONS:
            errors.append({"index": index, "field": "publishoption", "code": "invalid",
                           "message": f"publishoption must be one of {', '.join(sorted(PUBLISH_OPTIONS))}"})
        associations = item.get("_assignmentcategoryassociations")
        if not isinstance(associations, list) or not associations:
            errors.append({"index": index, "field": "_assignmentcategoryassociations", "code": "required",
                           "message": "an assignment needs a category association"})
            category_id = None
        else:
            primary = next((entry for entry in associations if isinstance(entry, dict) and entry.get("isprimary")),
                           associations[0] if isinstance(associations[0], dict) else {})
            category_id = _as_int(primary.get("teachercategoryid"))
            if category_id not in allowed_categories:
                errors.append({"index": index, "field": "teachercategoryid", "code": "notfound",
                               "message": f"category {primary.get('teachercategoryid')!r} is not an active category "
                                          f"of user {teacher['users_dcid']}"})
        prepared.append((item, section, category_id))
    if errors:
        raise _conflict("Validation Failed", errors)

    def insert(write_connection: sqlite3.Connection) -> tuple[int, list[int]]:
        now = _now()
        cursor = write_connection.execute(
            "INSERT INTO assignment (users_dcid, standardcalcdirection, created_at) VALUES (?, ?, ?)",
            (teacher["users_dcid"], body.get("standardcalcdirection", "NONE"), now),
        )
        assignment_id = cursor.lastrowid
        section_ids = []
        for item, section, category_id in prepared:
            total = float(item.get("totalpointvalue"))
            cursor = write_connection.execute(
                "INSERT INTO assignmentsection (assignmentid, sectionsdcid, name, description, duedate, scoretype, "
                "scoreentrypoints, totalpointvalue, weight, extracreditpoints, publishoption, teachercategoryid, "
                "payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (assignment_id, section["dcid"], item["name"], item.get("description"), item["duedate"],
                 item.get("scoretype", "POINTS"), float(item.get("scoreentrypoints", total)), total,
                 float(item.get("weight", 1)), float(item.get("extracreditpoints", 0)),
                 item.get("publishoption", "Immediately"), category_id, json.dumps(item, ensure_ascii=False)),
            )
            section_ids.append(cursor.lastrowid)
        return assignment_id, section_ids

    assignment_id, section_ids = app.write(insert)
    location = f"{app.base_url}/ws/xte/section/assignment/{assignment_id}"
    return Response(201, b"", [("Location", location), ("AssignmentSectionIds", json.dumps(section_ids))])


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def assignments_for_sections(connection: sqlite3.Connection, section_dcids: list[int]) -> list[dict[str, Any]]:
    """Assignments with their sections and ``_assignmentscores`` (also the admin read-back)."""
    if not section_dcids:
        return []
    placeholders = ",".join("?" * len(section_dcids))
    rows = connection.execute(
        f"SELECT s.*, a.standardcalcdirection, a.users_dcid FROM assignmentsection s "
        f"JOIN assignment a ON a.id = s.assignmentid WHERE s.sectionsdcid IN ({placeholders}) ORDER BY s.assignmentid, s.id",
        section_dcids,
    ).fetchall()
    by_assignment: dict[int, dict[str, Any]] = {}
    for row in rows:
        scores = [
            {"studentsdcid": score["studentsdcid"], "actualscoreentered": score["actualscoreentered"],
             "actualscorekind": score["actualscorekind"], "scorepoints": score["scorepoints"],
             "whenmodified": score["whenmodified"], "writes": score["writes"]}
            for score in connection.execute(
                "SELECT * FROM assignmentscore WHERE assignmentsectionid = ? ORDER BY studentsdcid", (row["id"],)
            )
        ]
        assignment = by_assignment.setdefault(row["assignmentid"], {
            "assignmentid": row["assignmentid"], "standardcalcdirection": row["standardcalcdirection"],
            "_assignmentsections": [],
        })
        assignment["_assignmentsections"].append({
            "assignmentsectionid": row["id"], "sectionsdcid": row["sectionsdcid"], "name": row["name"],
            "description": row["description"], "duedate": row["duedate"], "scoretype": row["scoretype"],
            "scoreentrypoints": row["scoreentrypoints"], "totalpointvalue": row["totalpointvalue"],
            "weight": row["weight"], "extracreditpoints": row["extracreditpoints"],
            "publishoption": row["publishoption"],
            "_assignmentcategoryassociations": [{"teachercategoryid": row["teachercategoryid"], "isprimary": True}],
            "_assignmentscores": scores,
        })
    return list(by_assignment.values())


def list_assignments(app: PowerSchoolApp, request: Request) -> Response:
    teacher = _acting_teacher(app, request)
    raw = ",".join(request.query.get("section_ids", []))
    try:
        section_dcids = [int(item) for item in raw.split(",") if item.strip()]
    except ValueError as error:
        raise HttpError(400, "section_ids must be a comma-separated list of section DCIDs") from error
    if not section_dcids:
        raise HttpError(400, "section_ids is required")
    connection = app.connection()
    for dcid in section_dcids:
        section = connection.execute("SELECT id, teacher FROM sections WHERE dcid = ?", (dcid,)).fetchone()
        if section is None:
            raise HttpError(404, f"section {dcid} does not exist")
        if not _teaches(connection, teacher["id"], section["id"], section["teacher"]):
            raise HttpError(403, f"user {teacher['users_dcid']} does not teach section {dcid}")
    return json_response(200, assignments_for_sections(connection, section_dcids))


def put_scores(app: PowerSchoolApp, request: Request) -> Response:
    teacher = _acting_teacher(app, request)
    body = _json_body(request)
    scores = body.get("assignment_scores") if isinstance(body, dict) else None
    if not isinstance(scores, list) or not scores:
        raise _conflict("assignment_scores must be a non-empty list")
    with app.lock:
        resubmit = app.fault_random.random() < app.options.resubmit_rate
    if resubmit:
        raise HttpError(412, "Resubmit")
    connection = app.connection()
    errors: list[dict[str, Any]] = []
    prepared = []
    for index, item in enumerate(scores):
        if not isinstance(item, dict):
            errors.append({"index": index, "field": "assignment_scores", "code": "invalid",
                           "message": "each score must be an object"})
            continue
        section_ref = item.get("_assignmentsection") if isinstance(item.get("_assignmentsection"), dict) else {}
        assignment_section = connection.execute(
            "SELECT s.*, se.id AS section_id, se.teacher FROM assignmentsection s "
            "JOIN sections se ON se.dcid = s.sectionsdcid WHERE s.id = ?",
            (_as_int(section_ref.get("assignmentsectionid")),),
        ).fetchone()
        if assignment_section is None:
            errors.append({"index": index, "field": "assignmentsectionid", "code": "notfound",
                           "message": f"assignment section {section_ref.get('assignmentsectionid')!r} does not exist"})
            continue
        if not _teaches(connection, teacher["id"], assignment_section["section_id"], assignment_section["teacher"]):
            raise HttpError(403, f"user {teacher['users_dcid']} does not teach section {assignment_section['sectionsdcid']}")
        student = connection.execute(
            "SELECT st.dcid FROM students st JOIN cc ON cc.studentid = st.id AND cc.sectionid = ? WHERE st.dcid = ?",
            (assignment_section["section_id"], _as_int(item.get("studentsdcid"))),
        ).fetchone()
        if student is None:
            errors.append({"index": index, "field": "studentsdcid", "code": "notenrolled",
                           "message": f"student {item.get('studentsdcid')!r} is not enrolled in section "
                                      f"{assignment_section['sectionsdcid']}"})
            continue
        kind = item.get("actualscorekind", "REAL_SCORE")
        entered = item.get("actualscoreentered")
        points = None
        if kind not in SCORE_KINDS:
            errors.append({"index": index, "field": "actualscorekind", "code": "invalid",
                           "message": f"actualscorekind must be one of {', '.join(sorted(SCORE_KINDS))}"})
        elif kind == "REAL_SCORE":
            try:
                points = float(str(entered))
            except ValueError:
                errors.append({"index": index, "field": "actualscoreentered", "code": "invalid",
                               "message": f"actualscoreentered {entered!r} is not a score"})
                continue
            if points < 0:
                errors.append({"index": index, "field": "actualscoreentered", "code": "invalid",
                               "message": "a score cannot be negative"})
        prepared.append((assignment_section["id"], student["dcid"], None if entered is None else str(entered), kind,
                         points, json.dumps(item, ensure_ascii=False)))
    if errors:
        raise _conflict("Validation Failed", errors)

    def upsert(write_connection: sqlite3.Connection) -> None:
        now = _now()
        write_connection.executemany(
            "INSERT INTO assignmentscore (assignmentsectionid, studentsdcid, actualscoreentered, actualscorekind, "
            "scorepoints, payload, writes, whenmodified) VALUES (?,?,?,?,?,?,1,?) "
            "ON CONFLICT (assignmentsectionid, studentsdcid) DO UPDATE SET actualscoreentered = excluded.actualscoreentered, "
            "actualscorekind = excluded.actualscorekind, scorepoints = excluded.scorepoints, payload = excluded.payload, "
            "writes = assignmentscore.writes + 1, whenmodified = excluded.whenmodified",
            [(*row, now) for row in prepared],
        )

    app.write(upsert)
    return json_response(200, {"assignment_scores": [
        {"studentsdcid": student, "_assignmentsection": {"assignmentsectionid": section}, "actualscoreentered": entered,
         "actualscorekind": kind} for section, student, entered, kind, _, _ in prepared
    ]})
