"""PowerTeacher Pro (``/ws/xte``) and the legacy PowerTeacher Gradebook (PTG v2): what grade push writes to.

Implements "Grade push: PowerTeacher Pro" of docs/powerschool-api.md, which serves the
source document's rule that Learning scores are written to PowerTeacher immediately and
overwrite what is there:

- PowerTeacher Pro: teacher categories; assignment create (201 with ``Location`` and
  ``AssignmentSectionIds``; 409 for invalid input; ``users_dcid`` required; the
  assignment-level ``name`` and ``_onlinework`` kept); the assignment list with
  ``_assignmentscores``; ``PUT .../assignment/{id}`` (replaces it; 409 when scoring changes
  while scores exist unless ``update_scores=true``); ``DELETE .../assignment/{id}`` (204, or
  412 "Assignment has grades associated" unless ``force=true``); ``PUT /ws/xte/score``
  (upsert on (assignmentsectionid, studentsdcid), last write wins; an item with
  ``actualscoreentered`` and ``scorepoints`` null clears the score, the UNCONFIRMED call
  of the API doc; 409 on validation errors; a configurable share of 412 "Resubmit").
  Writes to a section on the legacy gradebook are refused (409).
- The legacy PowerTeacher Gradebook v2 API (sections whose ``gradebooktype`` is 1):
  assignment create/read/update/delete under ``/powerschool-ptg-api/v2`` with the source
  document's category rule applied by the API ('TEST' when the section's teacher has an
  active category of that name, else 'UNDEFINED'), and scores: many per PUT, answered 200
  with a ``batch_result`` per item (409 for a refused item, the others written), or one
  per PUT (201 created, 204 changed). A null ``score_entered`` clears a score (modelled
  like PowerTeacher Pro's clear; UNCONFIRMED).

Sections are PowerTeacher Pro unless the admin call ``POST /sandbox/admin/gradebook-type``
put them on the legacy gradebook (table ``section_gradebook``).
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


PTP_GRADEBOOK, PTG_GRADEBOOK = 2, 1
PTG = "/powerschool-ptg-api/v2"


def routes(app: PowerSchoolApp) -> list[Route]:
    def bind(handler):
        return lambda request, **groups: handler(app, request, **groups)

    return [
        Route("GET", re.compile(r"^/ws/xte/teacher_category/?$"), bind(teacher_categories), "api"),
        Route("POST", re.compile(r"^/ws/xte/section/assignment/?$"), bind(create_assignment), "api"),
        Route("GET", re.compile(r"^/ws/xte/section/assignment/?$"), bind(list_assignments), "api"),
        Route(
            "PUT",
            re.compile(r"^/ws/xte/section/assignment/(?P<assignment_id>[^/]+)/?$"),
            bind(update_assignment),
            "api",
        ),
        Route(
            "DELETE",
            re.compile(r"^/ws/xte/section/assignment/(?P<assignment_id>[^/]+)/?$"),
            bind(delete_assignment),
            "api",
        ),
        Route("PUT", re.compile(r"^/ws/xte/score/?$"), bind(put_scores), "api"),
        Route("POST", re.compile(rf"^{PTG}/section/(?P<section_id>[^/]+)/assignment/?$"), bind(ptg_create), "api"),
        Route("GET", re.compile(rf"^{PTG}/section/(?P<section_id>[^/]+)/assignment/?$"), bind(ptg_list), "api"),
        Route("GET", re.compile(rf"^{PTG}/assignment/(?P<assignment_id>[^/]+)/?$"), bind(ptg_read), "api"),
        Route("PUT", re.compile(rf"^{PTG}/assignment/(?P<assignment_id>[^/]+)/?$"), bind(ptg_update), "api"),
        Route("DELETE", re.compile(rf"^{PTG}/assignment/(?P<assignment_id>[^/]+)/?$"), bind(ptg_delete), "api"),
        Route("PUT", re.compile(rf"^{PTG}/assignment/(?P<assignment_id>[^/]+)/score/?$"), bind(ptg_put_scores), "api"),
        Route(
            "PUT",
            re.compile(rf"^{PTG}/assignment/(?P<assignment_id>[^/]+)/student/(?P<student_id>[^/]+)/score/?$"),
            bind(ptg_put_one_score),
            "api",
        ),
        Route("POST", re.compile(r"^/sandbox/admin/gradebook-type/?$"), bind(admin_gradebook_type), "admin"),
        Route("POST", re.compile(r"^/sandbox/admin/teacher-category/?$"), bind(admin_teacher_category), "admin"),
        Route("GET", re.compile(r"^/sandbox/admin/ptg-assignments/?$"), bind(admin_ptg_assignments), "admin"),
    ]


def gradebook_type(connection: sqlite3.Connection, section_dcid: int) -> int:
    row = connection.execute(
        "SELECT gradebooktype FROM section_gradebook WHERE sectionsdcid = ?", (section_dcid,)
    ).fetchone()
    return int(row[0]) if row else PTP_GRADEBOOK


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
    teacher = (
        app.connection()
        .execute("SELECT * FROM teachers WHERE users_dcid = ? ORDER BY status LIMIT 1", (users_dcid,))
        .fetchone()
    )
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
        "id": row["id"],
        "name": row["name"],
        "categorytype": row["categorytype"],
        "isactive": bool(row["isactive"]),
        "displayposition": row["displayposition"],
        "color": row["color"],
        "description": row["description"] or "",
        "teachermodified": row["categorytype"] == "user",
        "defaultscoretype": "POINTS",
        "defaultscoreentrypoints": 10,
        "defaulttotalvalue": 10,
        "defaultweight": 1,
        "defaultextracreditpoints": 0,
        "defaultpublishstate": "Immediately",
    }


def _categories_for(app: PowerSchoolApp, users_dcid: int) -> list[sqlite3.Row]:
    """District categories and the teacher's own, inactive ones included (flagged ``isactive``)."""
    return (
        app.connection()
        .execute(
            "SELECT * FROM teachercategory WHERE (users_dcid IS NULL OR users_dcid = ?) "
            "ORDER BY CASE categorytype WHEN 'district' THEN 0 ELSE 1 END, displayposition, id",
            (users_dcid,),
        )
        .fetchall()
    )


