"""Engine, sessions and the bulk insert path shared by every staged table.

The staging database is chosen by ``SIS_LEARNING_STAGING_URL`` (any SQLAlchemy URL;
``postgresql+psycopg://...`` in production). Without it, the embedded default is a
SQLite file under ``var/`` in the repository. On PostgreSQL, large inserts go through
``COPY ... FROM STDIN`` (an order of magnitude faster than INSERT; ``staging/postgres.py``);
elsewhere through executemany.
"""

from __future__ import annotations

import importlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, MetaData, Table, event, text
from sqlalchemy.engine import Connection, Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from sis_learning.config import REPO_ROOT

DEFAULT_SQLITE_PATH = REPO_ROOT / "var" / "staging.sqlite"
STAGING_URL_ENV = "SIS_LEARNING_STAGING_URL"
# PostgreSQL: how many connections a stage writes its tables on at once (side_by_side).
STAGING_WORKERS_ENV = "SIS_LEARNING_STAGING_WORKERS"
DEFAULT_STAGING_WORKERS = 2

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Modules that declare tables; imported by create_all so every table exists.
MODEL_MODULES = (
    "sis_learning.staging.runs",
    "sis_learning.staging.source",
    "sis_learning.staging.quality",
    "sis_learning.staging.learning",
    "sis_learning.staging.changes",
    "sis_learning.staging.ledger",
    "sis_learning.staging.reviews",
    "sis_learning.staging.transition",
    "sis_learning.staging.delta",
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def staging_url() -> str:
    url = os.environ.get(STAGING_URL_ENV)
    if url:
        return url
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


_ENGINES: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the report read while a load writes; NORMAL sync is safe with WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _driver_arguments(url: str) -> dict[str, Any]:
    """psycopg 3 binds parameters on the client, as psycopg2 does.

    Its default, server-side binding, makes PostgreSQL deduce one type per parameter, and
    a parameter used twice (``SELECT :district ... WHERE district_id = :district``) as text
    and as varchar is refused. Client-side binding keeps every statement meaning what it
    meant under psycopg2; COPY is the same either way.
    """
    from sqlalchemy.engine import make_url

    if make_url(url).get_dialect().driver != "psycopg":
        return {}
    import psycopg

    return {"connect_args": {"cursor_factory": psycopg.ClientCursor}}


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process (engines pool connections; create them once)."""
    url = url or staging_url()
    engine = _ENGINES.get(url)
    if engine is None:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, **_driver_arguments(url))
        _ENGINES[url] = engine
    return engine


def dispose_engines() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def import_models() -> None:
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def create_all(engine: Engine | None = None) -> Engine:
    """Create every staged table that does not exist yet (idempotent)."""
    engine = engine or get_engine()
    import_models()
    Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


class _Schema:
    """What the staging database holds of the models' tables, read in a few catalogue queries.

    Reflection table by table took 186 queries (0.3 s on PostgreSQL, paid by every task that
    opens staging); SQLAlchemy's ``get_multi_*`` read every table's columns, indexes and
    options at once.
    """

    def __init__(self, engine: Engine) -> None:
        from sqlalchemy import inspect

        inspector = inspect(engine)
        present = set(inspector.get_table_names())
        self.tables = [table for table in Base.metadata.sorted_tables if table.name in present]
        names = [table.name for table in self.tables]
        self.columns: dict[str, list[dict[str, Any]]] = {}
        self.indexes: dict[str, set[str]] = {}
        self.options: dict[str, dict[str, Any]] = {}
        if not names:
            return
        self.columns = {key[1]: value for key, value in inspector.get_multi_columns(filter_names=names).items()}
        self.indexes = {
            key[1]: {index["name"] for index in value}
            for key, value in inspector.get_multi_indexes(filter_names=names).items()
        }
        self.primary_keys: dict[str, str | None] = {}
        if engine.dialect.name == "postgresql":
            self.options = {
                key[1]: value.get("postgresql_with") or {}
                for key, value in inspector.get_multi_table_options(filter_names=names).items()
            }
            self.primary_keys = {
                key[1]: value.get("name") if value.get("constrained_columns") else None
                for key, value in inspector.get_multi_pk_constraint(filter_names=names).items()
            }


def _add_missing_columns(engine: Engine) -> None:
    """Bring a staging database made by an older version up to the models: nullable columns
    added since are added (``ALTER TABLE ... ADD COLUMN``), and a column the models now allow
    to be null loses its NOT NULL (PostgreSQL: ``ALTER COLUMN ... DROP NOT NULL``; SQLite,
    which cannot alter a column, rebuilds the table with its rows). Nothing is dropped.
    """
    from sqlalchemy import inspect

    schema = _Schema(engine)
    statements = []
    rebuild = []
    for table in schema.tables:
        existing = {column["name"]: column for column in schema.columns.get(table.name, [])}
        for column in table.columns:
            found = existing.get(column.name)
            if found is None and column.nullable:
                column_type = column.type.compile(dialect=engine.dialect)
                statements.append(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {column_type}')
            elif found is not None and column.nullable and not found["nullable"] and not column.primary_key:
                if engine.dialect.name == "postgresql":
                    statements.append(f'ALTER TABLE "{table.name}" ALTER COLUMN "{column.name}" DROP NOT NULL')
                elif engine.dialect.name == "sqlite" and table not in rebuild:
                    rebuild.append(table)
    if statements or rebuild:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
            for table in rebuild:
                columns = ", ".join(
                    f'"{column["name"]}"'
                    for column in inspect(connection).get_columns(table.name)
                    if column["name"] in table.c
                )
                for index in inspect(connection).get_indexes(table.name):
                    connection.exec_driver_sql(f'DROP INDEX IF EXISTS "{index["name"]}"')
                connection.exec_driver_sql(f'ALTER TABLE "{table.name}" RENAME TO "{table.name}__before_upgrade"')
                table.create(connection)
                connection.exec_driver_sql(
                    f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} FROM "{table.name}__before_upgrade"'
                )
                connection.exec_driver_sql(f'DROP TABLE "{table.name}__before_upgrade"')
        if rebuild:
            schema = _Schema(engine)  # the rebuilt tables' indexes are the models' now
    _add_missing_indexes(engine, schema)
    _upgrade_storage(engine, schema)


def _upgrade_storage(engine: Engine, schema: _Schema) -> None:
    """Drop the indexes a model retired (``info["retired_indexes"]``) and, on PostgreSQL, give a
    table the storage parameters its model asks for (``postgresql_with``: e.g. a fillfactor).

    A new fillfactor applies to pages written from then on; rows already stored stay as they are.
    On PostgreSQL a table whose model says ``info["postgresql_primary_key"] = False`` loses its
    primary key constraint (its ``id`` stays, filled by its sequence: nothing reads by it) and
    replicates deletes by the whole row (``REPLICA IDENTITY FULL``, for logical replication).
    """
    statements = []
    for table in schema.tables:
        constraint = schema.primary_keys.get(table.name)  # read on PostgreSQL only
        if constraint and table.info.get("postgresql_primary_key", True) is False:
            statements.append(f'ALTER TABLE "{table.name}" DROP CONSTRAINT "{constraint}"')
            statements.append(f'ALTER TABLE "{table.name}" REPLICA IDENTITY FULL')
        retired = table.info.get("retired_indexes", ())
        wanted = table.dialect_options["postgresql"]["with"] if engine.dialect.name == "postgresql" else {}
        if not (retired or wanted):
            continue
        existing = schema.indexes.get(table.name, set())
        statements += [f'DROP INDEX IF EXISTS "{name}"' for name in retired if name in existing]
        if wanted:
            options = schema.options.get(table.name) or {}
            if {key: str(value) for key, value in wanted.items()} != {
                key: str(value) for key, value in options.items()
            }:
                settings = ", ".join(f"{key} = {value}" for key, value in wanted.items())
                statements.append(f'ALTER TABLE "{table.name}" SET ({settings})')
    if statements:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)


def _add_missing_indexes(engine: Engine, schema: _Schema) -> None:
    """Create the models' indexes an older staging database lacks (``create_all`` only makes
    the indexes of tables it creates)."""
    missing = []
    for table in schema.tables:
        existing = schema.indexes.get(table.name, set())
        missing += [index for index in table.indexes if index.name not in existing]
    if missing:
        with engine.begin() as connection:
            for index in missing:
                index.create(connection, checkfirst=True)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def bulk_insert(connection_or_engine: Any, table: Table | Any, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert many rows into ``table`` (a Table or a declarative class); returns the count.

    On PostgreSQL this streams the rows through COPY in CSV form; on other databases it
    uses one executemany. Column names come from the first row; rows must share keys.
    Runs inside the caller's transaction when given a Connection.
    """
    table = getattr(table, "__table__", table)
    rows = list(rows)
    if not rows:
        return 0
    if isinstance(connection_or_engine, Engine):
        with connection_or_engine.begin() as connection:
            return bulk_insert(connection, table, rows)
    columns = list(rows[0].keys())
    return insert_tuples(
        connection_or_engine, table, columns, [tuple(row.get(name) for name in columns) for row in rows]
    )


