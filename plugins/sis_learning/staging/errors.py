"""Database errors told without the rows: by table, constraint and count, never by value.

A driver's message quotes what it refused: SQLAlchemy appends the SQL parameters (up to
ten rows of names, logins and emails), PostgreSQL adds ``DETAIL: Failing row contains
(...)`` or ``Key (email)=(...)``. None of that may reach an email, ``sync_runs`` or a
task log's error line. :func:`summarise` turns any database error (SQLAlchemy's wrapped
ones and the drivers' own, raised by ``COPY``) into a pipeline error whose message names
the step, the table, the constraint or column, and how many rows the statement carried.
"""

from __future__ import annotations

import re
from typing import Any

from sis_learning.exceptions import SisLearningError, StagingDatabaseError, StagingDataError

# SQLite's constraint messages name table.column only (no values): safe to repeat.
SQLITE_CONSTRAINT = re.compile(r"^(UNIQUE|NOT NULL|CHECK|FOREIGN KEY|PRIMARY KEY) constraint failed(?:: ([\w., ]+))?$")
STATEMENT_TABLE = re.compile(
    r"^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|COPY|MERGE\s+INTO)\s+\"?([\w.]+)\"?", re.IGNORECASE
)
MANY_VALUES_KEY = re.compile(r"__(?:m)?(\d+)$|_m(\d+)$")
# PostgreSQL SQLSTATE classes and codes, in words.
PG_STATES = {
    "23502": "NOT NULL constraint",
    "23503": "FOREIGN KEY constraint",
    "23505": "UNIQUE constraint",
    "23514": "CHECK constraint",
    "23P01": "EXCLUSION constraint",
}
DRIVER_MODULES = ("sqlite3", "psycopg2", "psycopg", "sqlalchemy")


def _dbapi_error(error: BaseException) -> BaseException | None:
    """The driver's own exception inside a SQLAlchemy one, or the error itself when it is a driver's."""
    module = type(error).__module__.split(".")[0]
    if module == "sqlalchemy":
        from sqlalchemy.exc import DBAPIError, StatementError

        if isinstance(error, DBAPIError):
            return error.orig
        if isinstance(error, StatementError):
            return error.orig if isinstance(error.orig, BaseException) else error
        return None
    if module in ("sqlite3", "psycopg2", "psycopg"):
        return error
    return None


def _row_count(params: Any) -> int | None:
    if params is None:
        return None
    if isinstance(params, (list, tuple)) and params and isinstance(params[0], (dict, list, tuple)):
        return len(params)
    if isinstance(params, dict):  # "insertmanyvalues": one statement, parameters name_m0, name_m1, ...
        batches = {match.group(1) or match.group(2) for key in params if (match := MANY_VALUES_KEY.search(str(key)))}
        return len(batches) or 1
    return 1


def summarise(error: BaseException, step: str) -> SisLearningError | None:
    """A value-free pipeline error for a database error, or None when ``error`` is not one."""
    driver_error = _dbapi_error(error)
    if driver_error is None:
        return None
    statement = getattr(error, "statement", None) or ""
    table_match = STATEMENT_TABLE.match(statement)
    table = table_match.group(1) if table_match else None
    rows = _row_count(getattr(error, "params", None))
    what, integrity = None, False

    diag = getattr(driver_error, "diag", None)
    state = getattr(driver_error, "pgcode", None) or getattr(driver_error, "sqlstate", None)
    if diag is not None:  # PostgreSQL (psycopg2 or psycopg 3)
        table = getattr(diag, "table_name", None) or table
        constraint = getattr(diag, "constraint_name", None)
        column = getattr(diag, "column_name", None)
        kind = PG_STATES.get(state or "", f"SQLSTATE {state}" if state else type(driver_error).__name__)
        what = " ".join(
            part for part in (kind, constraint and f"{constraint!s}", column and f"on column {column}") if part
        )
        integrity = bool(state and state.startswith("23"))
        integrity = integrity or bool(state and state.startswith("22"))  # a value the column cannot hold
    elif type(driver_error).__module__.split(".")[0] == "sqlite3":
        message = str(driver_error.args[0]) if driver_error.args else ""
        match = SQLITE_CONSTRAINT.match(message.strip())
        if match:
            what = f"{match.group(1)} constraint" + (f" on {match.group(2)}" if match.group(2) else "")
            if table is None and match.group(2):
                table = match.group(2).split(".")[0]
        integrity = type(driver_error).__name__ in ("IntegrityError", "DataError")
    else:
        integrity = type(driver_error).__name__ in ("IntegrityError", "DataError")
    what = what or type(driver_error).__name__
    count = f"{rows} row(s)" if rows is not None else "the rows"
    where = f"table {table}" if table else "a staged table"
    if integrity:
        message = (
            f"{step}: the staging database refused {count} for {where}: {what} "
            "(row values are left out of this message)"
        )
        return StagingDataError(message)
    message = (
        f"{step}: the staging database failed on {where} ({type(driver_error).__name__}: {what}); "
        "statement parameters are left out of this message"
    )
    return StagingDatabaseError(message)
