"""The simulator's admin API (``/sandbox/admin``): change the district and the server between runs.

Not part of PowerSchool: it exists so incremental tests and the demo can do what a school
office does between two imports (enroll or drop a student, rename someone, deactivate a
teacher, add a section), turn faults on and off, expire tokens, count the requests a client
made and read back what the grade push wrote to PowerTeacher Pro. Every call needs the
``X-Sandbox-Admin-Token`` header (the token is printed at start and known to testing.py).
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import TYPE_CHECKING, Any

from sandbox.powerschool import powerteacher
from sandbox.powerschool.options import OptionsError
from sandbox.powerschool.routing import HttpError, Request, Response, Route, json_response

if TYPE_CHECKING:
    from sandbox.powerschool.server import PowerSchoolApp


def routes(app: PowerSchoolApp) -> list[Route]:
    admin = Admin(app)
    table = [
        ("GET", "info", admin.info),
        ("POST", "options", admin.configure),
        ("POST", "expire-tokens", admin.expire_tokens),
        ("GET", "tokens", admin.tokens),
        ("GET", "requests", admin.requests),
        ("DELETE", "requests", admin.reset_requests),
        ("POST", "enroll", admin.enroll),
        ("POST", "drop", admin.drop),
        ("POST", "rename", admin.rename),
        ("POST", "student-status", admin.student_status),
        ("POST", "deactivate-teacher", admin.deactivate_teacher),
        ("POST", "sections", admin.add_section),
        ("GET", "assignments", admin.assignments),
        ("GET", "scores", admin.scores),
        ("POST", "students", admin.add_student),
        ("POST", "teachers", admin.add_teacher),
        ("POST", "rekey", admin.rekey),
    ]
    return [
        Route(method, re.compile(rf"^/sandbox/admin/{name}/?$"), handler, "admin") for method, name, handler in table
    ]


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except json.JSONDecodeError as error:
        raise HttpError(400, f"admin request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise HttpError(400, "admin request body must be a JSON object")
    return body


def _required(body: dict[str, Any], *names: str) -> list[Any]:
    missing = [name for name in names if body.get(name) in (None, "")]
    if missing:
        raise HttpError(400, f"missing field(s): {', '.join(missing)}")
    return [body[name] for name in names]


def _one(connection: sqlite3.Connection, sql: str, parameters: tuple[Any, ...], what: str) -> sqlite3.Row:
    row = connection.execute(sql, parameters).fetchone()
    if row is None:
        raise HttpError(404, f"{what} not found")
    return row


class Admin:
    def __init__(self, app: PowerSchoolApp):
        self.app = app

    def info(self, request: Request) -> Response:
        return json_response(
            200,
            {
                "dataset": self.app.dataset_info,
                "client_id": self.app.client_id,
                "options": self.app.options.as_dict(),
                "database": str(self.app.database_path),
            },
        )

    def configure(self, request: Request) -> Response:
        try:
            options = self.app.options.update(_body(request))
        except OptionsError as error:
            raise HttpError(400, str(error)) from error
        with self.app.lock:
            if options.fault_seed != self.app.options.fault_seed:
                self.app.fault_random.seed(options.fault_seed)
            self.app.options = options
            self.app.last_request_at.clear()
        return json_response(200, options.as_dict())

    def expire_tokens(self, request: Request) -> Response:
        return json_response(200, {"expired": self.app.expire_tokens()})

    def tokens(self, request: Request) -> Response:
        """Every access token issued since start (the soak searches logs and tables for them)."""
        with self.app.lock:
            return json_response(200, {"tokens": sorted(self.app.tokens)})

    def requests(self, request: Request) -> Response:
        after = int(request.parameter("after") or 0)
        with self.app.lock:
            log = [entry for entry in self.app.request_log if entry["sequence"] > after]
            counts = dict(self.app.request_counts)
        return json_response(200, {"counts": counts, "requests": log})

    def reset_requests(self, request: Request) -> Response:
        with self.app.lock:
            self.app.request_log.clear()
            self.app.request_counts.clear()
        return json_response(200, {"reset": True})

    def enroll(self, request: Request) -> Response:
        body = _body(request)
        student_dcid, section_dcid = _required(body, "student_dcid", "section_dcid")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            student = _one(
                connection, "SELECT id FROM students WHERE dcid = ?", (student_dcid,), f"student {student_dcid}"
            )
            section = _one(
                connection,
                "SELECT se.id, se.schoolid, se.termid, tm.firstday, tm.lastday FROM sections se "
                "LEFT JOIN terms tm ON tm.schoolid = se.schoolid AND tm.id = se.termid "
                "WHERE se.dcid = ?",
                (section_dcid,),
                f"section {section_dcid}",
            )
            cc_id, cc_dcid = connection.execute(
                "SELECT coalesce(max(id), 0) + 1, coalesce(max(dcid), 0) + 1 FROM cc"
            ).fetchone()
            connection.execute(
                "INSERT INTO cc (id, dcid, studentid, sectionid, schoolid, termid, dateenrolled, dateleft) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (
                    cc_id,
                    cc_dcid,
                    student["id"],
                    section["id"],
                    section["schoolid"],
                    section["termid"],
                    body.get("dateenrolled") or section["firstday"],
                    body.get("dateleft") or section["lastday"],
                ),
            )
            return {"cc_id": cc_id, "cc_dcid": cc_dcid}

        return json_response(200, self.app.write(write))

    def drop(self, request: Request) -> Response:
        body = _body(request)
        student_dcid, section_dcid = _required(body, "student_dcid", "section_dcid")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            student = _one(
                connection, "SELECT id FROM students WHERE dcid = ?", (student_dcid,), f"student {student_dcid}"
            )
            section = _one(
                connection, "SELECT id FROM sections WHERE dcid = ?", (section_dcid,), f"section {section_dcid}"
            )
            # As PowerSchool does: a dropped enrollment keeps its row with a negative SectionID.
            cursor = connection.execute(
                "UPDATE cc SET sectionid = -sectionid, dateleft = coalesce(?, dateleft) "
                "WHERE studentid = ? AND sectionid = ?",
                (body.get("dateleft"), student["id"], section["id"]),
            )
            if cursor.rowcount == 0:
                raise HttpError(404, f"student {student_dcid} has no active enrollment in section {section_dcid}")
            return {"dropped": cursor.rowcount}

        return json_response(200, self.app.write(write))

    RENAMABLE = {
        "student": ("students", "dcid", {"first_name", "middle_name", "last_name", "student_web_id", "email"}),
        "teacher": (
            "teachers",
            "dcid",
            {"first_name", "middle_name", "last_name", "teacherloginid", "loginid", "email_addr"},
        ),
        "guardian": ("guardian", "guardianid", {"firstname", "lastname"}),
        "school": ("schools", "dcid", {"name", "abbreviation"}),
        "course": ("courses", "dcid", {"course_name"}),
        "section": ("sections", "dcid", {"section_number", "expression", "external_expression"}),
    }

    def rename(self, request: Request) -> Response:
        """Change names (or usernames, emails) of one record: {"entity", "id", "changes": {...}}."""
        body = _body(request)
        entity, record_id, changes = _required(body, "entity", "id", "changes")
        if entity not in self.RENAMABLE:
            raise HttpError(400, f"entity must be one of {', '.join(self.RENAMABLE)}")
        table, key, allowed = self.RENAMABLE[entity]
        if not isinstance(changes, dict) or not changes or set(changes) - allowed:
            raise HttpError(400, f"changes must be an object with some of: {', '.join(sorted(allowed))}")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            cursor = connection.execute(
                f"UPDATE {table} SET {assignments} WHERE {key} = ?", (*changes.values(), record_id)
            )
            if cursor.rowcount == 0:
                raise HttpError(404, f"{entity} {record_id} not found")
            return {"updated": cursor.rowcount}

        return json_response(200, self.app.write(write))

    def student_status(self, request: Request) -> Response:
        body = _body(request)
        student_dcid, status = _required(body, "student_dcid", "enroll_status")
        if status not in (0, -1, 2, 3, 4):
            raise HttpError(400, "enroll_status must be one of 0, -1, 2, 3, 4")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            cursor = connection.execute(
                "UPDATE students SET enroll_status = ?, exitdate = coalesce(?, exitdate) WHERE dcid = ?",
                (status, body.get("exitdate"), student_dcid),
            )
            if cursor.rowcount == 0:
                raise HttpError(404, f"student {student_dcid} not found")
            return {"updated": cursor.rowcount}

        return json_response(200, self.app.write(write))

    def deactivate_teacher(self, request: Request) -> Response:
        (teacher_dcid,) = _required(_body(request), "teacher_dcid")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            cursor = connection.execute("UPDATE teachers SET status = 2 WHERE dcid = ?", (teacher_dcid,))
            if cursor.rowcount == 0:
                raise HttpError(404, f"teacher {teacher_dcid} not found")
            return {"updated": cursor.rowcount}

        return json_response(200, self.app.write(write))

    def add_section(self, request: Request) -> Response:
        """Add a section: {"school_dcid", "course_number", "term_id" (Terms.ID, e.g. 3500), "teacher_dcid"?,
        "section_number"?, "expression"?, "co_teacher_dcids"?: [...]}."""
        body = _body(request)
        school_dcid, course_number, term_id = _required(body, "school_dcid", "course_number", "term_id")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            school = _one(
                connection, "SELECT school_number FROM schools WHERE dcid = ?", (school_dcid,), f"school {school_dcid}"
            )
            number = school["school_number"]
            _one(
                connection,
                "SELECT 1 FROM courses WHERE schoolid = ? AND course_number = ?",
                (number, course_number),
                f"course {course_number} in school {school_dcid}",
            )
            term = _one(
                connection,
                "SELECT firstday, lastday FROM terms WHERE schoolid = ? AND id = ?",
                (number, term_id),
                f"term {term_id} in school {school_dcid}",
            )
            lead = 0
            if body.get("teacher_dcid"):
                lead = _one(
                    connection,
                    "SELECT id FROM teachers WHERE dcid = ?",
                    (body["teacher_dcid"],),
                    f"teacher {body['teacher_dcid']}",
                )["id"]
            section_id, section_dcid = connection.execute(
                "SELECT coalesce(max(id), 0) + 1, coalesce(max(dcid), 0) + 1 FROM sections"
            ).fetchone()
            expression = body.get("expression") or "1(A)"
            connection.execute(
                "INSERT INTO sections (id, dcid, schoolid, course_number, section_number, expression, "
                "external_expression, termid, teacher) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    section_id,
                    section_dcid,
                    number,
                    course_number,
                    str(body.get("section_number") or section_id),
                    expression,
                    expression.replace("(A)", ""),
                    term_id,
                    lead,
                ),
            )
            teachers = [(lead, 1)] if lead else []
            for co_dcid in body.get("co_teacher_dcids") or []:
                teachers.append(
                    (
                        _one(connection, "SELECT id FROM teachers WHERE dcid = ?", (co_dcid,), f"teacher {co_dcid}")[
                            "id"
                        ],
                        2,
                    )
                )
            for teacher_id, role in teachers:
                connection.execute(
                    "INSERT INTO sectionteacher (sectionid, teacherid, roleid, start_date, end_date, allocation, "
                    "priorityorder) VALUES (?,?,?,?,?,1,?)",
                    (section_id, teacher_id, role, term["firstday"], term["lastday"], 1 if role == 1 else 2),
                )
            return {"section_id": section_id, "section_dcid": section_dcid}

        return json_response(200, self.app.write(write))

    def add_student(self, request: Request) -> Response:
        """A new student: {"school_dcid", "first_name", "last_name", "grade_level"?, "student_web_id"?,
        "email"?, "enroll_status"? (default 0), "entrydate"?}; returns {"id", "dcid", "student_number"}."""
        body = _body(request)
        school_dcid, first_name, last_name = _required(body, "school_dcid", "first_name", "last_name")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            school = _one(
                connection,
                "SELECT school_number, low_grade FROM schools WHERE dcid = ?",
                (school_dcid,),
                f"school {school_dcid}",
            )
            student_id, dcid = connection.execute(
                "SELECT coalesce(max(id), 0) + 1, coalesce(max(dcid), 0) + 1 FROM students"
            ).fetchone()
            number = str(
                connection.execute(
                    "SELECT coalesce(max(CAST(student_number AS INTEGER)), 0) + 1 FROM students"
                ).fetchone()[0]
            )
            connection.execute(
                "INSERT INTO students (id, dcid, student_number, first_name, middle_name, last_name, student_web_id, "
                "schoolid, grade_level, enroll_status, entrydate, exitdate, email) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    student_id,
                    dcid,
                    number,
                    first_name,
                    body.get("middle_name"),
                    last_name,
                    body.get("student_web_id"),
                    school["school_number"],
                    body.get("grade_level", school["low_grade"]),
                    body.get("enroll_status", 0),
                    body.get("entrydate"),
                    body.get("exitdate"),
                    body.get("email"),
                ),
            )
            return {"id": student_id, "dcid": dcid, "student_number": number}

        return json_response(200, self.app.write(write))

    def add_teacher(self, request: Request) -> Response:
        """A new active staff member: {"school_dcid", "first_name", "last_name", "teacherloginid"?, "loginid"?,
        "email_addr"?}; returns {"id", "dcid", "users_dcid"}."""
        body = _body(request)
        school_dcid, first_name, last_name = _required(body, "school_dcid", "first_name", "last_name")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            school = _one(
                connection, "SELECT school_number FROM schools WHERE dcid = ?", (school_dcid,), f"school {school_dcid}"
            )
            teacher_id, dcid, users_dcid = connection.execute(
                "SELECT coalesce(max(id), 0) + 1, coalesce(max(dcid), 0) + 1, coalesce(max(users_dcid), 0) + 1 "
                "FROM teachers"
            ).fetchone()
            connection.execute(
                "INSERT INTO teachers (id, dcid, users_dcid, schoolid, first_name, last_name, middle_name, "
                "teacherloginid, loginid, email_addr, status, staffstatus) VALUES (?,?,?,?,?,?,?,?,?,?,1,1)",
                (
                    teacher_id,
                    dcid,
                    users_dcid,
                    school["school_number"],
                    first_name,
                    last_name,
                    body.get("middle_name"),
                    body.get("teacherloginid"),
                    body.get("loginid", body.get("teacherloginid")),
                    body.get("email_addr"),
                ),
            )
            connection.execute(
                "INSERT INTO teacher_schools (teacherid, schoolid) VALUES (?, ?)", (teacher_id, school["school_number"])
            )
            return {"id": teacher_id, "dcid": dcid, "users_dcid": users_dcid}

        return json_response(200, self.app.write(write))

    def rekey(self, request: Request) -> Response:
        """Give ``count`` students (or teachers) new DCIDs, as a mid-year change of import IDs would.

        The source document warns that changing import IDs mid-year is dangerous; this lets a
        test show the pipeline noticing "many users vanish while as many new ones appear".
        Body: {"entity": "students"|"teachers", "count": N}; the first N by DCID are re-keyed.
        Answers {"changed": [[old, new], ...]}.
        """
        body = _body(request)
        entity, count = _required(body, "entity", "count")
        if entity not in ("students", "teachers") or not isinstance(count, int) or count < 1:
            raise HttpError(400, "rekey needs entity 'students' or 'teachers' and a positive integer count")

        def write(connection: sqlite3.Connection) -> dict[str, Any]:
            old = [row[0] for row in connection.execute(f"SELECT dcid FROM {entity} ORDER BY dcid LIMIT ?", (count,))]
            start = connection.execute(f"SELECT max(dcid) FROM {entity}").fetchone()[0] + 1
            changed = [(dcid, start + index) for index, dcid in enumerate(old)]
            connection.executemany(
                f"UPDATE {entity} SET dcid = ? WHERE dcid = ?", [(new, dcid) for dcid, new in changed]
            )
            if entity == "students":
                connection.executemany(
                    "UPDATE guardianstudent SET studentsdcid = ? WHERE studentsdcid = ?",
                    [(new, dcid) for dcid, new in changed],
                )
            return {"changed": changed}

        return json_response(200, self.app.write(write))

    def assignments(self, request: Request) -> Response:
        raw = request.parameter("section_dcid")
        connection = self.app.connection()
        if raw:
            sections = [int(raw)]
        else:
            sections = [row[0] for row in connection.execute("SELECT DISTINCT sectionsdcid FROM assignmentsection")]
        return json_response(200, powerteacher.assignments_for_sections(connection, sections))

    def scores(self, request: Request) -> Response:
        sql = (
            "SELECT s.assignmentsectionid, s.studentsdcid, s.actualscoreentered, s.actualscorekind, s.scorepoints, "
            "s.writes, s.whenmodified, a.sectionsdcid, a.assignmentid FROM assignmentscore s "
            "JOIN assignmentsection a ON a.id = s.assignmentsectionid"
        )
        parameters: list[Any] = []
        if request.parameter("assignmentsectionid"):
            sql += " WHERE s.assignmentsectionid = ?"
            parameters.append(int(request.parameter("assignmentsectionid") or 0))
        elif request.parameter("section_dcid"):
            sql += " WHERE a.sectionsdcid = ?"
            parameters.append(int(request.parameter("section_dcid") or 0))
        rows = self.app.connection().execute(sql + " ORDER BY s.assignmentsectionid, s.studentsdcid", parameters)
        return json_response(200, [dict(row) for row in rows])