def insert_tuples(
    connection: Any,
    table: Table | Any,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    converted: bool = False,
) -> int:
    """Insert rows given as tuples in ``columns`` order: :func:`bulk_insert` without the dicts.

    For a caller that builds many rows (extract): no per-row dictionary to build and take
    apart again. ``converted``: the values are already in the SQLite driver's form (see
    :func:`insert_frame`), so none is converted row by row. Runs inside the caller's
    transaction; returns the count.
    """
    table = getattr(table, "__table__", table)
    if not rows:
        return 0
    if isinstance(connection, Session):
        connection = connection.connection()
    dialect = connection.dialect.name
    quoted = ", ".join(f'"{name}"' for name in columns)
    if dialect == "postgresql":
        from sis_learning.staging.postgres import copy_in

        return copy_in(connection, table, columns, rows)
    if dialect == "sqlite":
        # One executemany through the driver: SQLAlchemy's per-row parameter processing is
        # most of the cost of a large insert on SQLite. Values are converted the way the
        # column types would: JSON for dicts and lists, SQLAlchemy's text form for datetimes.
        placeholders = ", ".join("?" for _ in columns)
        converters = [_sqlite_converter(table.c[name].type) for name in columns]
        if converted or all(convert is _identity for convert in converters):
            parameters = rows
        else:
            parameters = [tuple(convert(value) for value, convert in zip(row, converters, strict=True)) for row in rows]
        connection.exec_driver_sql(f'INSERT INTO "{table.name}" ({quoted}) VALUES ({placeholders})', parameters)
        return len(rows)
    connection.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
    return len(rows)


