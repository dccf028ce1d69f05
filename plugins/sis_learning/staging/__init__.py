"""The staging database: every staged table, through SQLAlchemy, on SQLite or PostgreSQL.

One module per area, all on one ``Base`` metadata:
``base`` (engine, sessions, bulk insert), ``runs`` (run summaries), ``source``
(raw records and the typed stg_* tables from extract), ``quality`` (rejected and
excluded rows), ``learning`` (the Learning-shaped rows of a run), ``changes``
(snapshots and change sets of the load), ``ledger`` (grade push).
"""

from sis_learning.staging.base import Base, bulk_insert, create_all, get_engine, session_scope

__all__ = ["Base", "bulk_insert", "create_all", "get_engine", "session_scope"]
