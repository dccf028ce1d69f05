"""The simulator's dataset: PowerSchool SIS tables in one SQLite file, and how to find or build it.

The tables follow "The PowerSchool data model the sandbox serves" in docs/architecture.md
(lower-case SIS table and column names, internal ``id`` beside ``dcid``, negative
``cc.sectionid`` for a dropped enrollment, SectionTeacher + RoleDef for co-teachers,
Guardian/GuardianStudent/PCAS_Account/PCAS_EmailContact for parents). A dataset is
generated once per (size, seed, generator version) under ``.sandbox/datasets`` and reused;
the server serves a private working copy so admin changes and PowerTeacher writes never
alter the cached file.

``DatasetStore(path).rows("students")`` reads a dataset directly, for test oracles;
``datasets.resolve_dataset`` finds or builds a dataset file (it sits above this module,
the generator and the fixture loader, which all write through this one).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATASET_DIR = Path(os.environ.get("SANDBOX_DATASET_DIR") or REPOSITORY_ROOT / ".sandbox" / "datasets")

# Columns of every SIS table, in fixture order. ``teachers.school_affiliations`` is a list in
# the fixture and the ``teacher_schools`` table here (one row per affiliated school number).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "schools": ("id", "dcid", "school_number", "name", "abbreviation", "low_grade", "high_grade"),
    "terms": (
        "id",
        "dcid",
        "schoolid",
        "name",
        "abbreviation",
        "firstday",
        "lastday",
        "yearid",
        "portion",
        "isyearrec",
    ),
    "courses": ("id", "dcid", "course_number", "course_name", "schoolid"),
    "sections": (
        "id",
        "dcid",
        "schoolid",
        "course_number",
        "section_number",
        "expression",
        "external_expression",
        "termid",
        "teacher",
    ),
    "roledef": ("id", "name"),
    "sectionteacher": (
        "id",
        "sectionid",
        "teacherid",
        "roleid",
        "start_date",
        "end_date",
        "allocation",
        "priorityorder",
    ),
    "teachers": (
        "id",
        "dcid",
        "users_dcid",
        "schoolid",
        "first_name",
        "last_name",
        "middle_name",
        "teacherloginid",
        "loginid",
        "email_addr",
        "status",
        "staffstatus",
    ),
    "students": (
        "id",
        "dcid",
        "student_number",
        "first_name",
        "middle_name",
        "last_name",
        "student_web_id",
        "schoolid",
        "grade_level",
        "enroll_status",
        "entrydate",
        "exitdate",
        "email",
    ),
    "cc": ("id", "dcid", "studentid", "sectionid", "schoolid", "termid", "dateenrolled", "dateleft"),
    "guardian": ("guardianid", "firstname", "lastname", "accountidentifier"),
    "guardianstudent": ("guardianid", "studentsdcid", "relationship"),
    "pcas_account": ("pcas_accounttoken", "username", "isenabled"),
    "pcas_emailcontact": ("pcas_accounttoken", "emailaddress"),
    "teachercategory": (
        "id",
        "users_dcid",
        "name",
        "categorytype",
        "isactive",
        "displayposition",
        "color",
        "description",
    ),
}
SIS_TABLES = tuple(TABLE_COLUMNS)

# The change cursors the real API offers on tables ("Reading only what changed" in
# ../shared/docs/powerschool-api.md): most tables have ``whenmodified``, ``students`` has
# ``transaction_date`` instead. The working copy keeps them with triggers (see
# ``track_changes``), so every insert or update, through the admin API or straight into the
# working copy, moves them; a hard delete leaves nothing behind, as in PowerSchool, so a
# cursor read never sees it. Rows of the generated dataset carry no cursor value (NULL:
# "before anything the simulator changed").
CHANGE_CURSORS: dict[str, str] = {
    "schools": "whenmodified",
    "terms": "whenmodified",
    "courses": "whenmodified",
    "sections": "whenmodified",
    "sectionteacher": "whenmodified",
    "teachers": "whenmodified",
    "students": "transaction_date",
    "cc": "whenmodified",
    "guardian": "whenmodified",
    "guardianstudent": "whenmodified",
}
CURSOR_CLOCK = "strftime('%Y-%m-%d %H:%M:%S', 'now')"  # UTC, second resolution

SCHEMA = """
CREATE TABLE dataset_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE schools (id INTEGER NOT NULL UNIQUE, dcid INTEGER PRIMARY KEY, school_number INTEGER NOT NULL UNIQUE,
    name TEXT NOT NULL, abbreviation TEXT, low_grade INTEGER, high_grade INTEGER);