def insert_frame(
    connection: Any,
    table: Table | Any,
    frame: Any,
    constants: Mapping[str, Any] | None = None,
    chunk_rows: int = 50_000,
) -> int:
    """Insert a pandas frame's rows, plus ``constants`` (the same on every row); returns the count.

    Column by column into plain lists (None for missing values), then zipped into tuples
    for :func:`insert_tuples`: no dict per row and no per-row pandas access, in chunks so
    the Python copy of a million rows never sits in memory at once. On SQLite the values
    are converted to the driver's form column by column, and a constant (a run's
    ``created_at``) once, instead of row by row.
    """
    table = getattr(table, "__table__", table)
    if isinstance(connection, Session):
        connection = connection.connection()
    constants = dict(constants or {})
    columns = [*frame.columns, *constants]
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        constants = {name: _sqlite_converter(table.c[name].type)(value) for name, value in constants.items()}
    for start in range(0, len(frame), chunk_rows):
        chunk = frame.iloc[start : start + chunk_rows]
        values: list[Any] = []
        for name in frame.columns:
            column = chunk[name].to_numpy(dtype=object, na_value=None).tolist()
            convert = _sqlite_converter(table.c[name].type) if sqlite else _identity
            values.append(column if convert is _identity else [convert(value) for value in column])
        values += [itertools.repeat(value, len(chunk)) for value in constants.values()]
        insert_tuples(connection, table, columns, list(zip(*values, strict=True)), converted=sqlite)
    return len(frame)


def _identity(value: Any) -> Any:
    return value


def _sqlite_converter(column_type: Any):
    """How a Python value is stored by SQLAlchemy's SQLite dialect, for the driver-level insert."""
    from datetime import date, datetime

    from sqlalchemy import JSON, Date, DateTime

    if isinstance(column_type, JSON):
        import json

        return lambda value: None if value is None else json.dumps(value, ensure_ascii=False)
    if isinstance(column_type, DateTime):
        return lambda value: value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value
    if isinstance(column_type, Date):
        return lambda value: value.isoformat() if isinstance(value, date) else value
    return _identity


def delete_run_rows(connection: Any, table: Table | Any, district_id: str, run_id: str) -> int:
    """Delete one run's rows from a run-keyed table, so a retried task starts clean."""
    table = getattr(table, "__table__", table)
    result = connection.execute(
        table.delete().where(table.c.district_id == district_id).where(table.c.run_id == run_id)
    )
    return result.rowcount or 0


def ping(engine: Engine | None = None) -> None:
    with (engine or get_engine()).connect() as connection:
        connection.execute(text("SELECT 1"))


# The columns every staged table is read by a run with: after a run's rows are added, often
# the only statistics worth refreshing (``analyze(..., columns=RUN_COLUMNS)``).
RUN_COLUMNS = ("district_id", "run_id")


