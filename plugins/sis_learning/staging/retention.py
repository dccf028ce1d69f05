"""Retention: remove old runs' staged detail rows, so staging does not grow without end.

Every import run stages the whole district again: its raw records, ``stg_*`` and
``learning_*`` rows, its change set (a row per key, changed or not), its rejected,
excluded and warned rows. At 200,000 students that is about five million rows a run,
ten million a day. Nothing needs them for long: a run reads only its own rows and its
base run's (the newest successful import), the dashboard and ``make explain`` read the
newest runs.

A district's ``retention`` settings say how long they are kept (docs/staged-tables.md,
"Retention"):

- ``days`` (30): a run's detail rows: ``raw_records``, ``stg_*``, ``learning_*``
  (not ``learning_snapshot``: the current state), the ``change_set`` rows of keys that did
  not change, ``rejected_rows``, ``excluded_rows``, ``validation_warnings``,
  ``extract_changes`` and ``delta_keys``;
- ``changes_days`` (400, a school year and a summer): the ``change_set`` rows of what the
  run created, updated, deactivated or removed in Learning (the audit of what was sent).

Whatever their age, these runs keep everything: the newest successful import (the next
incremental run's base, and what analysts query as the district's current state); the
newest import whatever its outcome (the dashboard's and ``make explain``'s run); a run
still running or waiting for a person's approval; and, for ``raw_records`` only, each
successful run since an entity's last full read (the raw records of the rows an
incremental run carried forward stay under the run that read them).

The summary tables stay: ``sync_runs`` (its ``detail_pruned_at`` and ``changes_pruned_at``
say when a run's rows went), ``sync_run_attempts``, ``extract_counts``, ``extract_reads``,
``stage_deltas``, ``validation_results``, ``mass_change_reviews``, ``transition_matches``.
A run is pruned one table at a time, each in a transaction of its own (short write locks on
SQLite); it is marked pruned only once every table is done, so an interrupted prune is
finished by the next one. The import's report task prunes after a successful run;
``make retention`` does it on demand (``--dry-run`` counts only).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.engine import Engine

from sis_learning.staging.base import import_models

log = logging.getLogger(__name__)

ACTION_UNCHANGED = "unchanged"
RUNNING = "running"
SUCCESS = "success"
RAW_RECORDS = "raw_records"


def detail_tables() -> list[Table]:
    """The run-keyed tables whose rows retention removes after ``days`` (change_set apart)."""
    import_models()
    from sis_learning.staging.changes import ChangeSet  # noqa: F401  (imported for its table)
    from sis_learning.staging.delta import DeltaKey, ExtractChange
    from sis_learning.staging.learning import LEARNING_TABLES
    from sis_learning.staging.quality import ExcludedRow, RejectedRow, ValidationWarning
    from sis_learning.staging.source import STAGED_SOURCE_TABLES, RawRecord

    models = [
        RawRecord,
        *STAGED_SOURCE_TABLES.values(),
        *LEARNING_TABLES.values(),
        RejectedRow,
        ExcludedRow,
        ValidationWarning,
        ExtractChange,
        DeltaKey,
    ]
    return [model.__table__ for model in models]


@dataclass(frozen=True)
class Run:
    run_id: str
    status: str
    started_at: datetime
    detail_pruned: bool
    changes_pruned: bool


@dataclass
class Pruned:
    """What one prune removed (or, in a dry run, would remove) for a district."""

    district_id: str
    dry_run: bool
    detail_before: datetime | None
    changes_before: datetime | None
    detail_runs: list[str] = field(default_factory=list)
    changes_runs: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why it is kept although old
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows removed
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        if self.detail_before is None:
            return f"retention for {self.district_id}: off (retention.days is null): every run's rows are kept"
        parts = [
            f"retention for {self.district_id}: {verb} {self.total_rows:,} staged rows in {self.seconds:.1f} s: "
            f"the detail of {len(self.detail_runs)} run(s) started before {self.detail_before:%Y-%m-%d %H:%M} UTC"
        ]
        if self.changes_before is not None:
            parts.append(
                f"the changes sent to Learning of {len(self.changes_runs)} run(s) "
                f"started before {self.changes_before:%Y-%m-%d %H:%M} UTC"
            )
        line = ", ".join(parts)
        if self.kept:
            line += "; kept although old: " + "; ".join(f"{run} ({why})" for run, why in sorted(self.kept.items()))
        return line


def _runs(connection: Any, district_id: str) -> list[Run]:
    rows = connection.execute(
        text(
            "SELECT run_id, status, started_at, detail_pruned_at, changes_pruned_at FROM sync_runs "
            "WHERE district_id = :d AND kind = 'import' ORDER BY started_at DESC, id DESC"
        ),
        {"d": district_id},
    )
    return [
        Run(
            row.run_id,
            row.status,
            _moment(row.started_at),
            row.detail_pruned_at is not None,
            row.changes_pruned_at is not None,
        )
        for row in rows
    ]


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def kept_runs(runs: list[Run]) -> dict[str, str]:
    """The runs that keep every row whatever their age, and why."""
    kept: dict[str, str] = {}
    if runs:
        kept[runs[0].run_id] = "the newest import"
    successful = [run for run in runs if run.status == SUCCESS]
    if successful:
        kept.setdefault(successful[0].run_id, "the newest successful import: the next run's base")
    for run in runs:
        if run.status == RUNNING:
            kept.setdefault(run.run_id, "still running or waiting for approval")
    return kept


def raw_chain(connection: Any, district_id: str, runs: list[Run]) -> dict[str, set[str]]:
    """Per successful run, the entities whose raw records it keeps: each entity's successful runs
    since its last full read (an incremental run carries forward rows an earlier run read)."""
    successful = [run for run in runs if run.status == SUCCESS]
    if not successful:
        return {}
    reads: dict[str, dict[str, str]] = {}
    for row in connection.execute(
        text(
            "SELECT r.run_id, r.entity, r.mode FROM extract_reads r JOIN sync_runs s "
            "ON s.district_id = r.district_id AND s.run_id = r.run_id AND s.kind = 'import' "
            "WHERE r.district_id = :d AND s.status = 'success' AND r.entity != '*'"
        ),
        {"d": district_id},
    ):
        reads.setdefault(row.run_id, {})[row.entity] = row.mode
    chain: dict[str, set[str]] = {}
    entities = {entity for modes in reads.values() for entity in modes}
    for entity in entities:
        for run in successful:  # newest first: back to (and including) the entity's last full read
            mode = reads.get(run.run_id, {}).get(entity)
            chain.setdefault(run.run_id, set()).add(entity)
            if mode is not None and mode != "incremental":
                break
    return chain


def _delete(engine: Engine, table: str, district_id: str, run_id: str, extra: str = "", **params: Any) -> int:
    with engine.begin() as connection:
        result = connection.execute(
            text(f'DELETE FROM "{table}" WHERE district_id = :d AND run_id = :r {extra}'),
            {"d": district_id, "r": run_id, **params},
        )
        return int(result.rowcount or 0)


def _count(engine: Engine, table: str, district_id: str, run_id: str, extra: str = "", **params: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(f'SELECT COUNT(*) FROM "{table}" WHERE district_id = :d AND run_id = :r {extra}'),
                {"d": district_id, "r": run_id, **params},
            ).scalar()
            or 0
        )


def _mark(engine: Engine, district_id: str, run_id: str, column: str, now: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE sync_runs SET {column} = :now WHERE district_id = :d AND run_id = :r AND kind = 'import'"),
            {"now": now, "d": district_id, "r": run_id},
        )


def prune(
    engine: Engine,
    district_id: str,
    days: float | None,
    changes_days: float | None,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> Pruned:
    """Remove (``dry_run``: count) the staged rows of ``district_id``'s runs older than the settings.

    ``days`` / ``changes_days`` None: that kind of row is kept for ever.
    """
    from sis_learning.staging.runs import utcnow

    started = time.perf_counter()
    now = now or utcnow()
    detail_before = now - timedelta(days=days) if days is not None else None
    changes_before = now - timedelta(days=changes_days) if changes_days is not None and days is not None else None
    result = Pruned(district_id, dry_run, detail_before, changes_before)
    if detail_before is None:
        return result
    with engine.connect() as connection:
        runs = _runs(connection, district_id)
        kept = kept_runs(runs)
        chain = raw_chain(connection, district_id, runs)
    tables = detail_tables()
    work = _count if dry_run else _delete

    def add(table: str, rows: int) -> None:
        result.rows[table] = result.rows.get(table, 0) + rows

    for run in reversed(runs):  # oldest first: an interrupted prune has removed the oldest
        if run.started_at >= detail_before:
            break
        if run.run_id in kept:
            result.kept[run.run_id] = kept[run.run_id]
            continue
        if not run.detail_pruned:
            removed = 0
            raw_kept = sorted(chain.get(run.run_id, ()))
            for table in tables:
                extra, params = "", {}
                if table.name == RAW_RECORDS and raw_kept:
                    extra = "AND entity NOT IN (" + ", ".join(f":e{n}" for n in range(len(raw_kept))) + ")"
                    params = {f"e{n}": entity for n, entity in enumerate(raw_kept)}
                rows = work(engine, table.name, district_id, run.run_id, extra, **params)
                add(table.name, rows)
                removed += rows
            rows = work(engine, "change_set", district_id, run.run_id, "AND action = :same", same=ACTION_UNCHANGED)
            add("change_set", rows)
            if removed + rows:
                result.detail_runs.append(run.run_id)
            # A run whose raw records an incremental chain still needs is pruned again (only
            # those are left) by a later prune, once a newer full read has ended the chain.
            if not dry_run and not raw_kept:
                _mark(engine, district_id, run.run_id, "detail_pruned_at", now)
        if changes_before is not None and run.started_at < changes_before and not run.changes_pruned:
            sent = work(engine, "change_set", district_id, run.run_id, "AND action <> :same", same=ACTION_UNCHANGED)
            add("change_set", sent)
            result.changes_runs.append(run.run_id)
            if not dry_run:
                _mark(engine, district_id, run.run_id, "changes_pruned_at", now)
    result.rows = {table: rows for table, rows in result.rows.items() if rows}
    result.seconds = time.perf_counter() - started
    return result
