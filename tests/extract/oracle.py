"""What extract should stage, computed straight from the sandbox's SIS tables (the test oracle).

Each entity is a sorted list of tuples of the columns users rely on, read from the
dataset's SQLite file with SQL that restates the import rules independently of the
extract code; the staged side is read from the staging database in the same shape.
Comparing the two gives row counts and a checksum per entity.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from sandbox.powerschool.store import DatasetStore
from sis_learning.staging.source import STAGED_SOURCE_TABLES

# The staged columns compared per entity, in tuple order.
STAGED_COLUMNS = {
    "schools": ("school_id", "school_number", "name"),
    "terms": ("term_id", "local_id", "school_id", "name", "start_year", "start_date", "end_date"),
    "courses": ("course_id", "school_id", "course_number", "course_name"),
    "sections": ("section_id", "school_id", "course_id", "term_id", "section_number", "expression", "staff_id"),
    "staff": ("staff_id", "local_id", "first_name", "last_name", "teacher_username", "email"),
    "students": (
        "student_id",
        "student_number",
        "first_name",
        "last_name",
        "student_username",
        "email",
        "school_id",
        "grade_level",
        "enroll_status_code",
    ),
    "section_enrollments": ("enrollment_id", "section_id", "student_id", "dropped"),
    "section_teachers": ("section_id", "staff_id", "role"),
    "guardians": ("guardian_id", "student_id", "first_name", "last_name", "portal_username", "email"),
}


def _text(value: Any) -> str | None:
    """A text value as extract stages it: surrounding spaces trimmed, empty = null."""
    if value is None:
        return None
    return str(value).strip() or None


def expected_rows(dataset_path, import_start_year: int) -> dict[str, list[tuple]]:
    """Every entity as extract must stage it for a district importing all its schools."""
    first_term_id = (import_start_year - 1990) * 100
    with DatasetStore(dataset_path) as store:
        query = store.query
        school_dcid = {row["school_number"]: row["dcid"] for row in query("SELECT school_number, dcid FROM schools")}
        expected: dict[str, list[tuple]] = {}
        expected["schools"] = [
            (str(row["dcid"]), str(row["school_number"]), row["name"]) for row in query("SELECT * FROM schools")
        ]
        expected["terms"] = [
            (
                str(row["dcid"]),
                str(row["id"]),
                str(school_dcid[row["schoolid"]]),
                row["name"],
                row["yearid"] + 1990,
                _text(row["firstday"]),
                _text(row["lastday"]),
            )
            for row in query("SELECT * FROM terms")
        ]
        expected["courses"] = [
            (str(row["dcid"]), str(school_dcid[row["schoolid"]]), row["course_number"], row["course_name"])
            for row in query("SELECT * FROM courses")
        ]
        expected["sections"] = [
            (
                str(row["dcid"]),
                str(school_dcid[row["schoolid"]]),
                _text(row["course_dcid"]),
                str(row["term_dcid"]),
                _text(row["section_number"]),
                _text(row["expression"]),
                _text(row["lead_dcid"]),
            )
            for row in query(
                "SELECT se.*, c.dcid AS course_dcid, tm.dcid AS term_dcid, t.dcid AS lead_dcid FROM sections se "
                "JOIN terms tm ON tm.schoolid = se.schoolid AND tm.id = se.termid "
                "LEFT JOIN courses c ON c.schoolid = se.schoolid AND c.course_number = se.course_number "
                "LEFT JOIN teachers t ON t.id = se.teacher AND se.teacher <> 0 "
                "WHERE tm.yearid + 1990 >= ?",
                (import_start_year,),
            )
        ]
        expected["staff"] = [
            (
                str(row["dcid"]),
                str(row["id"]),
                _text(row["first_name"]),
                _text(row["last_name"]),
                _text(row["teacherloginid"]),
                _text(row["email_addr"]),
            )
            for row in query(
                "SELECT * FROM teachers WHERE status = 1 AND id IN (SELECT teacherid FROM teacher_schools)"
            )
        ]
        expected["students"] = [
            (
                str(row["dcid"]),
                _text(row["student_number"]),
                _text(row["first_name"]),
                _text(row["last_name"]),
                _text(row["student_web_id"]),
                _text(row["email"]),
                str(school_dcid[row["schoolid"]]),
                row["grade_level"],
                row["enroll_status"],
            )
            for row in query("SELECT * FROM students WHERE enroll_status = 0")
        ]
        expected["section_enrollments"] = [
            (str(row["dcid"]), str(row["section_dcid"]), str(row["student_dcid"]), row["sectionid"] < 0)
            for row in query(
                "SELECT cc.dcid, cc.sectionid, se.dcid AS section_dcid, st.dcid AS student_dcid FROM cc "
                "JOIN sections se ON se.id = abs(cc.sectionid) "
                "JOIN terms tm ON tm.schoolid = se.schoolid AND tm.id = se.termid "
                "JOIN students st ON st.id = cc.studentid "
                "WHERE st.enroll_status = 0 AND cc.termid >= ? AND tm.yearid + 1990 >= ?",
                (first_term_id, import_start_year),
            )
        ]
        expected["section_teachers"] = [
            (str(row["section_dcid"]), str(row["teacher_dcid"]), row["role"])
            for row in query(
                "SELECT se.dcid AS section_dcid, t.dcid AS teacher_dcid, r.name AS role FROM sectionteacher st "
                "JOIN sections se ON se.id = st.sectionid "
                "JOIN terms tm ON tm.schoolid = se.schoolid AND tm.id = se.termid "
                "JOIN teachers t ON t.id = st.teacherid JOIN roledef r ON r.id = st.roleid "
                "WHERE t.status = 1 AND tm.yearid + 1990 >= ?",
                (import_start_year,),
            )
        ]
        expected["guardians"] = [
            (
                str(row["guardianid"]),
                str(row["studentsdcid"]),
                _text(row["firstname"]),
                _text(row["lastname"]),
                _text(row["username"]),
                _text(row["emailaddress"]),
            )
            for row in query(
                "SELECT gs.guardianid, gs.studentsdcid, g.firstname, g.lastname, pa.username, "
                "(SELECT pe.emailaddress FROM pcas_emailcontact pe WHERE pe.pcas_accounttoken = g.accountidentifier "
                " ORDER BY pe.rowid LIMIT 1) AS emailaddress "
                "FROM guardianstudent gs JOIN guardian g ON g.guardianid = gs.guardianid "
                "LEFT JOIN pcas_account pa ON pa.pcas_accounttoken = g.accountidentifier "
                "WHERE gs.studentsdcid IN (SELECT dcid FROM students WHERE enroll_status = 0)"
            )
        ]
    return {entity: sorted(rows, key=repr) for entity, rows in expected.items()}


def staged_rows(engine: Engine, district_id: str, run_id: str, entity: str) -> list[tuple]:
    table = STAGED_SOURCE_TABLES[entity].__table__
    columns = [table.c[name] for name in STAGED_COLUMNS[entity]]
    query = select(*columns).where(table.c.district_id == district_id, table.c.run_id == run_id)
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(query)]
    return sorted(rows, key=repr)


def checksum(rows: list[tuple]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()
