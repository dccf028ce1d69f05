"""The learning_* tables' storage (``staging/learning.py``, ``staging.base._upgrade_storage``).

Nothing reads a learning_* row by ``id``. On PostgreSQL the tables keep the column (filled by
its sequence) without a primary key index, whose upkeep was a quarter of every row transform
writes or an incremental run copies forward; deletes replicate by the whole row (``REPLICA
IDENTITY FULL``), so a logical replica of staging still takes retention's deletes. A staging
database made by an older version (with the primary keys) is upgraded by ``create_all`` and
keeps its rows. SQLite keeps ``id INTEGER PRIMARY KEY``: there it is the rowid and costs nothing.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from sis_learning.staging.base import create_all
from sis_learning.staging.learning import LEARNING_TABLES
from tests.staging.older_database import upgraded

OLD_ROSTERS = (
    "CREATE TABLE learning_rosters (id SERIAL NOT NULL, district_id VARCHAR(64) NOT NULL, run_id VARCHAR(250) "
    "NOT NULL, class_id VARCHAR(64) NOT NULL, user_type VARCHAR(1), user_id VARCHAR(64) NOT NULL, "
    "role VARCHAR(20) NOT NULL, CONSTRAINT pk_learning_rosters PRIMARY KEY (id))"
)


@pytest.mark.postgres
def test_learning_tables_on_postgresql_have_no_primary_key_and_an_older_database_is_upgraded(postgres_url):
    engine = upgraded(
        postgres_url,
        OLD_ROSTERS,
        "INSERT INTO learning_rosters (district_id, run_id, class_id, user_type, user_id, role) "
        "VALUES ('tiny', 'old-run', '300010', 'S', '1000061', 'student')",
    )
    inspector = inspect(engine)
    for table in (model.__table__.name for model in LEARNING_TABLES.values()):
        assert inspector.get_pk_constraint(table)["constrained_columns"] == [], table
        assert f"ix_{table}_run" in {index["name"] for index in inspector.get_indexes(table)}, table
    # Other staged tables keep theirs (their readers page and order by id).
    assert inspector.get_pk_constraint("stg_students")["constrained_columns"] == ["id"]
    assert inspector.get_pk_constraint("learning_snapshot")["constrained_columns"] == ["id"]
    with engine.begin() as connection:
        identities = dict(
            connection.execute(
                text("SELECT relname, relreplident FROM pg_class WHERE relkind = 'r' AND relname LIKE 'learning_%'")
            ).all()
        )
        assert {name: identities[name] for name in identities if name != "learning_snapshot"} == dict.fromkeys(
            (model.__table__.name for model in LEARNING_TABLES.values()), "f"
        )
        # The upgraded table kept its row, and a new row still gets the next id from the sequence.
        connection.execute(
            text(
                "INSERT INTO learning_rosters (district_id, run_id, class_id, user_type, user_id, role) "
                "VALUES ('tiny', 'new-run', '300010', 'S', '1000062', 'student')"
            )
        )
        assert connection.execute(text("SELECT id, run_id FROM learning_rosters ORDER BY id")).all() == [
            (1, "old-run"),
            (2, "new-run"),
        ]
        # A retention-style delete works with the whole-row replica identity.
        connection.execute(text("DELETE FROM learning_rosters WHERE run_id = 'old-run'"))
    engine.dispose()


def test_sqlite_keeps_the_rowid_primary_key(sqlite_url):
    engine = create_all(create_engine(sqlite_url))
    inspector = inspect(engine)
    assert inspector.get_pk_constraint("learning_rosters")["constrained_columns"] == ["id"]
    engine.dispose()
