"""The ``/ws/v1`` resources: SIS rows turned into the API's views, with their quirks.

The views are those of docs/architecture.md ("v1 API views"), with the envelopes and the
five quirks of docs/powerschool-api.md: a one-element list comes back as an object (quirk 1),
an empty nested object as ``""`` (quirk 2), digit-only strings as JSON numbers (quirk 3), an
empty page in one of five shapes (quirk 4). Lists are read a page at a time from SQLite
through indexes, never whole.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sandbox.powerschool.query_filter import FilterError, FilterField, parse

ENROLL_STATUS = {
    0: ("A", "Active"),
    -1: ("P", "Pre-registered"),
    2: ("T", "Transferred out"),
    3: ("G", "Graduated"),
    4: ("I", "Imported as historical"),
}
ENROLL_STATUS_BY_LETTER = {letter: code for code, (letter, _) in ENROLL_STATUS.items()}
EMPTY_PAGE_STYLES = ("missing", "null", "empty_string", "empty_list", "empty_object")
_DIGITS = re.compile(r"^(0|[1-9][0-9]{0,17})$")


class NotFound(LookupError):
    """A record or parent record that does not exist (HTTP 404)."""


def digits_as_number(value: Any) -> Any:
    """Quirk 3: a digit-only string comes back as a JSON number; other strings stay strings.

    Applied to the identifier-like fields of each view (numbers, usernames, section and course
    numbers, expressions), where PowerSchool's serialiser is seen doing it.
    """
    if isinstance(value, str) and _DIGITS.match(value):
        return int(value)
    return value


def one_or_many(items: list[Any]) -> Any:
    """Quirk 1: a list with one element is serialised as that element."""
    return items[0] if len(items) == 1 else items


def _without_none(mapping: dict[str, Any]) -> dict[str, Any]:
    # PowerSchool leaves fields without a value out of the record.
    return {key: value for key, value in mapping.items() if value is not None}


@dataclass(frozen=True)
class Resource:
    plural: str
    singular: str
    expansions: str
    extensions: str
    max_page_size_key: str


RESOURCES = {
    "school": Resource(
        "schools", "school", "school_boundary, full_time_equivalencies, school_fees_setup", "", "school"
    ),
    "student": Resource(
        "students",
        "student",
        "demographics, addresses, alerts, phones, school_enrollment, ethnicity_race, contact, contact_info, "
        "initial_enrollment, schedule_setup, fees, lunch",
        "s_stu_crdc_x, activities, c_studentlocator, u_students_extension, s_stu_x, studentcorefields",
        "student",
    ),
    "staff": Resource(
        "staffs", "staff", "phones, addresses, emails, school_affiliations", "u_schoolstaffuserfields", "staff"
    ),
    "section": Resource("sections", "section", "term", "s_section_x", "section"),
    "course": Resource("courses", "course", "", "s_crs_x", "course"),
    "term": Resource("terms", "term", "", "", "term"),
    "section_enrollment": Resource("section_enrollments", "section_enrollment", "", "", "section_enrollment"),
}


class PageKeyCache:
    """Remembers where each page ended so that page n+1 is a keyset read, not an OFFSET scan.

    A client paging through 1,000,000 CC rows asks for page 1, 2, 3, ...; with OFFSET each
    page would rescan everything before it. Entries are dropped whenever the data changes.
    """

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._entries.get((self.generation, *key))

    def put(self, key: tuple[Any, ...], value: Any, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self.generation:
                return  # read before a write that has since changed the data
            self._entries[(self.generation, *key)] = value
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def invalidate(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


def read_page(
    connection: sqlite3.Connection,
    cache: PageKeyCache,
    *,
    select: str,
    source: str,
    where: list[str],
    parameters: list[Any],
    order_key: str,
    offset: int,
    limit: int | None,
    order_by: str | None = None,
) -> list[sqlite3.Row]:
    """Rows ``offset .. offset+limit`` of a query ordered by a unique integer ``order_key``.

    ``order_by`` (a client's ``sort``) orders by that first, ``order_key`` breaking ties;
    such a read pages with OFFSET (sorted reads are rare; the keyset cursor is for id order).
    """
    where_sql = " AND ".join(where) if where else "1=1"
    if order_by is not None:
        sql = (
            f"SELECT {select}, {order_key} AS page_key FROM {source} WHERE {where_sql} ORDER BY {order_by}, {order_key}"
        )
        if limit is None:
            return connection.execute(sql, parameters).fetchall()
        return connection.execute(f"{sql} LIMIT ? OFFSET ?", [*parameters, limit, offset]).fetchall()
    signature = (source, where_sql, tuple(parameters), order_key)
    generation = cache.generation
    previous_key = cache.get((*signature, offset)) if offset else None
    if limit is None:
        sql = f"SELECT {select}, {order_key} AS page_key FROM {source} WHERE {where_sql} ORDER BY {order_key}"
        return connection.execute(sql, parameters).fetchall()
    if previous_key is not None:
        sql = (
            f"SELECT {select}, {order_key} AS page_key FROM {source} WHERE {where_sql} AND {order_key} > ? "
            f"ORDER BY {order_key} LIMIT ?"
        )
        rows = connection.execute(sql, [*parameters, previous_key, limit]).fetchall()
    else:
        sql = (
            f"SELECT {select}, {order_key} AS page_key FROM {source} WHERE {where_sql} "
            f"ORDER BY {order_key} LIMIT ? OFFSET ?"
        )
        rows = connection.execute(sql, [*parameters, limit, offset]).fetchall()
    if rows:
        cache.put((*signature, offset + len(rows)), rows[-1]["page_key"], generation)
    return rows


def count_rows(connection: sqlite3.Connection, *, source: str, where: list[str], parameters: list[Any]) -> int:
    where_sql = " AND ".join(where) if where else "1=1"
    return connection.execute(f"SELECT count(*) FROM {source} WHERE {where_sql}", parameters).fetchone()[0]


# -- views ---------------------------------------------------------------------------------


def school_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["dcid"],
        "name": row["name"],
        "school_number": row["school_number"],
        "low_grade": row["low_grade"],
        "high_grade": row["high_grade"],
        "addresses": "",
        "phones": "",  # quirk 2: no address or phone on file
    }


def term_view(row: sqlite3.Row, school_dcid: int) -> dict[str, Any]:
    return _without_none(
        {
            "id": row["dcid"],
            "local_id": row["id"],
            "school_id": school_dcid,
            "name": row["name"],
            "abbreviation": row["abbreviation"],
            "start_year": row["yearid"] + 1990,
            "start_date": row["firstday"],
            "end_date": row["lastday"],
            "portion": row["portion"],
        }
    )


def course_view(row: sqlite3.Row) -> dict[str, Any]:
    return _without_none(
        {
            "id": row["dcid"],
            "course_number": digits_as_number(row["course_number"]),
            "course_name": row["course_name"],
            "school_id": row["school_dcid"],
        }
    )


def section_view(row: sqlite3.Row, expansions: set[str]) -> dict[str, Any]:
    view = _without_none(
        {
            "id": row["dcid"],
            "school_id": row["school_dcid"],
            "course_id": row["course_dcid"],
            "term_id": row["term_dcid"],
            "section_number": digits_as_number(row["section_number"]),
            "expression": digits_as_number(row["expression"]),
            "external_expression": digits_as_number(row["external_expression"]),
            "staff_id": row["staff_dcid"],
            "gradebooktype": row["gradebooktype"],  # 2 PowerTeacher Pro, 1 the legacy PowerTeacher Gradebook
        }
    )
    if "term" in expansions:
        view["term"] = _without_none(
            {
                "id": row["term_dcid"],
                "local_id": row["termid"],
                "school_id": row["school_dcid"],
                "name": row["term_name"],
                "abbreviation": row["term_abbreviation"],
                "start_year": None if row["term_yearid"] is None else row["term_yearid"] + 1990,
                "start_date": row["term_firstday"],
                "end_date": row["term_lastday"],
                "portion": row["term_portion"],
            }
        )
    return view


def staff_view(row: sqlite3.Row, expansions: set[str], affiliations: list[dict[str, Any]]) -> dict[str, Any]:
    view = _without_none(
        {
            "id": row["dcid"],
            "local_id": row["id"],
            "users_dcid": row["users_dcid"],
            "admin_username": digits_as_number(row["loginid"]),
            "teacher_username": digits_as_number(row["teacherloginid"]),
            "name": _without_none(
                {"first_name": row["first_name"], "middle_name": row["middle_name"], "last_name": row["last_name"]}
            ),
            "homeschool_id": row["home_school_dcid"],
        }
    )
    if "emails" in expansions:
        view["emails"] = {"work_email": row["email_addr"]} if row["email_addr"] else ""
    if "school_affiliations" in expansions:
        view["school_affiliations"] = {"school_affiliation": one_or_many(affiliations)} if affiliations else ""
    for empty in ("phones", "addresses"):
        if empty in expansions:
            view[empty] = ""
    return view


def student_extensions(row: sqlite3.Row, extensions: set[str]) -> dict[str, Any]:
    """``_extension_data``: one ``_table_extension`` per requested extension (quirk 1 when only one)."""
    tables = []
    for name in sorted(extensions & set(RESOURCES["student"].extensions.replace(" ", "").split(","))):
        if name == "studentcorefields":
            fields = [
                {"name": "pscore_legal_first_name", "value": row["first_name"]},
                {"name": "pscore_legal_last_name", "value": row["last_name"]},
            ]
            tables.append({"recordFound": True, "name": name, "_field": fields})
        else:
            tables.append({"recordFound": False, "name": name, "_field": ""})
    return {"_table_extension": one_or_many(tables)} if tables else {}


def student_view(
    row: sqlite3.Row, expansions: set[str], extensions: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    view = _without_none(
        {
            "id": row["dcid"],
            "local_id": digits_as_number(row["student_number"]),
            "student_username": digits_as_number(row["student_web_id"]),
            "name": _without_none(
                {"first_name": row["first_name"], "middle_name": row["middle_name"], "last_name": row["last_name"]}
            ),
        }
    )
    if "school_enrollment" in expansions:
        letter, description = ENROLL_STATUS.get(row["enroll_status"], ("?", "Unknown"))
        view["school_enrollment"] = _without_none(
            {
                "enroll_status": letter,
                "enroll_status_code": row["enroll_status"],
                "enroll_status_description": description,
                "grade_level": row["grade_level"],
                "school_id": row["school_dcid"],
                "school_number": row["schoolid"],
                "entry_date": row["entrydate"],
                "exit_date": row["exitdate"],
            }
        )
    if "contact_info" in expansions:
        view["contact_info"] = {"email": row["email"]} if row["email"] else ""
    for empty in ("addresses", "phones", "alerts", "fees", "lunch", "contact", "ethnicity_race"):
        if empty in expansions:
            view[empty] = ""
    if extensions:
        view["_extension_data"] = student_extensions(row, set(extensions)) or ""
    return view


def section_enrollment_view(row: sqlite3.Row, section_dcid: int) -> dict[str, Any]:
    return _without_none(
        {
            "id": row["dcid"],
            "section_id": section_dcid,
            "student_id": row["student_dcid"],
            "entry_date": row["dateenrolled"],
            "exit_date": row["dateleft"],
            "dropped": row["sectionid"] < 0,
        }
    )


# -- sources, filters and lookups ----------------------------------------------------------

STUDENT_SOURCE = "students s JOIN schools sc ON sc.school_number = s.schoolid"
STUDENT_SELECT = "s.*, sc.dcid AS school_dcid"
STUDENT_FIELDS = {
    "id": FilterField("s.dcid", numeric=True),
    "local_id": FilterField("s.student_number"),
    "student_username": FilterField("s.student_web_id"),
    "name.first_name": FilterField("s.first_name"),
    "name.last_name": FilterField("s.last_name"),
    "school_enrollment.enroll_status_code": FilterField("s.enroll_status", numeric=True),
    "school_enrollment.enroll_status": FilterField("s.enroll_status", convert=lambda v: ENROLL_STATUS_BY_LETTER[v]),
    "school_enrollment.grade_level": FilterField("s.grade_level", numeric=True),
    "school_enrollment.school_id": FilterField("sc.dcid", numeric=True),
    "school_enrollment.entry_date": FilterField("s.entrydate"),
    "school_enrollment.exit_date": FilterField("s.exitdate"),
}

SECTION_SOURCE = (
    "sections se JOIN schools sc ON sc.school_number = se.schoolid "
    "LEFT JOIN courses c ON c.schoolid = se.schoolid AND c.course_number = se.course_number "
    "LEFT JOIN terms tm ON tm.schoolid = se.schoolid AND tm.id = se.termid "
    "LEFT JOIN teachers lead ON lead.id = se.teacher AND se.teacher <> 0 "
    "LEFT JOIN section_gradebook gb ON gb.sectionsdcid = se.dcid"  # PowerTeacher's table (store.POWERTEACHER_SCHEMA)
)
SECTION_SELECT = (
    "se.*, sc.dcid AS school_dcid, c.dcid AS course_dcid, tm.dcid AS term_dcid, lead.dcid AS staff_dcid, "
    "tm.name AS term_name, tm.abbreviation AS term_abbreviation, tm.yearid AS term_yearid, "
    "tm.firstday AS term_firstday, tm.lastday AS term_lastday, tm.portion AS term_portion, "
    "coalesce(gb.gradebooktype, 2) AS gradebooktype"
)
SECTION_FIELDS = {
    "id": FilterField("se.dcid", numeric=True),
    "section_number": FilterField("se.section_number"),
    "expression": FilterField("se.expression"),
    "course_id": FilterField("c.dcid", numeric=True),
    "term_id": FilterField("tm.dcid", numeric=True),
    "staff_id": FilterField("lead.dcid", numeric=True),
    "term.start_year": FilterField("(tm.yearid + 1990)", numeric=True),
    "term.start_date": FilterField("tm.firstday"),
    "term.end_date": FilterField("tm.lastday"),
}

STAFF_SOURCE = (
    "teacher_schools ts JOIN teachers t ON t.id = ts.teacherid "
    "LEFT JOIN schools home ON home.school_number = t.schoolid"
)
# A home school of 0 is the District Office: no Schools row, and homeschool_id 0 in the view.
STAFF_SELECT = "t.*, CASE WHEN t.schoolid = 0 THEN 0 ELSE home.dcid END AS home_school_dcid"
STAFF_FIELDS = {
    "id": FilterField("t.dcid", numeric=True),
    "local_id": FilterField("t.id", numeric=True),
    "users_dcid": FilterField("t.users_dcid", numeric=True),
    "name.first_name": FilterField("t.first_name"),
    "name.last_name": FilterField("t.last_name"),
    "teacher_username": FilterField("t.teacherloginid"),
    "admin_username": FilterField("t.loginid"),
}
COURSE_FIELDS = {
    "id": FilterField("c.dcid", numeric=True),
    "course_number": FilterField("c.course_number"),
    "course_name": FilterField("c.course_name"),
}
TERM_FIELDS = {
    "id": FilterField("tm.dcid", numeric=True),
    "local_id": FilterField("tm.id", numeric=True),
    "start_year": FilterField("(tm.yearid + 1990)", numeric=True),
    "name": FilterField("tm.name"),
}
SCHOOL_FIELDS = {
    "id": FilterField("sc.dcid", numeric=True),
    "school_number": FilterField("sc.school_number", numeric=True),
    "name": FilterField("sc.name"),
}
ENROLLMENT_FIELDS = {
    "id": FilterField("cc.dcid", numeric=True),
    "student_id": FilterField("st.dcid", numeric=True),
    "entry_date": FilterField("cc.dateenrolled"),
    "exit_date": FilterField("cc.dateleft"),
}


LIST_FIELDS = {
    "school": SCHOOL_FIELDS,
    "student": STUDENT_FIELDS,
    "staff": STAFF_FIELDS,
    "section": SECTION_FIELDS,
    "course": COURSE_FIELDS,
    "term": TERM_FIELDS,
    "section_enrollment": ENROLLMENT_FIELDS,
}


def sort_order(kind: str, sort: str | None, descending: str | None) -> str | None:
    """The ORDER BY of a v1 list's ``sort=field`` and ``sortdescending=true|false`` (None: by id).

    Any field the list can filter on can order it; anything else is a 400 naming it.
    """
    if descending is not None and descending.strip().lower() not in ("true", "false"):
        raise FilterError(f"sortdescending must be true or false, got {descending!r}")
    if sort is None or not sort.strip():
        if descending is not None:
            raise FilterError("sortdescending needs sort (the field to sort by)")
        return None
    fields = LIST_FIELDS[kind]
    spec = fields.get(sort.strip().lower())
    if spec is None:
        raise FilterError(f"Invalid sort: unknown field {sort.strip()!r}; sortable fields: {', '.join(sorted(fields))}")
    return (
        f"{spec.sql} {'DESC' if descending.strip().lower() == 'true' else 'ASC'}" if descending else f"{spec.sql} ASC"
    )


@dataclass
class ListSpec:
    """What one list call reads: the FROM clause, conditions, the order key and the row -> view step."""

    resource: Resource
    select: str
    source: str
    where: list[str]
    parameters: list[Any]
    order_key: str


def school_number_for(connection: sqlite3.Connection, school_dcid: str) -> int:
    row = connection.execute(
        "SELECT school_number FROM schools WHERE dcid = ?", (_int_or_none(school_dcid),)
    ).fetchone()
    if row is None:
        raise NotFound(f"School {school_dcid} not found")
    return row[0]


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def list_spec(connection: sqlite3.Connection, kind: str, parent_id: str | None, q: str | None) -> ListSpec:
    """The list behind ``/ws/v1/district/school``, ``/school/{id}/<kind>``, ``/district/student``, ..."""
    if kind == "school":
        condition = parse(q, SCHOOL_FIELDS)
        return ListSpec(RESOURCES["school"], "sc.*", "schools sc", condition.clauses, condition.parameters, "sc.dcid")
    if kind == "student":
        condition = parse(q, STUDENT_FIELDS)
        where, parameters = list(condition.clauses), list(condition.parameters)
        # The default listing is active students only, unless the filter speaks about status.
        if not condition.fields & {"school_enrollment.enroll_status_code", "school_enrollment.enroll_status"}:
            where.append("s.enroll_status = 0")
        if parent_id is not None:
            where.append("s.schoolid = ?")
            parameters.append(school_number_for(connection, parent_id))
        return ListSpec(RESOURCES["student"], STUDENT_SELECT, STUDENT_SOURCE, where, parameters, "s.dcid")
    if kind == "staff":
        condition = parse(q, STAFF_FIELDS)
        where = [*condition.clauses, "t.status = 1", "ts.schoolid = ?"]
        parameters = [*condition.parameters, school_number_for(connection, parent_id or "")]
        return ListSpec(RESOURCES["staff"], STAFF_SELECT, STAFF_SOURCE, where, parameters, "t.dcid")
    if kind == "section":
        condition = parse(q, SECTION_FIELDS)
        where = [*condition.clauses, "se.schoolid = ?"]
        parameters = [*condition.parameters, school_number_for(connection, parent_id or "")]
        return ListSpec(RESOURCES["section"], SECTION_SELECT, SECTION_SOURCE, where, parameters, "se.dcid")
    if kind == "course":
        condition = parse(q, COURSE_FIELDS)
        return ListSpec(
            RESOURCES["course"],
            "c.*, sc.dcid AS school_dcid",
            "courses c JOIN schools sc ON sc.school_number = c.schoolid",
            [*condition.clauses, "c.schoolid = ?"],
            [*condition.parameters, school_number_for(connection, parent_id or "")],
            "c.dcid",
        )
    if kind == "term":
        condition = parse(q, TERM_FIELDS)
        return ListSpec(
            RESOURCES["term"],
            "tm.*, sc.dcid AS school_dcid",
            "terms tm JOIN schools sc ON sc.school_number = tm.schoolid",
            [*condition.clauses, "tm.schoolid = ?"],
            [*condition.parameters, school_number_for(connection, parent_id or "")],
            "tm.dcid",
        )
    if kind == "section_enrollment":
        condition = parse(q, ENROLLMENT_FIELDS)
        section = connection.execute(
            "SELECT id FROM sections WHERE dcid = ?", (_int_or_none(parent_id or ""),)
        ).fetchone()
        if section is None:
            raise NotFound(f"Section {parent_id} not found")
        return ListSpec(
            RESOURCES["section_enrollment"],
            "cc.*, st.dcid AS student_dcid",
            "cc JOIN students st ON st.id = cc.studentid",
            [*condition.clauses, "cc.sectionid IN (?, ?)"],
            [*condition.parameters, section["id"], -section["id"]],
            "cc.dcid",
        )
    raise NotFound(f"Unknown resource {kind}")


def render(
    connection: sqlite3.Connection,
    kind: str,
    rows: Iterable[sqlite3.Row],
    expansions: set[str],
    parent_id: str | None = None,
    extensions: frozenset[str] | set[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Turn SIS rows into API views (before quirk 3, which the caller applies to the whole answer)."""
    rows = list(rows)
    if kind == "school":
        return [school_view(row) for row in rows]
    if kind == "student":
        return [student_view(row, expansions, extensions) for row in rows]
    if kind == "section":
        return [section_view(row, expansions) for row in rows]
    if kind == "course":
        return [course_view(row) for row in rows]
    if kind == "term":
        return [term_view(row, row["school_dcid"]) for row in rows]
    if kind == "section_enrollment":
        section_dcid = int(parent_id) if parent_id else None
        if section_dcid is None:
            return [section_enrollment_view(row, row["section_dcid"]) for row in rows]
        return [section_enrollment_view(row, section_dcid) for row in rows]
    if kind == "staff":
        affiliations = staff_affiliations(connection, [row["id"] for row in rows])
        return [staff_view(row, expansions, affiliations.get(row["id"], [])) for row in rows]
    raise NotFound(kind)


def staff_affiliations(connection: sqlite3.Connection, teacher_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not teacher_ids:
        return {}
    result: dict[int, list[dict[str, Any]]] = {}
    sql = (
        "SELECT ts.teacherid, sc.dcid AS school_dcid, t.status, t.staffstatus FROM teacher_schools ts "
        "JOIN schools sc ON sc.school_number = ts.schoolid JOIN teachers t ON t.id = ts.teacherid "
        f"WHERE ts.teacherid IN ({','.join('?' * len(teacher_ids))}) ORDER BY ts.teacherid, sc.dcid"
    )
    for row in connection.execute(sql, teacher_ids):
        result.setdefault(row["teacherid"], []).append(
            {"school_id": row["school_dcid"], "type": row["staffstatus"] or 1, "status": row["status"]}
        )
    return result


SINGLE_SOURCES = {
    "school": ("sc.*", "schools sc", "sc.dcid"),
    "student": (STUDENT_SELECT, STUDENT_SOURCE, "s.dcid"),
    "staff": (STAFF_SELECT, "teachers t LEFT JOIN schools home ON home.school_number = t.schoolid", "t.dcid"),
    "section": (SECTION_SELECT, SECTION_SOURCE, "se.dcid"),
    "course": ("c.*, sc.dcid AS school_dcid", "courses c JOIN schools sc ON sc.school_number = c.schoolid", "c.dcid"),
    "term": ("tm.*, sc.dcid AS school_dcid", "terms tm JOIN schools sc ON sc.school_number = tm.schoolid", "tm.dcid"),
    "section_enrollment": (
        "cc.*, st.dcid AS student_dcid, se.dcid AS section_dcid",
        "cc JOIN students st ON st.id = cc.studentid JOIN sections se ON se.id = abs(cc.sectionid)",
        "cc.dcid",
    ),
}


def single(
    connection: sqlite3.Connection,
    kind: str,
    record_id: str,
    expansions: set[str],
    extensions: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    select, source, key = SINGLE_SOURCES[kind]
    row = connection.execute(f"SELECT {select} FROM {source} WHERE {key} = ?", (_int_or_none(record_id),)).fetchone()
    if row is None:
        raise NotFound(f"{kind.replace('_', ' ').title()} {record_id} not found")
    return render(connection, kind, [row], expansions, extensions=extensions)[0]


def list_envelope(resource: Resource, items: list[dict[str, Any]], empty_style: str) -> dict[str, Any]:
    """The plural wrapper, with quirk 1 for one item and quirk 4 for none."""
    body: dict[str, Any] = {"@expansions": resource.expansions, "@extensions": resource.extensions}
    if items:
        body[resource.singular] = one_or_many(items)
    elif empty_style == "empty_string":
        return {resource.plural: ""}
    elif empty_style == "null":
        body[resource.singular] = None
    elif empty_style == "empty_list":
        body[resource.singular] = []
    elif empty_style == "empty_object":
        body[resource.singular] = {}
    return {resource.plural: body}
