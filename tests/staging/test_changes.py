"""The change set's storage (``staging/changes.py``): no status in any index, and on PostgreSQL
room on each page, so the load's answer to a row is a heap-only update.

An older staging database (its pending index held ``status``, no fillfactor) is upgraded by
``create_all``: the retired index is dropped, the new one made, the fillfactor set.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, inspect, text

from sis_learning.load import _accept
from sis_learning.staging.base import bulk_insert, create_all
from sis_learning.staging.changes import ChangeSet
from tests.staging.older_database import upgraded

OLD_CHANGE_SET = (
    "CREATE TABLE change_set (id INTEGER PRIMARY KEY, district_id VARCHAR(64) NOT NULL, run_id VARCHAR(250) NOT "
    "NULL, entity VARCHAR(40) NOT NULL, key VARCHAR(200) NOT NULL, organization_id VARCHAR(64), action VARCHAR(20) "
    "NOT NULL, status VARCHAR(20) NOT NULL, content_hash VARCHAR(64), payload TEXT, learning_result VARCHAR(20), "
    "reason TEXT)"
)


def test_an_older_change_set_is_upgraded_and_keeps_its_rows(staging_url):
    engine = upgraded(
        staging_url,
        OLD_CHANGE_SET,
        "CREATE INDEX ix_change_set_run_pending ON change_set (district_id, run_id, entity, action, status, id)",
        "INSERT INTO change_set (id, district_id, run_id, entity, key, action, status) "
        "VALUES (1, 'tiny', 'old-run', 'users', 'S:5', 'create', 'accepted')",
    )
    inspector = inspect(engine)
    indexes = {index["name"]: index["column_names"] for index in inspector.get_indexes("change_set")}
    assert "ix_change_set_run_pending" not in indexes
    assert indexes["ix_change_set_run_action"] == ["district_id", "run_id", "entity", "action", "id"]
    assert not any("status" in columns for columns in indexes.values())
    if engine.dialect.name == "postgresql":
        assert inspector.get_table_options("change_set")["postgresql_with"] == {"fillfactor": "50"}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT key, status FROM change_set")).all() == [("S:5", "accepted")]
    engine.dispose()


@pytest.mark.postgres
def test_accepting_rows_on_postgresql_touches_no_index(postgres_url):
    """The diff writes the rows, the load accepts them: the updates are heap-only (HOT)."""
    engine = create_all(create_engine(postgres_url))
    rows = [
        {
            "district_id": "tiny",
            "run_id": "run-1",
            "entity": "users",
            "key": f"S:{number}",
            "organization_id": "11",
            "action": "create",
            "status": "pending",
            "content_hash": "0" * 64,
            "payload": json.dumps({"external_id": str(number), "first_name": "Ann", "last_name": "Smith"}),
        }
        for number in range(5_000)
    ]
    with engine.begin() as connection:
        bulk_insert(connection, ChangeSet, rows)
    with engine.begin() as connection:
        ids = list(connection.execute(text("SELECT id FROM change_set ORDER BY id")).scalars())
        for start in range(0, len(ids), 1_000):  # as the load records its batches
            _accept(connection, ids[start : start + 1_000], "created")
        updated, heap_only = connection.execute(
            text(
                "SELECT pg_stat_get_xact_tuples_updated('change_set'::regclass), "
                "pg_stat_get_xact_tuples_hot_updated('change_set'::regclass)"
            )
        ).one()
    assert updated == 5_000
    # A page whose rows grew past its free half moves a few of them (non-HOT); with status
    # indexed, or pages filled full, none would be heap-only.
    assert heap_only >= 0.95 * updated
    engine.dispose()