def teacher_categories(app: PowerSchoolApp, request: Request) -> Response:
    teacher = _acting_teacher(app, request)
    return json_response(200, [_category(row) for row in _categories_for(app, teacher["users_dcid"])])


def _teaches(connection: sqlite3.Connection, teacher_id: int, section_id: int, lead: int) -> bool:
    if lead == teacher_id:
        return True
    return (
        connection.execute(
            "SELECT 1 FROM sectionteacher WHERE sectionid = ? AND teacherid = ?", (section_id, teacher_id)
        ).fetchone()
        is not None
    )


def _number(value: Any, field_name: str, errors: list[dict[str, Any]], index: int) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        errors.append({"index": index, "field": field_name, "code": "required", "message": f"{field_name} is required"})
        return None
    try:
        number = float(value)
    except ValueError:
        errors.append(
            {"index": index, "field": field_name, "code": "invalid", "message": f"{field_name} must be a number"}
        )
        return None
    if number < 0:
        errors.append({"index": index, "field": field_name, "code": "invalid", "message": f"{field_name} must be >= 0"})
    return number


def _prepare_sections(app: PowerSchoolApp, teacher: sqlite3.Row, body: Any) -> list[tuple[dict, sqlite3.Row, int]]:
    """Validate an assignment body (create or replace): [(section item, section row, category id)] or 409."""
    if not isinstance(body, dict):
        raise _conflict("the assignment must be a JSON object")
    sections = body.get("_assignmentsections")
    if not isinstance(sections, list) or not sections:
        raise _conflict("_assignmentsections must be a non-empty list")
    connection = app.connection()
    allowed_categories = {row["id"] for row in _categories_for(app, teacher["users_dcid"]) if row["isactive"]}
    errors: list[dict[str, Any]] = []
    if "name" in body and (
        not isinstance(body["name"], str) or not body["name"].strip() or len(body["name"]) > ASSIGNMENT_NAME_LIMIT
    ):
        errors.append(
            {
                "field": "name",
                "code": "invalid",
                "message": f"the assignment name must be 1 to {ASSIGNMENT_NAME_LIMIT} characters",
            }
        )
    prepared = []
    for index, item in enumerate(sections):
        if not isinstance(item, dict):
            errors.append(
                {
                    "index": index,
                    "field": "_assignmentsections",
                    "code": "invalid",
                    "message": "each assignment section must be an object",
                }
            )
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            errors.append({"index": index, "field": "name", "code": "required", "message": "name is required"})
        elif len(name) > ASSIGNMENT_NAME_LIMIT:
            errors.append(
                {
                    "index": index,
                    "field": "name",
                    "code": "maxlength",
                    "message": f"name is longer than {ASSIGNMENT_NAME_LIMIT} characters ({len(name)})",
                }
            )
        section = connection.execute(
            "SELECT id, dcid, teacher FROM sections WHERE dcid = ?", (_as_int(item.get("sectionsdcid")),)
        ).fetchone()
        if section is None:
            errors.append(
                {
                    "index": index,
                    "field": "sectionsdcid",
                    "code": "notfound",
                    "message": f"section {item.get('sectionsdcid')!r} does not exist",
                }
            )
        elif not _teaches(connection, teacher["id"], section["id"], section["teacher"]):
            raise HttpError(403, f"user {teacher['users_dcid']} does not teach section {section['dcid']}")
        elif gradebook_type(connection, section["dcid"]) != PTP_GRADEBOOK:
            errors.append(
                {
                    "index": index,
                    "field": "sectionsdcid",
                    "code": "gradebooktype",
                    "message": f"section {section['dcid']} uses the PowerTeacher Gradebook, not PowerTeacher "
                    f"Pro: write through {PTG}",
                }
            )
        if item.get("scoretype", "POINTS") not in SCORE_TYPES:
            errors.append(
                {
                    "index": index,
                    "field": "scoretype",
                    "code": "invalid",
                    "message": f"scoretype must be one of {', '.join(sorted(SCORE_TYPES))}",
                }
            )
        total = _number(item.get("totalpointvalue"), "totalpointvalue", errors, index)
        _number(item.get("scoreentrypoints", total), "scoreentrypoints", errors, index)
        _number(item.get("weight", 1), "weight", errors, index)
        _number(item.get("extracreditpoints", 0), "extracreditpoints", errors, index)
        due = item.get("duedate")
        if not isinstance(due, str) or not _DATE.match(due):
            errors.append(
                {"index": index, "field": "duedate", "code": "invalid", "message": "duedate must be YYYY-MM-DD"}
            )
        if item.get("publishoption", "Immediately") not in PUBLISH_OPTIONS:
            errors.append(
                {
                    "index": index,
                    "field": "publishoption",
                    "code": "invalid",
                    "message": f"publishoption must be one of {', '.join(sorted(PUBLISH_OPTIONS))}",
                }
            )
        online = item.get("_onlinework")
        if online is not None and (
            not isinstance(online, dict)
            or not all(isinstance(value, bool) for name, value in online.items() if name.startswith("is"))
        ):
            errors.append(
                {
                    "index": index,
                    "field": "_onlinework",
                    "code": "invalid",
                    "message": "_onlinework must be an object whose is... flags are true or false",
                }
            )
        associations = item.get("_assignmentcategoryassociations")
        if not isinstance(associations, list) or not associations:
            errors.append(
                {
                    "index": index,
                    "field": "_assignmentcategoryassociations",
                    "code": "required",
                    "message": "an assignment needs a category association",
                }
            )
            category_id = None
        else:
            primary = next(
                (entry for entry in associations if isinstance(entry, dict) and entry.get("isprimary")),
                associations[0] if isinstance(associations[0], dict) else {},
            )
            category_id = _as_int(primary.get("teachercategoryid"))
            if category_id not in allowed_categories:
                errors.append(
                    {
                        "index": index,
                        "field": "teachercategoryid",
                        "code": "notfound",
                        "message": f"category {primary.get('teachercategoryid')!r} is not an active category "
                        f"of user {teacher['users_dcid']}",
                    }
                )
        prepared.append((item, section, category_id))
    if errors:
        raise _conflict("Validation Failed", errors)
    return prepared


