"""Retention (``staging/retention.py``): old runs' detail rows go, what a later run or a person needs stays.

Each test writes a district's run history into a real staging database (SQLite and
PostgreSQL): ``sync_runs`` and ``extract_reads`` rows as the pipeline writes them, and rows
of every detail table per run. The end-to-end test (tests/e2e/test_retention.py) prunes
after real imports and checks the next incremental run still equals a full one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Boolean, DateTime, Integer, text

from sis_learning.config import RetentionSettings
from sis_learning.staging.base import bulk_insert
from sis_learning.staging.changes import ChangeSet
from sis_learning.staging.retention import detail_tables, prune

NOW = datetime(2026, 12, 6, 12, 0)
DISTRICT, OTHER = "springfield", "shelbyville"


def filler(table) -> dict:
    """A value for each required column (the driver-level insert applies no Python-side default)."""
    values = {}
    for column in table.columns:
        if column.primary_key or column.nullable or column.server_default is not None:
            continue
        if isinstance(column.type, Boolean):
            values[column.name] = False
        elif isinstance(column.type, Integer):
            values[column.name] = 0
        elif isinstance(column.type, DateTime):
            values[column.name] = NOW
        else:
            values[column.name] = "x"
    return values


def stage_run(engine, district: str, run_id: str, *, age_days: float, status: str, reads: dict[str, str]) -> None:
    """One run: its sync_runs row, its reads, and two rows in every detail table (raw records: per entity)."""
    started = NOW - timedelta(days=age_days)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sync_runs (district_id, run_id, kind, status, started_at, counts, durations) "
                "VALUES (:d, :r, 'import', :s, :t, '{}', '{}')"
            ),
            {"d": district, "r": run_id, "s": status, "t": started},
        )
        for entity, mode in reads.items():
            connection.execute(
                text(
                    "INSERT INTO extract_reads (district_id, run_id, entity, mode, read_at) VALUES (:d, :r, :e, :m, :t)"
                ),
                {"d": district, "r": run_id, "e": entity, "m": mode, "t": started},
            )
        for table in detail_tables():
            base = {**filler(table), "district_id": district, "run_id": run_id}
            if table.name == "raw_records":
                rows = [{**base, "entity": entity, "payload": "{}"} for entity in ("students", "staff")]
            else:
                rows = [base, dict(base)]
            bulk_insert(connection, table, rows)
        changes = [("unchanged", "S:1"), ("unchanged", "S:2"), ("create", "S:3"), ("remove", "S:4")]
        bulk_insert(
            connection,
            ChangeSet,
            [
                {
                    "district_id": district,
                    "run_id": run_id,
                    "entity": "users",
                    "key": key,
                    "action": action,
                    "status": "accepted",
                }
                for action, key in changes
            ],
        )


def rows_of(engine, table: str, district: str, run_id: str, extra: str = "") -> int:
    with engine.connect() as connection:
        return connection.execute(
            text(f'SELECT COUNT(*) FROM "{table}" WHERE district_id = :d AND run_id = :r {extra}'),
            {"d": district, "r": run_id},
        ).scalar()


def detail_rows(engine, district: str, run_id: str) -> dict[str, int]:
    counts = {table.name: rows_of(engine, table.name, district, run_id) for table in detail_tables()}
    counts["change_set unchanged"] = rows_of(engine, "change_set", district, run_id, "AND action = 'unchanged'")
    counts["change_set sent"] = rows_of(engine, "change_set", district, run_id, "AND action <> 'unchanged'")
    return counts


FULL = {"students": "full", "staff": "full"}
DELTA = {"students": "incremental", "staff": "full"}  # staff is read in full every run


def history(engine) -> None:
    """Springfield: a 60-day-old full run, an old failed run, then a full run and two incremental ones
    40-35 days ago, and a run today; Shelbyville: one old run."""
    stage_run(engine, DISTRICT, "r1-full", age_days=60, status="success", reads=FULL)
    stage_run(engine, DISTRICT, "r2-failed", age_days=50, status="failed", reads=DELTA)
    stage_run(engine, DISTRICT, "r3-full", age_days=40, status="success", reads=FULL)
    stage_run(engine, DISTRICT, "r4-delta", age_days=38, status="success", reads=DELTA)
    stage_run(engine, DISTRICT, "r5-delta", age_days=35, status="success", reads=DELTA)
    stage_run(engine, DISTRICT, "r6-today", age_days=0.1, status="failed", reads=DELTA)
    stage_run(engine, OTHER, "s1", age_days=90, status="success", reads=FULL)
    stage_run(engine, OTHER, "s2", age_days=89, status="success", reads=FULL)


def test_old_runs_lose_their_detail_and_the_next_runs_base_keeps_everything(staging_engine):
    engine = staging_engine
    history(engine)
    before = {run: detail_rows(engine, DISTRICT, run) for run in ("r1-full", "r2-failed", "r5-delta", "r6-today")}

    pruned = prune(engine, DISTRICT, 30, 400, now=NOW)

    gone = {table: 0 for table in before["r1-full"]} | {"change_set sent": 2}
    assert detail_rows(engine, DISTRICT, "r1-full") == gone
    assert detail_rows(engine, DISTRICT, "r2-failed") == gone
    # r5 is the newest successful run (the next incremental run's base), r6 the newest: untouched.
    assert detail_rows(engine, DISTRICT, "r5-delta") == before["r5-delta"]
    assert detail_rows(engine, DISTRICT, "r6-today") == before["r6-today"]
    assert pruned.kept == {"r5-delta": "the newest successful import: the next run's base"}
    # r3 and r4 lose their detail, except the raw students records r5's incremental read rests on
    # (read in full in r3, changes in r4); staff is read in full every run, so its raw records go.
    for run in ("r3-full", "r4-delta"):
        left = detail_rows(engine, DISTRICT, run)
        assert left.pop("raw_records") == 1
        assert rows_of(engine, "raw_records", DISTRICT, run, "AND entity = 'students'") == 1
        assert left == {table: 0 for table in left} | {"change_set sent": 2}
    # Another district's runs are never touched, however old.
    assert detail_rows(engine, OTHER, "s1") == before["r1-full"]
    assert sorted(pruned.detail_runs) == ["r1-full", "r2-failed", "r3-full", "r4-delta"]
    # Every run staged the same rows: r1 and r2 keep the 2 changes they sent, r3 and r4 those and 1 raw record.
    staged = sum(before["r1-full"].values())
    assert pruned.total_rows == 2 * (staged - 2) + 2 * (staged - 3)

    with engine.connect() as connection:
        marked = dict(
            connection.execute(
                text("SELECT run_id, detail_pruned_at FROM sync_runs WHERE district_id = :d"), {"d": DISTRICT}
            ).all()
        )
    # r3 and r4 still hold raw records the chain needs: a later prune takes them once a full read ends it.
    assert {run for run, moment in marked.items() if moment is not None} == {"r1-full", "r2-failed"}


def test_a_newer_full_read_ends_the_raw_chain_and_a_second_prune_finishes_the_job(staging_engine):
    engine = staging_engine
    history(engine)
    prune(engine, DISTRICT, 30, 400, now=NOW)
    stage_run(engine, DISTRICT, "r7-full", age_days=0.05, status="success", reads=FULL)

    again = prune(engine, DISTRICT, 30, 400, now=NOW)

    for run in ("r3-full", "r4-delta", "r5-delta"):
        assert rows_of(engine, "raw_records", DISTRICT, run) == 0, run
        assert rows_of(engine, "stg_students", DISTRICT, run) == 0, run
    assert rows_of(engine, "stg_students", DISTRICT, "r7-full") == 2
    assert sorted(again.detail_runs) == ["r3-full", "r4-delta", "r5-delta"]
    # Idempotent: nothing is left to remove, and the runs already pruned are not gone through again.
    third = prune(engine, DISTRICT, 30, 400, now=NOW)
    assert (third.total_rows, third.detail_runs) == (0, [])


def test_a_dry_run_counts_exactly_what_a_prune_removes_and_removes_nothing(staging_engine):
    engine = staging_engine
    history(engine)
    total = sum(sum(detail_rows(engine, DISTRICT, run).values()) for run in ("r1-full", "r2-failed", "r3-full"))

    dry = prune(engine, DISTRICT, 30, 45, now=NOW, dry_run=True)
    assert sum(sum(detail_rows(engine, DISTRICT, run).values()) for run in ("r1-full", "r2-failed", "r3-full")) == total
    done = prune(engine, DISTRICT, 30, 45, now=NOW)

    assert dry.rows == done.rows and dry.total_rows > 0
    assert (dry.detail_runs, dry.changes_runs) == (done.detail_runs, done.changes_runs)
    assert "would remove" in dry.text() and "removed" in done.text()
    # changes_days 45: the changes r1 and r2 sent (60 and 50 days ago) go too; r3's (40 days) stay.
    assert done.changes_runs == ["r1-full", "r2-failed"]
    assert rows_of(engine, "change_set", DISTRICT, "r1-full") == 0
    assert rows_of(engine, "change_set", DISTRICT, "r3-full", "AND action <> 'unchanged'") == 2


def test_a_running_or_waiting_run_keeps_its_rows_however_old(staging_engine):
    engine = staging_engine
    stage_run(engine, DISTRICT, "waiting", age_days=20, status="running", reads=FULL)
    stage_run(engine, DISTRICT, "newer", age_days=1, status="success", reads=FULL)
    stage_run(engine, DISTRICT, "newest", age_days=0.5, status="failed", reads=FULL)
    before = detail_rows(engine, DISTRICT, "waiting")

    pruned = prune(engine, DISTRICT, 7, 7, now=NOW)

    assert detail_rows(engine, DISTRICT, "waiting") == before
    assert pruned.kept == {"waiting": "still running or waiting for approval"}


def test_retention_off_keeps_everything(staging_engine):
    engine = staging_engine
    history(engine)
    before = detail_rows(engine, DISTRICT, "r1-full")
    pruned = prune(engine, DISTRICT, None, None, now=NOW)
    assert detail_rows(engine, DISTRICT, "r1-full") == before
    assert pruned.total_rows == 0 and "off" in pruned.text()


def test_the_settings_keep_what_was_sent_at_least_as_long_as_the_rest():
    assert RetentionSettings().days == 30 and RetentionSettings().changes_days == 400
    assert RetentionSettings(days=None).days is None
    with pytest.raises(ValueError, match=r"changes_days \(10\) must be at least days \(30\)"):
        RetentionSettings(days=30, changes_days=10)
    with pytest.raises(ValueError):
        RetentionSettings(days=0)
