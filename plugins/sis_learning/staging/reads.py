"""Reading a run's staged source rows into pandas, the fastest way each database allows.

validate and transform read the same ``stg_*`` columns through ``read_staged``; the
writes are in ``source.py`` (extract) and ``base.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, Integer, case, func, select, text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.staging.base import temporary_values
from sis_learning.staging.postgres import copy_out_csv
from sis_learning.staging.source import (
    StgCourse,
    StgGuardian,
    StgSchool,
    StgSection,
    StgSectionEnrollment,
    StgSectionTeacher,
    StgStaff,
    StgStudent,
    StgTerm,
)


def _copy_out(connection: Any, query: Any, columns: list[str]) -> pd.DataFrame:
    """PostgreSQL: the query's rows through COPY TO STDOUT and pandas' C CSV parser.

    Several times faster than fetching a million rows as Python tuples. Values are bound
    as literals by SQLAlchemy's compiler (the run's district and run ids only).
    """
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    buffer = copy_out_csv(connection, sql)
    frame = pd.read_csv(buffer, names=columns, header=None, dtype=str, keep_default_na=False, na_values=["\\N"])
    return frame


def _fetch_records(connection: Any, query: Any, columns: list[str]) -> pd.DataFrame:
    """Other databases (SQLite): the rows as plain tuples from the driver's cursor.

    ``pd.read_sql`` goes through SQLAlchemy's result rows; at district scale (a million
    enrollments) that costs twice the fetch itself.
    """
    compiled = query.compile(dialect=connection.dialect)
    parameters = [compiled.params[name] for name in compiled.positiontup] if compiled.positiontup else compiled.params
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), parameters)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    # One 2-D object array, then its columns as they are: DataFrame.from_records would also
    # try to infer a type for every column of Python objects (twice the time).
    values = np.array(rows, dtype=object) if rows else np.empty((0, len(columns)), dtype=object)
    return pd.DataFrame({name: values[:, position] for position, name in enumerate(columns)}, copy=False)


def fetch_frame(connection: Any, query: Any, columns: list[str]) -> pd.DataFrame:
    """A query's rows as a frame of text columns, the fastest way each database allows."""
    if connection.dialect.name == "postgresql":
        return _copy_out(connection, query, columns)
    return _fetch_records(connection, query, columns)


def _sqlite_run_rows(connection: Any, table: Any, query: Any, district_id: str, run_id: str) -> Any:
    """``query`` (a run's rows in id order) read as a range of row ids when the run's rows are contiguous.

    Extract writes a run's rows of one table together, so they usually fill one range of
    ids. Scanning that range returns them in id order directly; through the table's
    (district, run, ...) index SQLite visits the rows in index order and then sorts a
    million of them by id (half the read at district scale). The ``+`` keeps SQLite from
    using that index; rows of other runs inside the range are filtered out. When the
    run's rows are spread out (several districts extracting at once), the index it is.
    """
    first, last, rows = connection.execute(
        select(func.min(table.c.id), func.max(table.c.id), func.count()).where(
            table.c.district_id == district_id, table.c.run_id == run_id
        )
    ).one()
    if not rows or rows * 2 < last - first + 1:
        return query.where(table.c.district_id == district_id, table.c.run_id == run_id)
    return query.where(
        table.c.id.between(first, last),
        text("+district_id = :staged_district_id AND +run_id = :staged_run_id").bindparams(
            staged_district_id=district_id, staged_run_id=run_id
        ),
    )


# A subset of a run's rows: (column, values) pairs, a row is read when any of its columns
# holds one of the values (``None`` among the values: also the rows where the column is null).
RowFilter = list[tuple[str, Any]]

_SUBSET_TABLES = 0


def _subset_condition(connection: Any, table: Any, subset: RowFilter, made: list[str]) -> Any:
    """``column IN (SELECT value FROM <temporary table>) OR ...`` for ``subset`` (tables made on ``connection``,
    their names appended to ``made``)."""
    global _SUBSET_TABLES
    from sqlalchemy import false, or_

    conditions = []
    for column_name, values in subset:
        column = table.c[column_name]
        wanted = {str(value) for value in values if value is not None}
        if None in values:
            conditions.append(column.is_(None))
        if not wanted:
            continue
        _SUBSET_TABLES += 1
        name = f"subset_values_{_SUBSET_TABLES}"
        temporary_values(connection, name, wanted)
        made.append(name)
        conditions.append(column.in_(select(text("value")).select_from(text(name))))
    return or_(*conditions) if conditions else false()