def _section_values(assignment_id: int, item: dict, section: sqlite3.Row, category_id: int) -> tuple:
    total = float(item.get("totalpointvalue"))
    return (
        assignment_id,
        section["dcid"],
        item["name"],
        item.get("description"),
        item["duedate"],
        item.get("scoretype", "POINTS"),
        float(item.get("scoreentrypoints", total)),
        total,
        float(item.get("weight", 1)),
        float(item.get("extracreditpoints", 0)),
        item.get("publishoption", "Immediately"),
        category_id,
        json.dumps(item, ensure_ascii=False),
    )


_INSERT_SECTION = (
    "INSERT INTO assignmentsection (assignmentid, sectionsdcid, name, description, duedate, scoretype, "
    "scoreentrypoints, totalpointvalue, weight, extracreditpoints, publishoption, teachercategoryid, "
    "payload) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def create_assignment(app: PowerSchoolApp, request: Request) -> Response:
    teacher = _acting_teacher(app, request)
    body = _json_body(request)
    prepared = _prepare_sections(app, teacher, body)

    def insert(write_connection: sqlite3.Connection) -> tuple[int, list[int]]:
        now = _now()
        cursor = write_connection.execute(
            "INSERT INTO assignment (users_dcid, standardcalcdirection, created_at, name) VALUES (?, ?, ?, ?)",
            (teacher["users_dcid"], body.get("standardcalcdirection", "NONE"), now, body.get("name")),
        )
        assignment_id = cursor.lastrowid
        section_ids = []
        for item, section, category_id in prepared:
            cursor = write_connection.execute(
                _INSERT_SECTION, _section_values(assignment_id, item, section, category_id)
            )
            section_ids.append(cursor.lastrowid)
        return assignment_id, section_ids

    assignment_id, section_ids = app.write(insert)
    location = f"{app.base_url}/ws/xte/section/assignment/{assignment_id}"
    return Response(201, b"", [("Location", location), ("AssignmentSectionIds", json.dumps(section_ids))])


def _assignment_of_teacher(app: PowerSchoolApp, teacher: sqlite3.Row, raw_id: str) -> tuple[int, list[sqlite3.Row]]:
    assignment_id = _as_int(raw_id)
    connection = app.connection()
    if (
        assignment_id is None
        or connection.execute("SELECT 1 FROM assignment WHERE id = ?", (assignment_id,)).fetchone() is None
    ):
        raise HttpError(404, f"assignment {raw_id} does not exist")
    sections = connection.execute(
        "SELECT s.*, se.id AS section_id, se.teacher FROM assignmentsection s "
        "JOIN sections se ON se.dcid = s.sectionsdcid "
        "WHERE s.assignmentid = ? ORDER BY s.id",
        (assignment_id,),
    ).fetchall()
    for row in sections:
        if not _teaches(connection, teacher["id"], row["section_id"], row["teacher"]):
            raise HttpError(403, f"user {teacher['users_dcid']} does not teach section {row['sectionsdcid']}")
    return assignment_id, sections


def _flag(request: Request, name: str) -> bool:
    return (request.parameter(name) or "").strip().lower() == "true"


SCORING_FIELDS = ("scoretype", "scoreentrypoints", "totalpointvalue")


def update_assignment(app: PowerSchoolApp, request: Request, assignment_id: str) -> Response:
    """Replace an assignment (same body as the create); 409 when scoring changes over scores without update_scores."""
    teacher = _acting_teacher(app, request)
    body = _json_body(request)
    number, existing = _assignment_of_teacher(app, teacher, assignment_id)
    prepared = _prepare_sections(app, teacher, body)
    connection = app.connection()
    by_section = {row["sectionsdcid"]: row for row in existing}
    if not _flag(request, "update_scores"):
        for item, section, _ in prepared:
            old = by_section.get(section["dcid"])
            if old is None:
                continue
            new = _section_values(number, item, section, 0)
            changed = (old["scoretype"], old["scoreentrypoints"], old["totalpointvalue"]) != (new[5], new[6], new[7])
            scored = connection.execute(
                "SELECT count(*) FROM assignmentscore WHERE assignmentsectionid = ? AND actualscoreentered IS NOT NULL",
                (old["id"],),
            ).fetchone()[0]
            if changed and scored:
                raise _conflict(
                    "Validation Failed",
                    [
                        {
                            "field": "update_scores",
                            "code": "required",
                            "message": (
                                f"the scoring of assignment section {old['id']} changes and it has {scored} score(s): "
                                "pass update_scores=true"
                            ),
                        }
                    ],
                )

    def replace(write_connection: sqlite3.Connection) -> list[int]:
        now = _now()
        write_connection.execute(
            "UPDATE assignment SET standardcalcdirection = ?, name = ?, updated_at = ?, updates = updates + 1 "
            "WHERE id = ?",
            (body.get("standardcalcdirection", "NONE"), body.get("name"), now, number),
        )
        kept = []
        for item, section, category_id in prepared:
            values = _section_values(number, item, section, category_id)
            old = by_section.get(section["dcid"])
            if old is None:
                kept.append(write_connection.execute(_INSERT_SECTION, values).lastrowid)
                continue
            write_connection.execute(
                "UPDATE assignmentsection SET name = ?, description = ?, duedate = ?, scoretype = ?, "
                "scoreentrypoints = ?, totalpointvalue = ?, weight = ?, extracreditpoints = ?, publishoption = ?, "
                "teachercategoryid = ?, payload = ? WHERE id = ?",
                (*values[2:], old["id"]),
            )
            kept.append(old["id"])
        for row in existing:
            if row["id"] not in kept:
                write_connection.execute("DELETE FROM assignmentscore WHERE assignmentsectionid = ?", (row["id"],))
                write_connection.execute("DELETE FROM assignmentsection WHERE id = ?", (row["id"],))
        return kept

    section_ids = app.write(replace)
    return Response(204, b"", [("AssignmentSectionIds", json.dumps(section_ids))])


def delete_assignment(app: PowerSchoolApp, request: Request, assignment_id: str) -> Response:
    """204, or 412 "Assignment has grades associated" when a score exists (unless force=true)."""
    teacher = _acting_teacher(app, request)
    number, sections = _assignment_of_teacher(app, teacher, assignment_id)
    ids = [row["id"] for row in sections]
    placeholders = ",".join("?" * len(ids)) or "NULL"
    scored = (
        app.connection()
        .execute(
            f"SELECT count(*) FROM assignmentscore WHERE assignmentsectionid IN ({placeholders}) "
            "AND actualscoreentered IS NOT NULL",
            ids,
        )
        .fetchone()[0]
    )
    if scored and not _flag(request, "force"):
        raise HttpError(412, "Assignment has grades associated")

    def remove(write_connection: sqlite3.Connection) -> None:
        write_connection.execute(f"DELETE FROM assignmentscore WHERE assignmentsectionid IN ({placeholders})", ids)
        write_connection.execute("DELETE FROM assignmentsection WHERE assignmentid = ?", (number,))
        write_connection.execute("DELETE FROM assignment WHERE id = ?", (number,))

    app.write(remove)
    return Response(204, b"", [])


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
        f"SELECT s.*, a.standardcalcdirection, a.users_dcid, a.name AS assignment_name FROM assignmentsection s "
        f"JOIN assignment a ON a.id = s.assignmentid WHERE s.sectionsdcid IN ({placeholders}) "
        "ORDER BY s.assignmentid, s.id",
        section_dcids,
    ).fetchall()
    by_assignment: dict[int, dict[str, Any]] = {}
    for row in rows:
        scores = [
            {
                "studentsdcid": score["studentsdcid"],
                "actualscoreentered": score["actualscoreentered"],
                "actualscorekind": score["actualscorekind"],
                "scorepoints": score["scorepoints"],
                "whenmodified": score["whenmodified"],
                "writes": score["writes"],
            }
            for score in connection.execute(
                "SELECT * FROM assignmentscore WHERE assignmentsectionid = ? ORDER BY studentsdcid", (row["id"],)
            )
        ]
        assignment = by_assignment.setdefault(
            row["assignmentid"],
            {
                "assignmentid": row["assignmentid"],
                "name": row["assignment_name"],
                "standardcalcdirection": row["standardcalcdirection"],
                "_assignmentsections": [],
            },
        )
        assignment["_assignmentsections"].append(
            {
                "assignmentsectionid": row["id"],
                "sectionsdcid": row["sectionsdcid"],
                "name": row["name"],
                "description": row["description"],
                "duedate": row["duedate"],
                "scoretype": row["scoretype"],
                "scoreentrypoints": row["scoreentrypoints"],
                "totalpointvalue": row["totalpointvalue"],
                "weight": row["weight"],
                "extracreditpoints": row["extracreditpoints"],
                "publishoption": row["publishoption"],
                "_assignmentcategoryassociations": [{"teachercategoryid": row["teachercategoryid"], "isprimary": True}],
                "_onlinework": json.loads(row["payload"]).get("_onlinework"),
                "_assignmentscores": scores,
            }
        )
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