def analyze(connection: Any, tables: Iterable[Any], columns: Sequence[str] = ()) -> None:
    """PostgreSQL: refresh the planner's statistics of ``tables`` (models, tables or names) after a bulk write.

    Autovacuum analyses a table only once enough of it changed, some time later, and never
    within the run that wrote it: until then the planner takes a new run's rows for a handful,
    and a read of a few thousand ids among a million staged rows became a nested loop over
    all of them. ``columns``: only those columns' statistics (the table's size is refreshed
    anyway); at L, ``district_id, run_id`` of the staged source tables took 0.7 s where every
    column took 2.4 s. A table with a column the planner has no statistics for yet is
    analysed whole all the same: the learning snapshot, last analysed by a first full load
    while still empty, left an incremental diff to guess at its keys (48 s at L instead of 4).
    SQLite: nothing (its planner does not need it here).
    """
    if connection.dialect.name != "postgresql":
        return
    names = [getattr(getattr(table, "__table__", table), "name", table) for table in tables]
    whole = set(names)
    if columns:
        # Tables whose every column has statistics (pg_stats has a row per analysed column,
        # all-NULL ones included): those only need the run columns refreshed.
        whole = {
            name
            for (name,) in connection.exec_driver_sql(
                "SELECT c.table_name FROM information_schema.columns c "
                "LEFT JOIN pg_stats s ON s.schemaname = c.table_schema AND s.tablename = c.table_name "
                "AND s.attname = c.column_name "
                "WHERE c.table_schema = current_schema() AND c.table_name = ANY(%(names)s) "
                "GROUP BY c.table_name HAVING count(s.attname) < count(*)",
                {"names": names},
            )
        }
    statements = [f'"{name}"' if name in whole else f'"{name}" ({", ".join(columns)})' for name in names]
    connection.exec_driver_sql("ANALYZE " + ", ".join(statements))


def analyze_if_changed(connection: Any, table: Any) -> bool:
    """PostgreSQL: ``ANALYZE`` a table when a tenth or more of the rows its statistics count were
    written since they were taken (``pg_stat_user_tables.n_mod_since_analyze``: autovacuum's
    own threshold, which it would act on later, outside the run), or they describe an empty
    table. The learning snapshot is written by the load alone: the load keeps its statistics
    this way (a district's first load analysed it while empty, then filled it), and an
    incremental run's diff and load need not sample it again (0.73 s each at L). The counter
    can miss the last second of another connection's writes: a tenth is far from a second's.
    Returns whether it analysed. SQLite: nothing.
    """
    if connection.dialect.name != "postgresql":
        return False
    name = getattr(getattr(table, "__table__", table), "name", table)
    found = connection.exec_driver_sql(
        "SELECT c.reltuples, s.n_mod_since_analyze FROM pg_class c "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = to_regclass(%(name)s)",
        {"name": name},
    ).first()
    if found is None:
        return False
    counted, modified = found
    if counted is not None and counted > 0 and (modified or 0) < 0.1 * counted:
        return False
    connection.exec_driver_sql(f'ANALYZE "{name}"')
    return True


