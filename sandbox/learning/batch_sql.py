"""Set-based SQL for the batch import: find a batch's stored rows by key, write its rows with executemany.

A batch is up to 1,000 rows, and at district scale the import sends over a thousand
batches, so what costs per row matters more than what costs per statement:

- **Lookups by key** read the rows of a whole batch in one statement per 500 keys. A
  one-column key is an ``IN`` list; a two-column key (roster rows, parent links) joins a
  ``VALUES`` list of the wanted pairs, one index lookup per pair. (An ``IN`` per column
  would look up every class of the batch with every user of the batch: 30 classes x
  1,000 users is 30,000 index lookups for 1,000 keys.)
- **Statements go through the driver** with positional parameters. SQLAlchemy's
  per-parameter processing (bind processors, expanding ``IN``) was most of a batch's
  database time on SQLite. Lookups return the driver's values (on SQLite: booleans as
  0/1, timestamps as text), which the import only compares and copies; the API's read
  back goes through SQLAlchemy's typed path instead.
- **Writes** are one executemany per statement shape; on SQLite each value is converted
  the way SQLAlchemy's column type would store it (the same text for a timestamp), so
  rows written here read back exactly like rows written through the ORM.

Works on SQLite and PostgreSQL (psycopg2), the two databases the server runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Boolean, Table
from sqlalchemy.engine import Connection, Dialect, Row
from sqlalchemy.orm import Session

# Keys per lookup statement (two parameters per pair: far below SQLite's 32,766 limit).
KEYS_PER_LOOKUP = 500


def _marker(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"


def _quoted(name: str) -> str:
    return f'"{name}"'


def rows_by_keys(
    session: Session,
    table: Table,
    domain: str,
    key_columns: Sequence[str],
    keys: Iterable[tuple[str, ...]],
    columns: Sequence[str] | None = None,
) -> dict[tuple[str, ...], Row]:
    """``key -> stored row`` for the ``keys`` (tuples of ``key_columns`` values) that exist in ``domain``.

    Rows carry ``columns`` (default: every column of ``table``) and the key columns, read
    by attribute, with the driver's values.
    """
    connection: Connection = session.connection()
    marker = _marker(connection.dialect)
    wanted = list(dict.fromkeys(keys))
    names = list(columns or [column.name for column in table.c])
    names += [name for name in key_columns if name not in names]
    key_of = itemgetter(*(names.index(name) for name in key_columns))
    selected = ", ".join(f"stored.{_quoted(name)}" for name in names)
    found: dict[tuple[str, ...], Row] = {}
    width = len(key_columns)
    for start in range(0, len(wanted), KEYS_PER_LOOKUP):
        chunk = wanted[start : start + KEYS_PER_LOOKUP]
        if width == 1:
            sql = (
                f"SELECT {selected} FROM {_quoted(table.name)} AS stored WHERE stored.domain = {marker} "
                f"AND stored.{_quoted(key_columns[0])} IN ({', '.join([marker] * len(chunk))})"
            )
            parameters: list[Any] = [domain, *(key[0] for key in chunk)]
        else:
            pair = "(" + ", ".join([marker] * width) + ")"
            aliases = ", ".join(f"k{position}" for position in range(width))
            joins = " AND ".join(
                f"stored.{_quoted(name)} = wanted.k{position}" for position, name in enumerate(key_columns)
            )
            sql = (
                f"WITH wanted ({aliases}) AS (VALUES {', '.join([pair] * len(chunk))}) "
                f"SELECT {selected} FROM wanted JOIN {_quoted(table.name)} AS stored "
                f"ON stored.domain = {marker} AND {joins}"
            )
            parameters = [value for key in chunk for value in key]
            parameters.append(domain)
        records = connection.exec_driver_sql(sql, tuple(parameters)).fetchall()
        if width == 1:
            found.update(((key_of(record),), record) for record in records)
        else:
            found.update((key_of(record), record) for record in records)
    return found


@lru_cache(maxsize=64)
def _converters(table: Table, dialect_name: str, dialect: Dialect) -> dict[str, Callable[[Any], Any] | None]:
    """Column name -> how SQLAlchemy's type would convert a value for the driver (None: as is)."""
    return {column.name: column.type.dialect_impl(dialect).bind_processor(dialect) for column in table.c}


def _converted(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]):
    """The rows as tuples of driver values, in ``columns`` order, converted column by column."""
    dialect = connection.dialect
    converters = _converters(table, dialect.name, dialect)
    values_of = itemgetter(*columns)
    tuples = [values_of(row) for row in rows] if len(columns) > 1 else [(values_of(row),) for row in rows]
    to_convert = [
        position
        for position, name in enumerate(columns)
        if converters[name] is not None
        # sqlite3 binds a bool as 0/1 itself, exactly what SQLAlchemy's Boolean would store
        and not (dialect.name == "sqlite" and isinstance(table.c[name].type, Boolean))
    ]
    if not to_convert:
        return tuples
    by_column = list(zip(*tuples, strict=True))
    for position in to_convert:
        convert = converters[columns[position]]
        # A batch's timestamps are one value (the batch's "now"): each distinct value is converted once.
        distinct = {value: None if value is None else convert(value) for value in set(by_column[position])}
        by_column[position] = tuple(map(distinct.__getitem__, by_column[position]))
    return list(zip(*by_column, strict=True))


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts with the same keys) in one executemany."""
    if not rows:
        return
    connection = session.connection()
    columns = list(rows[0])
    marker = _marker(connection.dialect)
    sql = (
        f"INSERT INTO {_quoted(table.name)} ({', '.join(map(_quoted, columns))}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    connection.exec_driver_sql(sql, _converted(connection, table, columns, rows))


def update_rows_by_id(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE by ``row_id`` (dicts with the same keys: ``row_id`` and the columns to set) in one executemany."""
    if not rows:
        return
    connection = session.connection()
    columns = [name for name in rows[0] if name != "row_id"]
    marker = _marker(connection.dialect)
    sql = (
        f"UPDATE {_quoted(table.name)} SET {', '.join(f'{_quoted(name)} = {marker}' for name in columns)} "
        f"WHERE id = {marker}"
    )
    renamed = [{**row, "id": row["row_id"]} for row in rows]
    connection.exec_driver_sql(sql, _converted(connection, table, [*columns, "id"], renamed))