def is_clear(item: dict[str, Any]) -> bool:
    """A score item that clears the score: ``actualscoreentered`` and ``scorepoints`` both present and null."""
    return (
        "actualscoreentered" in item
        and item["actualscoreentered"] is None
        and "scorepoints" in item
        and item["scorepoints"] is None
    )


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
            errors.append(
                {
                    "index": index,
                    "field": "assignment_scores",
                    "code": "invalid",
                    "message": "each score must be an object",
                }
            )
            continue
        section_ref = item.get("_assignmentsection") if isinstance(item.get("_assignmentsection"), dict) else {}
        assignment_section = connection.execute(
            "SELECT s.*, se.id AS section_id, se.teacher FROM assignmentsection s "
            "JOIN sections se ON se.dcid = s.sectionsdcid WHERE s.id = ?",
            (_as_int(section_ref.get("assignmentsectionid")),),
        ).fetchone()
        if assignment_section is None:
            errors.append(
                {
                    "index": index,
                    "field": "assignmentsectionid",
                    "code": "notfound",
                    "message": f"assignment section {section_ref.get('assignmentsectionid')!r} does not exist",
                }
            )
            continue
        if not _teaches(connection, teacher["id"], assignment_section["section_id"], assignment_section["teacher"]):
            raise HttpError(
                403, f"user {teacher['users_dcid']} does not teach section {assignment_section['sectionsdcid']}"
            )
        student = connection.execute(
            "SELECT st.dcid FROM students st JOIN cc ON cc.studentid = st.id AND cc.sectionid = ? WHERE st.dcid = ?",
            (assignment_section["section_id"], _as_int(item.get("studentsdcid"))),
        ).fetchone()
        if student is None:
            errors.append(
                {
                    "index": index,
                    "field": "studentsdcid",
                    "code": "notenrolled",
                    "message": f"student {item.get('studentsdcid')!r} is not enrolled in section "
                    f"{assignment_section['sectionsdcid']}",
                }
            )
            continue
        kind = item.get("actualscorekind", "REAL_SCORE")
        entered = item.get("actualscoreentered")
        points = None
        if is_clear(item):  # the score is cleared (modelled; docs/powerschool-api.md marks it UNCONFIRMED)
            prepared.append(
                (assignment_section["id"], student["dcid"], None, None, None, json.dumps(item, ensure_ascii=False))
            )
            continue
        if kind not in SCORE_KINDS:
            errors.append(
                {
                    "index": index,
                    "field": "actualscorekind",
                    "code": "invalid",
                    "message": f"actualscorekind must be one of {', '.join(sorted(SCORE_KINDS))}",
                }
            )
        elif kind == "REAL_SCORE":
            try:
                points = float(str(entered))
            except ValueError:
                errors.append(
                    {
                        "index": index,
                        "field": "actualscoreentered",
                        "code": "invalid",
                        "message": f"actualscoreentered {entered!r} is not a score",
                    }
                )
                continue
            if points < 0:
                errors.append(
                    {
                        "index": index,
                        "field": "actualscoreentered",
                        "code": "invalid",
                        "message": "a score cannot be negative",
                    }
                )
        prepared.append(
            (
                assignment_section["id"],
                student["dcid"],
                None if entered is None else str(entered),
                kind,
                points,
                json.dumps(item, ensure_ascii=False),
            )
        )
    if errors:
        raise _conflict("Validation Failed", errors)

    def upsert(write_connection: sqlite3.Connection) -> None:
        now = _now()
        write_connection.executemany(
            "INSERT INTO assignmentscore (assignmentsectionid, studentsdcid, actualscoreentered, actualscorekind, "
            "scorepoints, payload, writes, whenmodified) VALUES (?,?,?,?,?,?,1,?) "
            "ON CONFLICT (assignmentsectionid, studentsdcid) DO UPDATE SET "
            "actualscoreentered = excluded.actualscoreentered, "
            "actualscorekind = excluded.actualscorekind, scorepoints = excluded.scorepoints, "
            "payload = excluded.payload, "
            "writes = assignmentscore.writes + 1, whenmodified = excluded.whenmodified",
            [(*row, now) for row in prepared],
        )

    app.write(upsert)
    return json_response(
        200,
        {
            "assignment_scores": [
                {
                    "studentsdcid": student,
                    "_assignmentsection": {"assignmentsectionid": section},
                    "actualscoreentered": entered,
                    "actualscorekind": kind,
                }
                for section, student, entered, kind, _, _ in prepared
            ]
        },
    )