@contextmanager
def along_run_index(connection: Any) -> Iterator[None]:
    """PostgreSQL: the statements inside read a run's rows along the table's run index.

    For the copies of a base run's rows into a new run (an incremental run's carry-forward):
    read in index order, the copied rows enter the new run's part of the same index in key
    order, one page after the next, where a sequential scan hands them over in the heap's
    order and every insertion lands on another index page. On a kept L database (autovacuum
    off, shared_buffers 128 MB): 837,542 staged enrollments in 4.1 and 5.4 s against 7.0 and
    7.1 s; 824,688 Learning roster rows in 3.7 s against 6.0 s. The planner would choose the
    sequential scan by its costs. SQLite: nothing (it reads a run along the index already).
    The settings end with the block (or the transaction, on an error).
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    yield
    connection.exec_driver_sql("SET LOCAL enable_seqscan TO DEFAULT")
    connection.exec_driver_sql("SET LOCAL enable_bitmapscan TO DEFAULT")


def temporary_values(connection: Any, name: str, values: Iterable[Any], column: str = "value") -> int:
    """(Re)create the temporary table ``name`` with one text column holding ``values`` (distinct).

    The delta stages select "the rows of these keys" with ``IN (SELECT value FROM name)``.
    Returns the number of values; see :func:`temporary_rows`.
    """
    return temporary_rows(connection, name, ((str(value),) for value in values), (column,))


def temporary_rows(connection: Any, name: str, rows: Iterable[tuple[str, ...]], columns: tuple[str, ...]) -> int:
    """(Re)create the temporary table ``name`` of text ``columns`` (their primary key) holding ``rows`` (distinct).

    On PostgreSQL the rows go in with one statement, and the table is analysed: autovacuum
    never analyses a temporary table, and without statistics the planner guesses its size and
    reads whole tables instead of their indexes. Returns the number of rows.
    """
    distinct = sorted(set(rows))
    names = ", ".join(columns)
    definitions = ", ".join(f"{column} VARCHAR(250)" for column in columns)
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} ({definitions}, PRIMARY KEY ({names}))")
    if not distinct:
        return 0
    if connection.dialect.name == "postgresql":
        arrays = ", ".join(f"unnest(CAST(:c{position} AS text[]))" for position in range(len(columns)))
        connection.execute(
            text(f"INSERT INTO {name} ({names}) SELECT {arrays}"),
            {f"c{position}": list(values) for position, values in enumerate(zip(*distinct, strict=True))},
        )
        connection.exec_driver_sql(f"ANALYZE {name}")
    else:
        markers = ", ".join(f":c{position}" for position in range(len(columns)))
        connection.execute(
            text(f"INSERT INTO {name} ({names}) VALUES ({markers})"),
            [{f"c{position}": value for position, value in enumerate(row)} for row in distinct],
        )
    return len(distinct)


# --- several tables at once on PostgreSQL ----------------------------------------------------
#
# Copying a run's rows forward (transform after an incremental read) and comparing them with
# the snapshot (the diff) are all server work on PostgreSQL, one core per statement: at
# district scale they took twice SQLite's time, one core busy. Jobs that write different
# tables (or different entities' rows) run there on several connections at once, each in a
# transaction of its own. SQLite has one writer: there the caller runs them one after another
# in its own transaction.


def staging_workers(engine: Engine) -> int:
    """Connections :func:`side_by_side` uses: 1 on SQLite; on PostgreSQL ``SIS_LEARNING_STAGING_WORKERS`` (2)."""
    if engine.dialect.name != "postgresql":
        return 1
    value = os.environ.get(STAGING_WORKERS_ENV, "").strip()
    if not value:
        return DEFAULT_STAGING_WORKERS
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"{STAGING_WORKERS_ENV} must be a whole number of connections, not {value!r}") from None


def in_background(
    engine: Engine,
    jobs: Sequence[Callable[[Connection], Any]],
    undo: Callable[[Connection], Any] | None = None,
) -> Future | None:
    """PostgreSQL: start :func:`side_by_side` of ``jobs`` in a thread and return its future; elsewhere None.

    For database work a stage can start before its own computing is done (copying the base
    run's rows forward): the server copies while this process computes, each on a core of its
    own. The caller waits with :func:`finish_background` before it writes rows that must come
    after the copied ones, and on an error of its own.
    """
    if staging_workers(engine) <= 1:
        return None
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging-background")
    future = executor.submit(side_by_side, engine, jobs, undo)
    executor.shutdown(wait=False)
    return future


def finish_background(future: Future | None) -> None:
    """Wait for :func:`in_background`'s jobs and raise their error (their ``undo`` has run)."""
    if future is not None:
        future.result()


@contextmanager
def computing_beside(engine: Engine, future: Future | None, undo: Callable[[Connection], Any]) -> Iterator[None]:
    """The caller's own computing while :func:`in_background`'s jobs run: on its error, the jobs
    are waited for and ``undo`` removes what they wrote (in a transaction of its own), then the
    caller's error is raised. Without background jobs (``future`` None) nothing is added."""
    try:
        yield
    except BaseException:
        if future is not None:
            future.exception()
            with engine.begin() as connection:
                undo(connection)
        raise


def side_by_side(
    engine: Engine,
    jobs: Sequence[Callable[[Connection], Any]],
    undo: Callable[[Connection], Any] | None = None,
) -> list[Any]:
    """Run ``jobs`` (each given a connection in a transaction of its own) on ``staging_workers`` connections.

    Jobs start in the order given (largest first balances best) and each commits on its own.
    Every job runs to its end; if one failed, ``undo`` (in a transaction of its own) removes
    what the others committed, and the first error is raised: the stage's rows are never
    left half-written by an error. A process killed part-way can leave them so; its task
    failed, the next stage does not run, and the rerun replaces them. Returns the jobs'
    results in order.
    """

    def run(job: Callable[[Connection], Any]) -> Any:
        with engine.begin() as connection:
            return job(connection)

    with ThreadPoolExecutor(max_workers=staging_workers(engine), thread_name_prefix="staging") as pool:
        futures = [pool.submit(run, job) for job in jobs]
        errors = [future.exception() for future in futures]
    failed = next((error for error in errors if error is not None), None)
    if failed is not None:
        if undo is not None:
            with engine.begin() as connection:
                undo(connection)
        raise failed
    return [future.result() for future in futures]
