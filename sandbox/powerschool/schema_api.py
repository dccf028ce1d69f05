"""``/ws/schema``: direct table reads and PowerQueries, with the plugin's field grants.

Implements the table and PowerQuery calls of docs/powerschool-api.md: ``projection`` is
required, every value comes back as a string and a NULL column as ``""`` with its key
present, numeric and date columns included (quirk 5: Oracle stores '' as NULL), ``record``
is always an array (also for one row; the empty page is ``{"name": ..., "record": []}``),
``/count`` answers a bare ``{"count": N}``, ``/metadata`` lists the columns with the
plugin's access, ``/{id}`` answers one row under a top-level ``tables``, ``sort`` and
``sortdescending`` order a read, and a projected or filtered field the plugin was not
granted answers ``Validation Failed`` / ``No access to the field``.
The CC table is how a plugin reads every section enrollment of a district in one paged
read; SectionTeacher + RoleDef is how it reads co-teachers. The guardian PowerQuery
``com.pearson.core.guardian.student_guardian_detail`` joins Guardian, GuardianStudent,
PCAS_Account (Parent Portal username) and PCAS_EmailContact (email).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from sandbox.powerschool import store
from sandbox.powerschool.query_filter import FilterField, parse
from sandbox.powerschool.resources import NotFound

TABLE_KEYS = {table: ("dcid" if "dcid" in columns else None) for table, columns in store.TABLE_COLUMNS.items()}
INTEGER_COLUMNS = {
    "id",
    "dcid",
    "schoolid",
    "school_number",
    "yearid",
    "portion",
    "isyearrec",
    "termid",
    "teacher",
    "sectionid",
    "teacherid",
    "roleid",
    "priorityorder",
    "users_dcid",
    "status",
    "staffstatus",
    "grade_level",
    "enroll_status",
    "studentid",
    "guardianid",
    "studentsdcid",
    "isenabled",
    "low_grade",
    "high_grade",
    "displayposition",
    "isactive",
}
DATE_COLUMNS = {"firstday", "lastday", "start_date", "end_date", "entrydate", "exitdate", "dateenrolled", "dateleft"}
GUARDIAN_QUERY = "com.pearson.core.guardian.student_guardian_detail"
# Each output column of the guardian PowerQuery and the table.column it comes from (for grants).
GUARDIAN_COLUMNS = {
    "studentsdcid": ("guardianstudent", "studentsdcid", "gs.studentsdcid"),
    "guardianid": ("guardian", "guardianid", "g.guardianid"),
    "firstname": ("guardian", "firstname", "g.firstname"),
    "lastname": ("guardian", "lastname", "g.lastname"),
    "relationship": ("guardianstudent", "relationship", "gs.relationship"),
    "accountidentifier": ("guardian", "accountidentifier", "g.accountidentifier"),
    "username": ("pcas_account", "username", "pa.username"),
    "isenabled": ("pcas_account", "isenabled", "pa.isenabled"),
    "emailaddress": (
        "pcas_emailcontact",
        "emailaddress",
        "(SELECT pe.emailaddress FROM pcas_emailcontact pe WHERE pe.pcas_accounttoken = g.accountidentifier "
        "ORDER BY pe.rowid LIMIT 1)",
    ),
}
GUARDIAN_SOURCE = (
    "guardianstudent gs JOIN guardian g ON g.guardianid = gs.guardianid "
    "LEFT JOIN pcas_account pa ON pa.pcas_accounttoken = g.accountidentifier"
)


class BadRequest(ValueError):
    """A schema call the simulator refuses with HTTP 400 and ``{"message": ...}``."""


class ValidationFailed(Exception):
    """Fields the plugin has no access to; answered as PowerSchool's ``Validation Failed`` error."""

    def __init__(self, denied: list[tuple[str, str]]):
        super().__init__("Validation Failed")
        self.denied = denied

    def body(self) -> dict[str, Any]:
        return {
            "message": "Validation Failed",
            "errors": [
                {"resource": table, "field": column, "code": "No access to the field"} for table, column in self.denied
            ],
        }