# --------------------------------------------------------------------------- legacy PowerTeacher Gradebook (v2)

PTG_CATEGORY = "TEST"
PTG_NO_CATEGORY = "UNDEFINED"


def _ptg_section(app: PowerSchoolApp, raw_id: str) -> sqlite3.Row:
    connection = app.connection()
    section = connection.execute(
        "SELECT se.id, se.dcid, se.teacher, t.users_dcid FROM sections se LEFT JOIN teachers t ON t.id = se.teacher "
        "WHERE se.dcid = ?",
        (_as_int(raw_id),),
    ).fetchone()
    if section is None:
        raise HttpError(404, f"section {raw_id} does not exist")
    if gradebook_type(connection, section["dcid"]) != PTG_GRADEBOOK:
        raise HttpError(
            409,
            f"section {section['dcid']} uses PowerTeacher Pro, not the PowerTeacher Gradebook: write through /ws/xte",
        )
    return section


def _ptg_category(app: PowerSchoolApp, users_dcid: int | None) -> str:
    """The source document's footnote: 'TEST' when the teacher has that category, else 'UNDEFINED'."""
    names = {str(row["name"]).strip().upper() for row in _categories_for(app, users_dcid or -1) if row["isactive"]}
    return PTG_CATEGORY if PTG_CATEGORY in names else PTG_NO_CATEGORY


