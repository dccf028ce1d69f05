"""Where the reference Learning server keeps its state: SQLite by default, PostgreSQL by URL.

The default is ``<repo>/.sandbox/learning/learning.sqlite`` so state survives a restart;
``--database postgresql+psycopg2://...`` (or ``SANDBOX_LEARNING_DATABASE``) puts it in
PostgreSQL. Tables are created on start (the sandbox has no migrations: delete the
file, or the database, to start over).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from sandbox.learning.models import LearningBase

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_PATH = REPO_ROOT / ".sandbox" / "learning" / "learning.sqlite"
DATABASE_URL_ENV = "SANDBOX_LEARNING_DATABASE"


def default_database_url() -> str:
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    DEFAULT_DATABASE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_DATABASE_PATH}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (a test reading back) do not block the import's writer.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A district's rosters are a million rows: with SQLite's default 2 MB page cache every
    # batch's key lookups read their index pages from the file again. 256 MB of cache and
    # reads through a memory map keep a district's indexes in memory.
    cursor.execute("PRAGMA cache_size=-262144")
    cursor.execute("PRAGMA mmap_size=4294967296")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def open_database(url: str) -> sessionmaker[Session]:
    """An engine for ``url`` with every table created; returns the session factory."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine: Engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_driver_name() == "psycopg2":
        # execute_batch for UPDATE executemany: one round trip per page of rows, not per row.
        engine = create_engine(url, pool_pre_ping=True, executemany_mode="values_plus_batch")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _drop_tables_keyed_by_external_id_alone(engine)
    LearningBase.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


# Tables whose rows changed key when users became identified by (user_type, external_id).
_RESHAPED_TABLES = ("users", "user_levels", "classes", "rosters", "parent_links", "notifications")


def _drop_tables_keyed_by_external_id_alone(engine: Engine) -> None:
    """A reference-server database from before identity by type is rebuilt empty (it is a sandbox).

    Its users were keyed by external id alone, so a student and a teacher with the same
    number could not both exist.
    """
    names = set(inspect(engine).get_table_names())
    if "rosters" not in names:
        return
    if "user_type" in {column["name"] for column in inspect(engine).get_columns("rosters")}:
        return
    with engine.begin() as connection:
        for name in _RESHAPED_TABLES:
            if name in names:
                connection.execute(text(f'DROP TABLE "{name}"'))