def as_string(value: Any) -> str:
    """Quirk 5: the schema API renders every value as a string (1.0 as "1")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_grants(grants: dict[str, list[str]] | None, fields: list[tuple[str, str]]) -> None:
    """Raise ValidationFailed for every (table, column) outside the configured grants.

    ``grants`` maps a table to the columns the plugin may read; a table absent from it is
    fully granted (the plugin's default access), so grants only ever take access away.
    """
    if not grants:
        return
    denied = [
        (table, column)
        for table, column in fields
        if table in grants and column not in {granted.lower() for granted in grants[table]}
    ]
    if denied:
        raise ValidationFailed(denied)


@dataclass
class TableRead:
    table: str
    columns: list[str]
    where: list[str]
    parameters: list[Any]
    order_by: str | None = None  # from sort/sortdescending; None = the table's key order


def known_table(table: str) -> str:
    table = table.lower()
    if table not in store.TABLE_COLUMNS:
        raise NotFound(f"Table {table} not found")
    return table


def column_type(column: str) -> str:
    if column in INTEGER_COLUMNS:
        return "Long"
    if column in DATE_COLUMNS:
        return "Date"
    if column == "allocation":
        return "Double"
    return "String"


def table_metadata(table: str, grants: dict[str, list[str]] | None) -> dict[str, Any]:
    """``GET /ws/schema/table/{table}/metadata``: the columns with the plugin's access to each.

    Clients build their default projection from the columns whose access is not
    ``NoAccess`` (a plugin reads; ``ViewOnly`` is what a read grant gives).
    """
    table = known_table(table)
    granted = None
    if grants and table in grants:
        granted = {column.lower() for column in grants[table]}
    columns = [
        {
            "name": column,
            "type": column_type(column),
            "access": "ViewOnly" if granted is None or column in granted else "NoAccess",
        }
        for column in store.TABLE_COLUMNS[table]
    ]
    key = TABLE_KEYS.get(table) or store.TABLE_COLUMNS[table][0]
    return {"name": table, "comment": "", "primaryKey": key, "columns": columns}


def sort_order(table: str, sort: str | None, descending: str | None) -> str | None:
    """The ORDER BY of ``sort=column`` (``sortdescending=true|false``), or None without ``sort``."""
    if descending is not None and descending.strip().lower() not in ("true", "false"):
        raise BadRequest(f"sortdescending must be true or false, got {descending!r}")
    if sort is None or not sort.strip():
        if descending is not None:
            raise BadRequest("sortdescending needs sort (the column to sort by)")
        return None
    column = sort.strip().lower().split(".")[-1]
    if column not in store.TABLE_COLUMNS[table]:
        raise BadRequest(
            f"Invalid sort: {table} has no column {column!r}; columns: {', '.join(store.TABLE_COLUMNS[table])}"
        )
    direction = "DESC" if (descending or "").strip().lower() == "true" else "ASC"
    return f"{table}.{column} {direction}"


def table_read(
    table: str,
    projection: str | None,
    q: str | None,
    grants: dict[str, list[str]] | None,
    *,
    projection_required: bool = True,
    sort: str | None = None,
    sortdescending: str | None = None,
) -> TableRead:
    table = known_table(table)
    all_columns = list(store.TABLE_COLUMNS[table])
    # The change cursor can be projected and filtered on (``whenmodified=ge=2026-12-04``);
    # ``*`` keeps to the table's own columns.
    cursor = store.CHANGE_CURSORS.get(table)
    if cursor:
        all_columns.append(cursor)
    fields = {column: FilterField(f"{table}.{column}", numeric=column in INTEGER_COLUMNS) for column in all_columns}
    fields.update({f"{table}.{column}": spec for column, spec in fields.items()})
    condition = parse(q, fields)
    filtered = sorted({name.split(".")[-1] for name in condition.fields})
    if projection is None or not projection.strip():
        if projection_required:
            raise BadRequest("projection is required (a comma-separated list of columns, or *)")
        columns: list[str] = []
    elif projection.strip() == "*":
        denied = set()
        if grants and table in grants:
            denied = {column for column in all_columns if column not in {g.lower() for g in grants[table]}}
        columns = [column for column in all_columns if column not in denied and column != cursor]
    else:
        columns = []
        for raw in projection.split(","):
            column = raw.strip().lower().split(".")[-1]
            if not column:
                continue
            if column not in all_columns:
                raise BadRequest(
                    f"Invalid projection: {table} has no column {column!r}; columns: {', '.join(all_columns)}"
                )
            if column not in columns:
                columns.append(column)
    order_by = sort_order(table, sort, sortdescending)
    sorted_by = [order_by.split(" ")[0].split(".")[-1]] if order_by else []
    check_grants(grants, [(table, column) for column in dict.fromkeys([*columns, *filtered, *sorted_by])])
    return TableRead(table, columns, condition.clauses, condition.parameters, order_by)


def table_record(table: str, row: sqlite3.Row, columns: list[str]) -> dict[str, Any]:
    """One table row: every value a string, a NULL column ``""`` with its key present (quirk 5)."""
    values = {column: "" if row[column] is None else as_string(row[column]) for column in columns}
    return {"id": row["page_key"], "name": table, "tables": {table: values}}


def guardian_arguments(body: bytes) -> list[int] | None:
    """The ``students_dcid`` argument (an array; absent or empty means every student)."""
    if not body.strip():
        return None
    try:
        arguments = json.loads(body)
    except json.JSONDecodeError as error:
        raise BadRequest(f"the request body is not valid JSON: {error}") from error
    if not isinstance(arguments, dict):
        raise BadRequest('the PowerQuery arguments must be a JSON object, e.g. {"students_dcid": [1, 2]}')
    unknown = sorted(set(arguments) - {"students_dcid"})
    if unknown:
        raise BadRequest(f"unknown PowerQuery argument(s) {', '.join(unknown)}; this query takes students_dcid")
    value = arguments.get("students_dcid")
    if value in (None, [], ""):
        return None
    if not isinstance(value, list):
        value = [value]
    try:
        return [int(item) for item in value]
    except (TypeError, ValueError) as error:
        raise BadRequest("students_dcid must be an array of student DCIDs") from error


def guardian_query(
    students_dcid: list[int] | None, grants: dict[str, list[str]] | None
) -> tuple[str, str, list[str], list[Any]]:
    """(select, source, where, parameters) of the guardian PowerQuery, after the grants check."""
    check_grants(grants, [(table, column) for table, column, _ in GUARDIAN_COLUMNS.values()])
    select = ", ".join(f"{expression} AS {name}" for name, (_, _, expression) in GUARDIAN_COLUMNS.items())
    where: list[str] = []
    parameters: list[Any] = []
    if students_dcid is not None:
        where.append("gs.studentsdcid IN (SELECT value FROM json_each(?))")
        parameters.append(json.dumps(students_dcid))
    return select, GUARDIAN_SOURCE, where, parameters


def guardian_record(row: sqlite3.Row) -> dict[str, Any]:
    return {name: as_string(row[name]) for name in GUARDIAN_COLUMNS if row[name] is not None}
