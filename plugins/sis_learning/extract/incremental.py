"""Incremental reads: what changed since the district's last successful run, and the rest carried forward.

Decides per run and entity whether to read in full or only what changed (``plan_read``),
records the decision (``extract_reads``), and carries the unchanged staged rows of the base
run forward into this run (``carry_forward``), so validate, transform and diff see the
whole district after an incremental extract, exactly as after a full one. See
docs/extract.md, "Incremental and full reads", for the per-entity decisions and evidence.

The cursor starts from the ``read_at`` of the district's last *successful* run (status
``success``: its load committed), less the overlap window, so a failed or abandoned run
is never a starting point: what it read is read again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.staging.base import insert_tuples
from sis_learning.staging.source import STAGED_SOURCE_TABLES, ExtractRead, RawRecord

# Entity -> (table, cursor column) of the mechanism its incremental read uses. Entities not
# listed are read in full every run (see docs/extract.md for why, entity by entity).
ENTITY_CURSORS: dict[str, tuple[str, str]] = {
    "section_enrollments": ("cc", "whenmodified"),
}
FULL, INCREMENTAL, REQUESTED_FULL = "full", "incremental", "requested_full"
RUN_REQUEST = "*"
CARRY_BATCH_ROWS = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class ReadPlan:
    entity: str
    mode: str  # full | incremental
    read_at: datetime
    read_from: str | None = None  # the cursor value filtered on (a date: PowerSchool's whenmodified is one)
    base_run_id: str | None = None
    note: str = ""

    @property
    def incremental(self) -> bool:
        return self.mode == INCREMENTAL


def request_full_read(engine: Engine, district_id: str, run_id: str, note: str = "full_refresh requested") -> None:
    """Record that this run must read every entity in full (the DAG param ``full_refresh``)."""
    _record(engine, district_id, run_id, RUN_REQUEST, REQUESTED_FULL, utcnow(), None, None, note)


def _record(engine: Engine, district_id: str, run_id: str, entity: str, mode: str, read_at: datetime,
            read_from: str | None, base_run_id: str | None, note: str | None) -> None:
    table = ExtractRead.__table__
    with engine.begin() as connection:
        connection.execute(table.delete().where(table.c.district_id == district_id, table.c.run_id == run_id,
                                                table.c.entity == entity))
        connection.execute(table.insert().values(district_id=district_id, run_id=run_id, entity=entity, mode=mode,
                                                 read_at=read_at, read_from=read_from, base_run_id=base_run_id,
                                                 note=note))


def record_read(engine: Engine, config: DistrictConfig, run_id: str, plan: ReadPlan) -> None:
    _record(engine, config.district_id, run_id, plan.entity, plan.mode, plan.read_at, plan.read_from,
            plan.base_run_id, plan.note)


def _successful_runs(connection: Any, district_id: str, run_id: str) -> list[str]:
    rows = connection.execute(text(
        "SELECT run_id FROM sync_runs WHERE district_id = :d AND kind = 'import' AND status = 'success' "
        "AND run_id != :r ORDER BY finished_at DESC, id DESC"), {"d": district_id, "r": run_id})
    return [row[0] for row in rows]


def plan_read(engine: Engine, config: DistrictConfig, run_id: str, entity: str, now: datetime | None = None) -> ReadPlan:
    """Full or incremental for ``entity`` in this run, and why (the reason goes to the run's report)."""
    now = now or utcnow()
    if entity not in ENTITY_CURSORS:
        return ReadPlan(entity, FULL, now, note=f"{entity} is read in full every run")
    table = ExtractRead.__table__
    with engine.connect() as connection:
        requested = connection.execute(select(table.c.note).where(
            table.c.district_id == config.district_id, table.c.run_id == run_id, table.c.entity == RUN_REQUEST)).first()
        if requested is not None:
            return ReadPlan(entity, FULL, now, note=f"full read: {requested[0]}")
        if config.incremental.full_read == "every_run":
            return ReadPlan(entity, FULL, now, note="full read: the district reads in full every run (incremental.full_read)")
        successful = _successful_runs(connection, config.district_id, run_id)
        if not successful:
            return ReadPlan(entity, FULL, now, note="full read: no earlier successful run to read changes since")
        reads = {row.run_id: row for row in connection.execute(select(table).where(
            table.c.district_id == config.district_id, table.c.entity == entity, table.c.run_id.in_(successful)))}
    base = reads.get(successful[0])
    if base is None:
        return ReadPlan(entity, FULL, now, note=f"full read: the last successful run ({successful[0]}) recorded no read of {entity}")
    zone = ZoneInfo(config.timezone)

    def local_date(moment: datetime) -> Any:
        return moment.replace(tzinfo=UTC).astimezone(zone).date()

    full_dates = {local_date(row.read_at) for row in reads.values() if row.mode == FULL}
    if local_date(now) not in full_dates:
        return ReadPlan(entity, FULL, now, note="full read: the first run of the local day reconciles in full "
                                                 "(incremental.full_read: first_run_of_day)")
    since = base.read_at - timedelta(minutes=config.incremental.overlap_minutes)
    # PowerSchool's whenmodified is a date in the server's (the district's) time zone:
    # filtering from the date of (last read - overlap) reads that whole day again.
    read_from = local_date(since).isoformat()
    return ReadPlan(entity, INCREMENTAL, now, read_from=read_from, base_run_id=base.run_id,
                    note=f"incremental: changed since {read_from} (the last successful run {base.run_id} "
                         f"read at {base.read_at:%Y-%m-%d %H:%M} UTC, less {config.incremental.overlap_minutes} min)")


def carry_forward(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    entity: str,
    base_run_id: str,
    read_ids: set[str],
    keep: Callable[[dict[str, Any]], dict[str, Any] | None],
    scope: str,
) -> int:
    """Copy the base run's staged rows of ``entity`` (and their raw records) into this run.

    Rows whose source id this run read again are left out (the new read wins); ``keep``
    gets each remaining row and returns it (possibly re-derived from today's maps) or
    None to leave it out, as a full read would have. Returns the rows carried.
    """
    table = STAGED_SOURCE_TABLES[entity].__table__
    columns = [column.name for column in table.columns if column.name not in ("id", "run_id")]
    key = "enrollment_id"
    carried_ids: set[str] = set()
    carried = 0
    out_columns = ("run_id", *columns)
    where = (table.c.district_id == config.district_id, table.c.run_id == base_run_id, table.c.scope == scope)
    # Keyset pages (id > last): no cursor stays open while the copies are written (SQLite).
    for found in _keyset_pages(engine, table, [table.c[name] for name in columns], where):
        batch = []
        for values in found:
            row = dict(zip(columns, values, strict=True))
            if row[key] is not None and row[key] in read_ids:
                continue
            row = keep(row)
            if row is None:
                continue
            if row[key] is not None:
                carried_ids.add(row[key])
            batch.append((run_id, *[row[name] for name in columns]))
        if batch:
            with engine.begin() as connection:
                insert_tuples(connection, table, out_columns, batch)
            carried += len(batch)
    raw = RawRecord.__table__
    raw_columns = ("district_id", "run_id", "scope", "entity", "source_id", "payload")
    raw_where = (raw.c.district_id == config.district_id, raw.c.run_id == base_run_id, raw.c.entity == entity,
                 raw.c.scope == scope)
    for found in _keyset_pages(engine, raw, [raw.c.source_id, raw.c.payload], raw_where):
        batch = []
        for source_id, payload in found:
            if source_id in carried_ids:
                carried_ids.discard(source_id)
                batch.append((config.district_id, run_id, scope, entity, source_id, payload))
        if batch:
            with engine.begin() as connection:
                insert_tuples(connection, raw, raw_columns, batch)
    return carried


def _keyset_pages(engine: Engine, table: Any, columns: list[Any], where: Iterable[Any]) -> Iterable[list[tuple[Any, ...]]]:
    where = tuple(where)
    last = 0
    while True:
        with engine.connect() as connection:
            rows = connection.execute(select(table.c.id, *columns).where(*where, table.c.id > last)
                                      .order_by(table.c.id).limit(CARRY_BATCH_ROWS)).all()
        if not rows:
            return
        last = rows[-1][0]
        yield [tuple(row[1:]) for row in rows]


def staged_ids(engine: Engine, district_id: str, run_id: str, entity: str, column: str) -> set[str]:
    """The ``column`` values of a run's staged rows of ``entity`` (e.g. the base run's student DCIDs)."""
    table = STAGED_SOURCE_TABLES[entity].__table__
    with engine.connect() as connection:
        return {value for (value,) in connection.execute(select(table.c[column]).where(
            table.c.district_id == district_id, table.c.run_id == run_id)) if value is not None}


def describe(plan: ReadPlan, extra: Mapping[str, Any] | None = None) -> str:
    parts = [plan.note]
    for name, value in (extra or {}).items():
        parts.append(f"{name} {value}")
    return "; ".join(part for part in parts if part)