def _ptg_fields(body: Any) -> dict[str, Any]:
    assignment = body.get("assignment") if isinstance(body, dict) else None
    if not isinstance(assignment, dict):
        raise _conflict('the body must be {"assignment": {...}}')
    errors = []
    name = assignment.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > ASSIGNMENT_NAME_LIMIT:
        errors.append(
            {
                "field": "name",
                "code": "invalid",
                "message": f"name is required, at most {ASSIGNMENT_NAME_LIMIT} characters",
            }
        )
    abbreviation = assignment.get("abbreviation")
    if abbreviation is not None and (not isinstance(abbreviation, str) or len(abbreviation) > 10):
        errors.append({"field": "abbreviation", "code": "invalid", "message": "abbreviation is at most 10 characters"})
    due = assignment.get("date_assignment_due")
    if not isinstance(due, str) or not _DATE.match(due):
        errors.append(
            {"field": "date_assignment_due", "code": "invalid", "message": "date_assignment_due must be YYYY-MM-DD"}
        )
    points = _number(assignment.get("points_possible"), "points_possible", errors, 0)
    if errors:
        raise _conflict("Validation Failed", errors)
    return {
        "name": name,
        "abbreviation": abbreviation,
        "description": assignment.get("description"),
        "date_assignment_due": due,
        "points_possible": points,
        "payload": json.dumps(assignment, ensure_ascii=False),
    }


def ptg_create(app: PowerSchoolApp, request: Request, section_id: str) -> Response:
    section = _ptg_section(app, section_id)
    fields = _ptg_fields(_json_body(request))
    category = _ptg_category(app, section["users_dcid"])

    def insert(write_connection: sqlite3.Connection) -> int:
        return write_connection.execute(
            "INSERT INTO ptg_assignment (sectionsdcid, name, abbreviation, description, date_assignment_due, "
            "points_possible, category, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                section["dcid"],
                fields["name"],
                fields["abbreviation"],
                fields["description"],
                fields["date_assignment_due"],
                fields["points_possible"],
                category,
                fields["payload"],
                _now(),
            ),
        ).lastrowid

    number = app.write(insert)
    return Response(201, b"", [("Location", f"{app.base_url}{PTG}/assignment/{number}")])


def _ptg_assignment(app: PowerSchoolApp, raw_id: str) -> sqlite3.Row:
    row = app.connection().execute("SELECT * FROM ptg_assignment WHERE id = ?", (_as_int(raw_id),)).fetchone()
    if row is None:
        raise HttpError(404, f"assignment {raw_id} does not exist")
    return row