def read_frame(
    engine: Engine,
    model: Any,
    config: DistrictConfig,
    run_id: str,
    columns: list[str],
    subset: RowFilter | None = None,
) -> pd.DataFrame:
    """A run's staged rows of one table (``columns``, in id order); with ``subset``, only the rows it selects."""
    table = model.__table__
    selected = []
    for name in columns:
        column = table.c[name]
        if isinstance(column.type, (Integer, Boolean)):
            selected.append(column)
        else:
            # A blank value is a missing one: an id "" or a last name "  " must fail like null.
            # Decided in the database, where it costs nothing.
            selected.append(case((func.trim(column) == "", None), else_=column).label(name))
    query = select(*selected).order_by(table.c.id)
    with engine.connect() as connection:
        if subset is not None:
            made: list[str] = []
            try:
                query = query.where(
                    table.c.district_id == config.district_id,
                    table.c.run_id == run_id,
                    _subset_condition(connection, table, subset, made),
                )
                if connection.dialect.name == "postgresql":
                    frame = _copy_out(connection, query, columns)
                else:
                    frame = _fetch_records(connection, query, columns)
            finally:
                for name in made:
                    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
                connection.commit()
        elif connection.dialect.name == "postgresql":
            query = query.where(table.c.district_id == config.district_id, table.c.run_id == run_id)
            frame = _copy_out(connection, query, columns)
        else:
            frame = _fetch_records(
                connection, _sqlite_run_rows(connection, table, query, config.district_id, run_id), columns
            )
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, Integer):
            # Nullable integers stay integers (a grade level 9 must not become "9.0").
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("Int64")
        elif isinstance(column_type, Boolean):
            if frame[name].dtype == object:
                frame[name] = frame[name].map({"t": True, "f": False, True: True, False: False})
            frame[name] = frame[name].astype("boolean")
        else:
            frame[name] = frame[name].astype("string")
    return frame


# The staged source columns validate reads, per entity (transform reads a subset: ``read_staged``'s ``columns``).
STAGED_COLUMNS: dict[str, tuple[Any, list[str]]] = {
    "schools": (
        StgSchool,
        ["school_id", "school_number", "name", "source_problem", "source_problem_reason", "value_problems"],
    ),
    "terms": (
        StgTerm,
        [
            "term_id",
            "school_id",
            "start_year",
            "start_date",
            "end_date",
            "source_problem",
            "source_problem_reason",
            "value_problems",
        ],
    ),
    "courses": (StgCourse, ["course_id", "course_number", "course_name", "source_problem", "source_problem_reason"]),
    "staff": (
        StgStaff,
        [
            "staff_id",
            "first_name",
            "last_name",
            "teacher_username",
            "email",
            "school_id",
            "school_ids",
            "status",
            "source_problem",
            "source_problem_reason",
            "value_problems",
        ],
    ),
    "students": (
        StgStudent,
        [
            "student_id",
            "first_name",
            "last_name",
            "student_username",
            "email",
            "school_id",
            "grade_level",
            "enroll_status_code",
            "source_problem",
            "source_problem_reason",
            "value_problems",
        ],
    ),
    "guardians": (
        StgGuardian,
        [
            "guardian_id",
            "student_id",
            "first_name",
            "last_name",
            "portal_username",
            "portal_enabled",
            "email",
            "source_problem",
            "source_problem_reason",
            "value_problems",
        ],
    ),
    "sections": (
        StgSection,
        [
            "section_id",
            "school_id",
            "course_id",
            "term_id",
            "section_number",
            "expression",
            "staff_id",
            "source_problem",
            "source_problem_reason",
        ],
    ),
    "section_enrollments": (
        StgSectionEnrollment,
        ["enrollment_id", "section_id", "student_id", "dropped", "source_problem", "source_problem_reason"],
    ),
    "section_teachers": (
        StgSectionTeacher,
        [
            "section_id",
            "staff_id",
            "role",
            "start_date",
            "end_date",
            "source_problem",
            "source_problem_reason",
            "value_problems",
        ],
    ),
}


def read_staged(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    columns: dict[str, set[str]] | None = None,
    subsets: dict[str, RowFilter] | None = None,
) -> dict[str, pd.DataFrame]:
    """The staged source columns validate and transform need, one frame per entity.

    ``columns`` (entity -> column names) reads only those entities, and of each only the
    listed columns of ``STAGED_COLUMNS`` (in its order): transform needs fewer than
    validate, and every column read costs time at district scale. ``subsets`` (entity ->
    ``RowFilter``) reads only some rows of those entities (after an incremental read: the
    rows that changed and what depends on them, see ``sis_learning.delta``).
    """
    frames = {}
    for entity, (model, names) in STAGED_COLUMNS.items():
        if columns is not None:
            if entity not in columns:
                continue
            names = [name for name in names if name in columns[entity]]
        frames[entity] = read_frame(engine, model, config, run_id, names, (subsets or {}).get(entity))
    return frames