CREATE TABLE terms (id INTEGER NOT NULL, dcid INTEGER PRIMARY KEY, schoolid INTEGER NOT NULL, name TEXT,
    abbreviation TEXT, firstday TEXT, lastday TEXT, yearid INTEGER NOT NULL, portion INTEGER, isyearrec INTEGER,
    UNIQUE (schoolid, id));
CREATE TABLE courses (id INTEGER NOT NULL UNIQUE, dcid INTEGER PRIMARY KEY, course_number TEXT NOT NULL,
    course_name TEXT, schoolid INTEGER NOT NULL, UNIQUE (schoolid, course_number));
CREATE TABLE sections (id INTEGER NOT NULL UNIQUE, dcid INTEGER PRIMARY KEY, schoolid INTEGER NOT NULL,
    course_number TEXT NOT NULL, section_number TEXT, expression TEXT, external_expression TEXT,
    termid INTEGER NOT NULL, teacher INTEGER NOT NULL DEFAULT 0);
CREATE TABLE roledef (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE sectionteacher (id INTEGER PRIMARY KEY, sectionid INTEGER NOT NULL, teacherid INTEGER NOT NULL,
    roleid INTEGER NOT NULL, start_date TEXT, end_date TEXT, allocation REAL, priorityorder INTEGER);
CREATE TABLE teachers (id INTEGER NOT NULL UNIQUE, dcid INTEGER PRIMARY KEY, users_dcid INTEGER NOT NULL,
    schoolid INTEGER, first_name TEXT, last_name TEXT, middle_name TEXT, teacherloginid TEXT, loginid TEXT,
    email_addr TEXT, status INTEGER NOT NULL, staffstatus INTEGER);
CREATE TABLE teacher_schools (teacherid INTEGER NOT NULL, schoolid INTEGER NOT NULL, PRIMARY KEY (schoolid, teacherid));
CREATE TABLE students (id INTEGER NOT NULL UNIQUE, dcid INTEGER PRIMARY KEY, student_number TEXT,
    first_name TEXT, middle_name TEXT, last_name TEXT, student_web_id TEXT, schoolid INTEGER NOT NULL,
    grade_level INTEGER, enroll_status INTEGER NOT NULL, entrydate TEXT, exitdate TEXT, email TEXT);
CREATE TABLE cc (id INTEGER NOT NULL UNIQUE, dcid INTEGER PRIMARY KEY, studentid INTEGER NOT NULL,
    sectionid INTEGER NOT NULL, schoolid INTEGER, termid INTEGER, dateenrolled TEXT, dateleft TEXT);
CREATE TABLE guardian (guardianid INTEGER PRIMARY KEY, firstname TEXT, lastname TEXT, accountidentifier TEXT);
CREATE TABLE guardianstudent (guardianid INTEGER NOT NULL, studentsdcid INTEGER NOT NULL, relationship TEXT);
CREATE TABLE pcas_account (pcas_accounttoken TEXT PRIMARY KEY, username TEXT, isenabled INTEGER);
CREATE TABLE pcas_emailcontact (pcas_accounttoken TEXT NOT NULL, emailaddress TEXT);
CREATE TABLE teachercategory (id INTEGER PRIMARY KEY, users_dcid INTEGER, name TEXT NOT NULL,
    categorytype TEXT NOT NULL, isactive INTEGER NOT NULL DEFAULT 1, displayposition INTEGER, color TEXT,
    description TEXT);
"""

# Created after a bulk load (faster than maintaining them row by row).
INDEXES = """
CREATE INDEX IF NOT EXISTS students_by_school ON students (schoolid, dcid);
CREATE INDEX IF NOT EXISTS sections_by_school ON sections (schoolid, dcid);
CREATE INDEX IF NOT EXISTS sections_by_term ON sections (schoolid, termid);
CREATE INDEX IF NOT EXISTS courses_by_number ON courses (schoolid, course_number);
CREATE INDEX IF NOT EXISTS cc_by_section ON cc (sectionid, dcid);
CREATE INDEX IF NOT EXISTS cc_by_student ON cc (studentid);
CREATE INDEX IF NOT EXISTS sectionteacher_by_section ON sectionteacher (sectionid);
CREATE INDEX IF NOT EXISTS sectionteacher_by_teacher ON sectionteacher (teacherid);
CREATE INDEX IF NOT EXISTS guardianstudent_by_student ON guardianstudent (studentsdcid);
CREATE INDEX IF NOT EXISTS guardianstudent_by_guardian ON guardianstudent (guardianid);
CREATE INDEX IF NOT EXISTS emailcontact_by_account ON pcas_emailcontact (pcas_accounttoken);
CREATE INDEX IF NOT EXISTS teachers_by_users_dcid ON teachers (users_dcid);
"""

# PowerTeacher Pro's writes (grade push) land here, in the working copy only.
POWERTEACHER_SCHEMA = """
CREATE TABLE IF NOT EXISTS assignment (id INTEGER PRIMARY KEY, users_dcid INTEGER NOT NULL,
    standardcalcdirection TEXT, created_at TEXT NOT NULL, name TEXT, updated_at TEXT,
    updates INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS assignmentsection (id INTEGER PRIMARY KEY, assignmentid INTEGER NOT NULL,
    sectionsdcid INTEGER NOT NULL, name TEXT NOT NULL, description TEXT, duedate TEXT, scoretype TEXT,
    scoreentrypoints REAL, totalpointvalue REAL, weight REAL, extracreditpoints REAL, publishoption TEXT,
    teachercategoryid INTEGER, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS assignmentsection_by_section ON assignmentsection (sectionsdcid);
CREATE TABLE IF NOT EXISTS assignmentscore (assignmentsectionid INTEGER NOT NULL, studentsdcid INTEGER NOT NULL,
    actualscoreentered TEXT, actualscorekind TEXT, scorepoints REAL, payload TEXT NOT NULL,
    writes INTEGER NOT NULL DEFAULT 1, whenmodified TEXT NOT NULL, PRIMARY KEY (assignmentsectionid, studentsdcid));
-- Sections.GradebookType: 2 = PowerTeacher Pro (the default: no row), 1 = the legacy PowerTeacher Gradebook.
CREATE TABLE IF NOT EXISTS section_gradebook (sectionsdcid INTEGER PRIMARY KEY, gradebooktype INTEGER NOT NULL);
-- The legacy PowerTeacher Gradebook's assignments and scores (/powerschool-ptg-api/v2).
CREATE TABLE IF NOT EXISTS ptg_assignment (id INTEGER PRIMARY KEY, sectionsdcid INTEGER NOT NULL, name TEXT NOT NULL,
    abbreviation TEXT, description TEXT, date_assignment_due TEXT, points_possible REAL, category TEXT NOT NULL,
    payload TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT, updates INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ptg_score (assignmentid INTEGER NOT NULL, studentsdcid INTEGER NOT NULL,
    score_entered TEXT, writes INTEGER NOT NULL DEFAULT 1, whenmodified TEXT NOT NULL,
    PRIMARY KEY (assignmentid, studentsdcid));
"""

ROLE_NAMES = {1: "Lead Teacher", 2: "Co-teacher", 3: "Support Staff"}


class DatasetError(ValueError):
    """A dataset name, path or fixture that cannot be used; the message says what to fix."""


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open a dataset file; rows come back as ``sqlite3.Row``."""
    if read_only:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        connection = sqlite3.connect(path, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA busy_timeout = 10000")
    return connection


def create_schema(connection: sqlite3.Connection) -> None:
    connection.executescript(SCHEMA)


def create_indexes(connection: sqlite3.Connection) -> None:
    connection.executescript(INDEXES)


def write_info(connection: sqlite3.Connection, info: dict[str, Any]) -> None:
    connection.executemany(
        "INSERT OR REPLACE INTO dataset_info (key, value) VALUES (?, ?)",
        [(key, json.dumps(value)) for key, value in info.items()],
    )


class DatasetStore:
    """Read access to one dataset file, for test oracles and scripts (the server has its own)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"dataset file {self.path} does not exist")
        self._connection = connect(self.path, read_only=True)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> DatasetStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        """The dataset's description: name, seed, size, district name, domains, import start year, ..."""
        return {row["key"]: json.loads(row["value"]) for row in self._connection.execute("SELECT * FROM dataset_info")}

    def rows(self, table: str, where: str = "", parameters: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
        """Every row of a SIS table (columns as in the fixture format), in primary-key order.

        ``where`` is an optional SQL condition for oracles, e.g. ``rows("cc", "sectionid > 0")``.
        ``teachers`` rows carry ``school_affiliations`` (list of school numbers) as in the fixture.
        """
        if table not in TABLE_COLUMNS and table not in (
            "assignment",
            "assignmentsection",
            "assignmentscore",
            "ptg_assignment",
            "ptg_score",
        ):
            raise DatasetError(f"unknown table {table!r}; known: {', '.join(SIS_TABLES)}")
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "") + " ORDER BY rowid"
        affiliations: dict[int, list[int]] = {}
        if table == "teachers":
            for row in self._connection.execute("SELECT teacherid, schoolid FROM teacher_schools ORDER BY schoolid"):
                affiliations.setdefault(row["teacherid"], []).append(row["schoolid"])
        for row in self._connection.execute(sql, parameters):
            record = dict(row)
            if table == "teachers":
                record["school_affiliations"] = affiliations.get(record["id"], [])
            yield record

    def count(self, table: str, where: str = "", parameters: tuple[Any, ...] = ()) -> int:
        if table not in TABLE_COLUMNS and table not in (
            "assignment",
            "assignmentsection",
            "assignmentscore",
            "ptg_assignment",
            "ptg_score",
        ):
            raise DatasetError(f"unknown table {table!r}")
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        return self._connection.execute(sql, parameters).fetchone()[0]

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Any read-only SQL over the dataset (the connection is opened read-only)."""
        return [dict(row) for row in self._connection.execute(sql, parameters)]


def make_working_copy(dataset_path: Path, directory: Path) -> Path:
    """Copy a dataset for one server run; the copy takes admin changes and PowerTeacher writes."""
    directory.mkdir(parents=True, exist_ok=True)
    working = directory / "working.sqlite"
    shutil.copyfile(dataset_path, working)
    connection = sqlite3.connect(working)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.executescript(POWERTEACHER_SCHEMA)
        track_changes(connection)
        connection.commit()
    finally:
        connection.close()
    return working


def track_changes(connection: sqlite3.Connection) -> None:
    """Add each table's change cursor column and the triggers that keep it (idempotent)."""
    for table, column in CHANGE_CURSORS.items():
        existing = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if not existing:
            continue
        if column not in existing:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
        connection.executescript(f"""
            CREATE TRIGGER IF NOT EXISTS {table}_{column}_on_insert AFTER INSERT ON {table}
            WHEN NEW.{column} IS NULL
            BEGIN UPDATE {table} SET {column} = {CURSOR_CLOCK} WHERE rowid = NEW.rowid; END;
            CREATE TRIGGER IF NOT EXISTS {table}_{column}_on_update AFTER UPDATE ON {table}
            WHEN NEW.{column} IS OLD.{column}
            BEGIN UPDATE {table} SET {column} = {CURSOR_CLOCK} WHERE rowid = NEW.rowid; END;
        """)