def ptg_assignment_view(connection: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any]:
    scores = [
        {
            "student": {"id": score["studentsdcid"]},
            "score_entered": score["score_entered"],
            "whenmodified": score["whenmodified"],
            "writes": score["writes"],
        }
        for score in connection.execute(
            "SELECT * FROM ptg_score WHERE assignmentid = ? ORDER BY studentsdcid", (row["id"],)
        )
    ]
    return {
        "id": row["id"],
        "section_id": row["sectionsdcid"],
        "name": row["name"],
        "abbreviation": row["abbreviation"],
        "description": row["description"],
        "date_assignment_due": row["date_assignment_due"],
        "points_possible": row["points_possible"],
        "category": {"name": row["category"]},
        "updates": row["updates"],
        "_assignment_scores": scores,
    }


def ptg_list(app: PowerSchoolApp, request: Request, section_id: str) -> Response:
    """The section's assignments (the collection of the create path; assumed, as the API doc lists only the item)."""
    section = _ptg_section(app, section_id)
    connection = app.connection()
    rows = connection.execute("SELECT * FROM ptg_assignment WHERE sectionsdcid = ? ORDER BY id", (section["dcid"],))
    return json_response(200, {"assignments": {"assignment": [ptg_assignment_view(connection, row) for row in rows]}})


def ptg_read(app: PowerSchoolApp, request: Request, assignment_id: str) -> Response:
    row = _ptg_assignment(app, assignment_id)
    return json_response(200, {"assignment": ptg_assignment_view(app.connection(), row)})


def ptg_update(app: PowerSchoolApp, request: Request, assignment_id: str) -> Response:
    row = _ptg_assignment(app, assignment_id)
    fields = _ptg_fields(_json_body(request))

    def update(write_connection: sqlite3.Connection) -> None:
        write_connection.execute(
            "UPDATE ptg_assignment SET name = ?, abbreviation = ?, description = ?, date_assignment_due = ?, "
            "points_possible = ?, payload = ?, updated_at = ?, updates = updates + 1 WHERE id = ?",
            (
                fields["name"],
                fields["abbreviation"],
                fields["description"],
                fields["date_assignment_due"],
                fields["points_possible"],
                fields["payload"],
                _now(),
                row["id"],
            ),
        )

    app.write(update)
    return Response(204, b"", [])


def ptg_delete(app: PowerSchoolApp, request: Request, assignment_id: str) -> Response:
    """204, or 412 when scores exist (modelled on PowerTeacher Pro's rule) unless force=true."""
    row = _ptg_assignment(app, assignment_id)
    scored = (
        app.connection()
        .execute("SELECT count(*) FROM ptg_score WHERE assignmentid = ? AND score_entered IS NOT NULL", (row["id"],))
        .fetchone()[0]
    )
    if scored and not _flag(request, "force"):
        raise HttpError(412, "Assignment has grades associated")

    def remove(write_connection: sqlite3.Connection) -> None:
        write_connection.execute("DELETE FROM ptg_score WHERE assignmentid = ?", (row["id"],))
        write_connection.execute("DELETE FROM ptg_assignment WHERE id = ?", (row["id"],))

    app.write(remove)
    return Response(204, b"", [])


def _ptg_check_score(
    connection: sqlite3.Connection, assignment: sqlite3.Row, student_id: Any, entered: Any
) -> str | None:
    """Why this score is refused, or None."""
    student = connection.execute(
        "SELECT st.dcid FROM students st JOIN cc ON cc.studentid = st.id JOIN sections se ON se.id = cc.sectionid "
        "WHERE st.dcid = ? AND se.dcid = ?",
        (_as_int(student_id), assignment["sectionsdcid"]),
    ).fetchone()
    if student is None:
        return f"student {student_id!r} is not enrolled in section {assignment['sectionsdcid']}"
    if entered is None:
        return None
    try:
        points = float(str(entered))
    except ValueError:
        return f"score_entered {entered!r} is not a score"
    if points < 0:
        return "a score cannot be negative"
    return None


def _ptg_upsert(write_connection: sqlite3.Connection, rows: list[tuple[int, int, str | None]]) -> None:
    write_connection.executemany(
        "INSERT INTO ptg_score (assignmentid, studentsdcid, score_entered, writes, whenmodified) VALUES (?,?,?,1,?) "
        "ON CONFLICT (assignmentid, studentsdcid) DO UPDATE SET score_entered = excluded.score_entered, "
        "writes = ptg_score.writes + 1, whenmodified = excluded.whenmodified",
        [(*row, _now()) for row in rows],
    )


