"""Stages write their tables side by side on PostgreSQL, and never leave them half-written by an error.

The diff and transform write one entity's (or one table's) rows per job
(``staging.base.side_by_side``): on PostgreSQL on several connections at once, each job in
a transaction of its own; on SQLite one after another in the caller's transaction. After an
error in one job, ``undo`` removes what the others committed, and the error reaches the task.
A diff or a transform on two connections gives exactly the rows it gives on one.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from sis_learning import diff, transform
from sis_learning.staging.base import STAGING_WORKERS_ENV, get_engine, side_by_side, staging_workers
from sis_learning.staging.changes import ChangeSet
from sis_learning.staging.learning import LEARNING_TABLES, LearningUser
from tests.load.district_rows import DISTRICT_ID, LearningDistrict, make_config, write_run


def _users(connection) -> int:
    table = LearningUser.__table__
    return int(connection.scalar(select(func.count()).select_from(table).where(table.c.district_id == "sbs")))


def _user(connection, external_id: str) -> None:
    connection.execute(
        LearningUser.__table__.insert().values(
            district_id="sbs",
            run_id="r",
            user_type="S",
            external_id=external_id,
            first_name="Ana",
            last_name="Diaz",
            login=f"u{external_id}",
        )
    )


@pytest.mark.postgres
def test_postgres_runs_the_jobs_at_the_same_time(postgres_url, monkeypatch):
    monkeypatch.delenv(STAGING_WORKERS_ENV, raising=False)
    engine = diff.create_all(get_engine(postgres_url))
    assert staging_workers(engine) == 2
    # Each job waits for the other: one after another, the barrier would time out.
    barrier = threading.Barrier(2, timeout=20)

    def job(external_id: str):
        def run(connection):
            _user(connection, external_id)
            barrier.wait()
            return external_id

        return run

    assert side_by_side(engine, [job("1"), job("2")]) == ["1", "2"]
    with engine.connect() as connection:
        assert _users(connection) == 2


@pytest.mark.postgres
def test_an_error_in_one_job_undoes_the_others_and_reaches_the_caller(postgres_url):
    engine = diff.create_all(get_engine(postgres_url))

    def fails(connection):
        _user(connection, "9")
        raise RuntimeError("the job's own error")

    def undo(connection):
        table = LearningUser.__table__
        connection.execute(table.delete().where(table.c.district_id == "sbs"))

    with pytest.raises(RuntimeError, match="the job's own error"):
        side_by_side(engine, [lambda connection: _user(connection, "1"), fails], undo=undo)
    with engine.connect() as connection:
        assert _users(connection) == 0  # the other job's committed row is gone, the failed one's never landed


def test_sqlite_has_one_writer(sqlite_url, monkeypatch):
    monkeypatch.setenv(STAGING_WORKERS_ENV, "4")
    assert staging_workers(get_engine(sqlite_url)) == 1


@pytest.mark.postgres
def test_a_bad_worker_count_is_a_clear_error(postgres_url, monkeypatch):
    monkeypatch.setenv(STAGING_WORKERS_ENV, "two")
    with pytest.raises(ValueError, match="SIS_LEARNING_STAGING_WORKERS must be a whole number"):
        staging_workers(get_engine(postgres_url))


def _change_set(engine, run_id: str) -> list[tuple]:
    changes = ChangeSet.__table__
    with engine.connect() as connection:
        return sorted(
            connection.execute(
                select(
                    changes.c.entity, changes.c.key, changes.c.action, changes.c.status, changes.c.content_hash
                ).where(changes.c.district_id == DISTRICT_ID, changes.c.run_id == run_id)
            ).all()
        )


@pytest.mark.postgres
def test_the_diff_on_two_connections_equals_the_diff_on_one(postgres_url, monkeypatch):
    engine = diff.create_all(get_engine(postgres_url))
    district = LearningDistrict.generate(schools=3, students_per_school=12)
    write_run(engine, district, "one")
    write_run(engine, district, "two")
    monkeypatch.setenv(STAGING_WORKERS_ENV, "1")
    serial = diff.compute_changes(engine, make_config(), "one")
    monkeypatch.setenv(STAGING_WORKERS_ENV, "2")
    parallel = diff.compute_changes(engine, make_config(), "two")
    assert parallel == serial
    assert _change_set(engine, "two") == _change_set(engine, "one")
    assert sum(serial["rosters"].values()) > 0


@pytest.mark.postgres
def test_a_failing_transform_write_leaves_no_learning_rows(postgres_url, monkeypatch):
    engine = diff.create_all(get_engine(postgres_url))
    district = LearningDistrict.generate(schools=1, students_per_school=5)
    write_run(engine, district, "run-1")  # rows of an earlier attempt
    frames = {entity: transform.pd.DataFrame() for entity in LEARNING_TABLES}
    frames["users"] = transform.pd.DataFrame([{"user_type": "S", "no_such_column": 1}])
    with pytest.raises(Exception):  # noqa: B017 - the database's own error for the bad frame
        transform._write(engine, make_config(), "run-1", frames)
    with engine.connect() as connection:
        for model in LEARNING_TABLES.values():
            table = model.__table__
            rows = connection.scalar(
                select(func.count())
                .select_from(table)
                .where(table.c.district_id == DISTRICT_ID, table.c.run_id == "run-1")
            )
            assert rows == 0, table.name