def ptg_put_scores(app: PowerSchoolApp, request: Request, assignment_id: str) -> Response:
    """Many scores: 200 with a ``batch_result`` per item; refused items (409) are not written, the others are."""
    assignment = _ptg_assignment(app, assignment_id)
    body = _json_body(request)
    wrapper = body.get("assignment_scores") if isinstance(body, dict) else None
    items = wrapper.get("assignment_score") if isinstance(wrapper, dict) else None
    if isinstance(items, dict):  # one score comes as an object, as PowerSchool's single-object quirk
        items = [items]
    if not isinstance(items, list) or not items:
        raise _conflict('the body must be {"assignment_scores": {"assignment_score": [...]}}')
    connection = app.connection()
    results, accepted = [], []
    for item in items:
        student = (item.get("student") or {}).get("id") if isinstance(item, dict) else None
        if not isinstance(item, dict) or "score_entered" not in item:
            results.append(
                {
                    "student": {"id": student},
                    "batch_result": {"code": 409, "message": "each item needs student.id and score_entered"},
                }
            )
            continue
        problem = _ptg_check_score(connection, assignment, student, item["score_entered"])
        if problem:
            results.append({"student": {"id": student}, "batch_result": {"code": 409, "message": problem}})
            continue
        entered = None if item["score_entered"] is None else str(item["score_entered"])
        accepted.append((assignment["id"], _as_int(student), entered))
        results.append({"student": {"id": student}, "batch_result": {"code": 200, "message": "OK"}})
    if accepted:
        app.write(lambda write_connection: _ptg_upsert(write_connection, accepted))
    return json_response(200, {"assignment_scores": {"assignment_score": results}})


def ptg_put_one_score(app: PowerSchoolApp, request: Request, assignment_id: str, student_id: str) -> Response:
    assignment = _ptg_assignment(app, assignment_id)
    body = _json_body(request)
    score = body.get("assignment_score") if isinstance(body, dict) else None
    if not isinstance(score, dict) or "score_entered" not in score:
        raise _conflict('the body must be {"assignment_score": {"score_entered": ...}}')
    problem = _ptg_check_score(app.connection(), assignment, student_id, score["score_entered"])
    if problem:
        raise _conflict(problem)
    exists = (
        app.connection()
        .execute(
            "SELECT 1 FROM ptg_score WHERE assignmentid = ? AND studentsdcid = ?",
            (assignment["id"], _as_int(student_id)),
        )
        .fetchone()
    )
    entered = None if score["score_entered"] is None else str(score["score_entered"])
    app.write(
        lambda write_connection: _ptg_upsert(write_connection, [(assignment["id"], _as_int(student_id), entered)])
    )
    return Response(204 if exists else 201, b"", [])


# --------------------------------------------------------------------------- admin (tests and the demo)


def _admin_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except json.JSONDecodeError as error:
        raise HttpError(400, f"admin request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise HttpError(400, "admin request body must be a JSON object")
    return body


def admin_gradebook_type(app: PowerSchoolApp, request: Request) -> Response:
    """{"section_dcid": N, "gradebooktype": 1|2}: put a section on the legacy gradebook (1) or PowerTeacher Pro (2)."""
    body = _admin_body(request)
    section, kind = _as_int(body.get("section_dcid")), body.get("gradebooktype")
    if section is None or kind not in (PTG_GRADEBOOK, PTP_GRADEBOOK):
        raise HttpError(
            400, "gradebook-type needs section_dcid and gradebooktype 1 (PowerTeacher Gradebook) or 2 (Pro)"
        )
    app.write(
        lambda connection: connection.execute(
            "INSERT INTO section_gradebook (sectionsdcid, gradebooktype) VALUES (?, ?) "
            "ON CONFLICT (sectionsdcid) DO UPDATE SET gradebooktype = excluded.gradebooktype",
            (section, kind),
        )
    )
    return json_response(200, {"section_dcid": section, "gradebooktype": kind})


def admin_teacher_category(app: PowerSchoolApp, request: Request) -> Response:
    """{"users_dcid": N|null, "name": ..., "categorytype": "user"|"district", "isactive": true}: add a category."""
    body = _admin_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HttpError(400, "teacher-category needs a name")

    def insert(connection: sqlite3.Connection) -> int:
        position = connection.execute("SELECT coalesce(max(displayposition), 0) + 1 FROM teachercategory").fetchone()[0]
        return connection.execute(
            "INSERT INTO teachercategory "
            "(users_dcid, name, categorytype, isactive, displayposition, color, description) "
            "VALUES (?, ?, ?, ?, ?, '#000000', '')",
            (
                _as_int(body.get("users_dcid")),
                name,
                body.get("categorytype", "user"),
                1 if body.get("isactive", True) else 0,
                body.get("displayposition", position),
            ),
        ).lastrowid

    return json_response(200, {"id": app.write(insert)})


def admin_ptg_assignments(app: PowerSchoolApp, request: Request) -> Response:
    connection = app.connection()
    raw = request.parameter("section_dcid")
    rows = connection.execute(
        "SELECT * FROM ptg_assignment" + (" WHERE sectionsdcid = ?" if raw else "") + " ORDER BY id",
        (_as_int(raw),) if raw else (),
    ).fetchall()
    return json_response(200, [ptg_assignment_view(connection, row) for row in rows])
