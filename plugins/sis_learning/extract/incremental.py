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

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.hooks.http_client import PermissionDeniedError, ValidationFailedError
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.base import along_run_index, temporary_values
from sis_learning.staging.delta import ExtractChange
from sis_learning.staging.source import STAGED_SOURCE_TABLES, ExtractRead
from sis_learning.staging.writer import DISTRICT_SCOPE, SOURCE_KEYS

# Entity -> the SIS tables whose change cursor its incremental read filters on (the first is
# the entity's own). Entities not listed are read in full every run; docs/extract.md,
# "Incremental and full reads", gives the reason entity by entity.
ENTITY_CURSORS: dict[str, tuple[str, ...]] = {
    "courses": ("courses",),
    "sections": ("sections",),
    "staff": ("teachers",),
    "students": ("students",),
    "section_enrollments": ("cc", "students", "sections"),
    "guardians": ("guardian", "guardianstudent"),
}
# PowerSchool's cursor column per table: ``whenmodified`` (a date), except Students, which
# has ``transaction_date`` instead.
TABLE_CURSORS: dict[str, str] = {"students": "transaction_date"}
DEFAULT_CURSOR = "whenmodified"


def cursor_column(table: str) -> str:
    return TABLE_CURSORS.get(table, DEFAULT_CURSOR)


FULL, INCREMENTAL, REQUESTED_FULL = "full", "incremental", "requested_full"
RUN_REQUEST = "*"
# Ids per ``column==(...)`` read (the query string stays a few kilobytes long).
IDS_PER_READ = 400


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
    fallback: bool = False  # a full read replacing an incremental one (refused cursor, too many changes)

    @property
    def incremental(self) -> bool:
        return self.mode == INCREMENTAL


def request_full_read(engine: Engine, district_id: str, run_id: str, note: str = "full_refresh requested") -> None:
    """Record that this run must read every entity in full (the DAG param ``full_refresh``)."""
    _record(engine, district_id, run_id, RUN_REQUEST, REQUESTED_FULL, utcnow(), None, None, note)


def _record(
    engine: Engine,
    district_id: str,
    run_id: str,
    entity: str,
    mode: str,
    read_at: datetime,
    read_from: str | None,
    base_run_id: str | None,
    note: str | None,
    key: str | None = None,
) -> None:
    table = ExtractRead.__table__
    with engine.begin() as connection:
        connection.execute(
            table.delete().where(table.c.district_id == district_id, table.c.run_id == run_id, table.c.entity == entity)
        )
        connection.execute(
            table.insert().values(
                district_id=district_id,
                run_id=run_id,
                entity=entity,
                mode=mode,
                read_at=read_at,
                read_from=read_from,
                base_run_id=base_run_id,
                note=note,
                scope_key=key,
            )
        )


def record_read(engine: Engine, config: DistrictConfig, run_id: str, plan: ReadPlan) -> None:
    _record(
        engine,
        config.district_id,
        run_id,
        plan.entity,
        plan.mode,
        plan.read_at,
        plan.read_from,
        plan.base_run_id,
        plan.note,
        scope_key(config),
    )


def _successful_runs(connection: Any, district_id: str, run_id: str) -> list[str]:
    rows = connection.execute(
        text(
            "SELECT run_id FROM sync_runs WHERE district_id = :d AND kind = 'import' AND status = 'success' "
            "AND run_id != :r ORDER BY finished_at DESC, id DESC"
        ),
        {"d": district_id, "r": run_id},
    )
    return [row[0] for row in rows]


def scope_key(config: DistrictConfig) -> str:
    """What decides which rows a run stages: a change in it makes the next read a full one."""
    return json.dumps(
        {
            "schools": config.schools,
            "import_start_year": config.import_start_year,
            "ignore_parents": config.ignore_parents,
        },
        sort_keys=True,
    )


def plan_read(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    entity: str,
    now: datetime | None = None,
    *,
    subset: bool = False,
) -> ReadPlan:
    """Full or incremental for ``entity`` in this run, and why (the reason goes to the run's report).

    ``subset``: the extract was asked for some of the selected schools only (a task mapped
    over schools), which always reads in full.
    """
    now = now or utcnow()
    if entity not in ENTITY_CURSORS:
        return ReadPlan(entity, FULL, now, note=f"full read: {entity} is read in full every run")
    if subset:
        return ReadPlan(entity, FULL, now, note="full read: asked for some of the selected schools only")
    table = ExtractRead.__table__
    with engine.connect() as connection:
        requested = connection.execute(
            select(table.c.note).where(
                table.c.district_id == config.district_id, table.c.run_id == run_id, table.c.entity == RUN_REQUEST
            )
        ).first()
        if requested is not None:
            return ReadPlan(entity, FULL, now, note=f"full read: {requested[0]}")
        if config.incremental.full_read == "every_run":
            return ReadPlan(
                entity, FULL, now, note="full read: the district reads in full every run (incremental.full_read)"
            )
        successful = _successful_runs(connection, config.district_id, run_id)
        if not successful:
            return ReadPlan(entity, FULL, now, note="full read: no earlier successful run to read changes since")
        reads = {
            row.run_id: row
            for row in connection.execute(
                select(table).where(
                    table.c.district_id == config.district_id, table.c.entity == entity, table.c.run_id.in_(successful)
                )
            )
        }
    base = reads.get(successful[0])
    if base is None:
        return ReadPlan(
            entity, FULL, now, note=f"full read: the last successful run ({successful[0]}) recorded no read of {entity}"
        )
    if base.scope_key != scope_key(config):
        return ReadPlan(
            entity,
            FULL,
            now,
            note="full read: the selected schools, import start year or ignore_parents "
            f"changed since the last successful run ({base.run_id})",
        )
    zone = ZoneInfo(config.timezone)

    def local_date(moment: datetime) -> Any:
        return moment.replace(tzinfo=UTC).astimezone(zone).date()

    full_dates = {local_date(row.read_at) for row in reads.values() if row.mode == FULL}
    if local_date(now) not in full_dates:
        return ReadPlan(
            entity,
            FULL,
            now,
            note="full read: the first run of the local day reconciles in full "
            "(incremental.full_read: first_run_of_day)",
        )
    since = base.read_at - timedelta(minutes=config.incremental.overlap_minutes)
    # PowerSchool's whenmodified is a date in the server's (the district's) time zone:
    # filtering from the date of (last read - overlap) reads that whole day again.
    read_from = local_date(since).isoformat()
    return ReadPlan(
        entity,
        INCREMENTAL,
        now,
        read_from=read_from,
        base_run_id=base.run_id,
        note=f"incremental: changed since {read_from} (the last successful run {base.run_id} "
        f"read at {base.read_at:%Y-%m-%d %H:%M} UTC, less {config.incremental.overlap_minutes} min)",
    )


def refused(plan: ReadPlan, error: BaseException) -> ReadPlan:
    """The full read that replaces an incremental one whose cursor the plugin may not read."""
    return ReadPlan(
        plan.entity,
        FULL,
        plan.read_at,
        fallback=True,
        note=f"full read: the plugin may not read the change cursor of {plan.entity} ({error})",
    )


def changed_rows(
    hook: PowerSchoolHook,
    table: str,
    projection: Iterable[str],
    plan: ReadPlan,
    *,
    q: str | None = None,
    identity: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> tuple[list[dict[str, Any]], Listing]:
    """The rows of ``table`` whose change cursor is on or after the plan's ``read_from``.

    District-wide (a row that moved out of the selected schools changed too), read page by
    page: a change set that fits in one page costs one request. A plugin that may not read
    the cursor column answers "No access to the field", raised here for the caller to
    fall back to a full read.
    """
    condition = f"{cursor_column(table)}=ge={plan.read_from}"
    listing = hook.table_listing(
        DISTRICT_SCOPE, table, tuple(projection), q=f"{q};{condition}" if q else condition, identity=identity
    )
    listing.label = f"changed {table}"
    rows = [row for _listing, page in hook.read_pages([listing], page_by_page=True) for row in page]
    return rows, listing


def by_id_reads(
    hook: PowerSchoolHook,
    table: str,
    projection: Iterable[str],
    column: str,
    ids: Iterable[str],
    q: str | None = None,
    per_read: int = IDS_PER_READ,
    identity: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> list[Listing]:
    """Table reads of the rows whose ``column`` is one of ``ids`` (``column==(a,b,...)``), in batches."""
    ids = sorted(set(ids), key=lambda value: (len(value), value))
    listings = []
    for start in range(0, len(ids), per_read):
        batch = ids[start : start + per_read]
        condition = f"{column}==({','.join(batch)})"
        listing = hook.table_listing(
            DISTRICT_SCOPE, table, tuple(projection), q=f"{q};{condition}" if q else condition, identity=identity
        )
        listing.label = f"{table} by {column} ({len(batch)})"
        listings.append(listing)
    return listings


def read_rows(hook: PowerSchoolHook, listings: list[Listing]) -> list[dict[str, Any]]:
    return [row for _listing, page in hook.read_pages(listings, page_by_page=True) for row in page]


def carry_forward(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    entity: str,
    base_run_id: str,
    *,
    drop: Mapping[str, Iterable[str]],
    scopes: Iterable[str],
    raw_key: str | None = None,
) -> int:
    """Copy the base run's staged rows of ``entity`` into this run, in SQL, and record what changed.

    A row is left out when any ``drop[column]`` holds its ``column`` value: the rows this
    run read again (the new read wins) and the rows a full read would no longer stage (a
    student who left, a section out of scope). Only rows of ``scopes`` are copied. The ids
    of the rows read again and of the base rows left out go to ``extract_changes``
    (``raw_key``: the SQL of the staged column(s) the source id is; default the entity's
    own id column), for validate, transform and diff (``sis_learning.delta``). Raw records
    are not copied: a carried row's raw record is under the run that read it (the chain of
    ``extract_reads.base_run_id``). Returns the rows carried. The copy runs in the database
    (INSERT ... SELECT), so a million carried rows never pass through Python.
    """
    table = STAGED_SOURCE_TABLES[entity].__table__
    columns = [column.name for column in table.columns if column.name not in ("id", "run_id")]
    raw_key = raw_key or f"t.{SOURCE_KEYS[entity][0][0]}"
    scopes = sorted(set(scopes))
    parameters: dict[str, Any] = {"district": config.district_id, "base": base_run_id, "run": run_id, "entity": entity}
    scope_names = [f"scope_{number}" for number in range(len(scopes))]
    parameters.update(zip(scope_names, scopes, strict=True))
    in_scopes = f"IN ({', '.join(':' + name for name in scope_names)})" if scopes else "IN (NULL)"
    quoted = ", ".join(f'"{name}"' for name in columns)
    changes_table = ExtractChange.__table__
    with engine.begin() as connection:
        # What this run changed against its base (extract_changes): the rows read again, and
        # (below) the base rows left out. Validate, transform and diff start from these.
        connection.execute(
            changes_table.delete().where(
                changes_table.c.district_id == config.district_id,
                changes_table.c.run_id == run_id,
                changes_table.c.entity == entity,
            )
        )
        connection.execute(
            text(
                "INSERT INTO extract_changes (district_id, run_id, entity, source_id) "
                f'SELECT :district, :run, :entity, {raw_key} FROM "{table.name}" t '
                f"WHERE t.district_id = :district AND t.run_id = :run AND t.scope {in_scopes} "
                f"AND {raw_key} IS NOT NULL"
            ),
            parameters,
        )
        conditions = []
        for number, (column, values) in enumerate(sorted(drop.items())):
            values = sorted({value for value in values if value is not None})
            if not values:
                continue
            name = f"carry_drop_{number}"
            temporary_values(connection, name, values)
            conditions.append(f'AND (t."{column}" IS NULL OR t."{column}" NOT IN (SELECT value FROM {name}))')
        where = " ".join(conditions)
        with along_run_index(connection):
            carried = connection.execute(
                text(
                    f'INSERT INTO "{table.name}" (run_id, {quoted}) '
                    f"SELECT :run, {', '.join(f't.{name}' for name in quoted.split(', '))} "
                    f'FROM "{table.name}" t WHERE t.district_id = :district AND t.run_id = :base '
                    f"AND t.scope {in_scopes} {where}"
                ),
                parameters,
            ).rowcount
        # The base rows left out (few): recorded as changed. Their raw records, like those of every
        # carried row, stay under the run that read them (raw_records holds what PowerSchool
        # returned in a run; an incremental run's carried rows were returned by an earlier one).
        if conditions:
            kept = " AND ".join(condition.removeprefix("AND ") for condition in conditions)
            connection.execute(
                text(
                    "INSERT INTO extract_changes (district_id, run_id, entity, source_id) "
                    f'SELECT :district, :run, :entity, {raw_key} FROM "{table.name}" t '
                    f"WHERE t.district_id = :district AND t.run_id = :base AND t.scope {in_scopes} AND NOT ({kept}) "
                    f"AND {raw_key} IS NOT NULL"
                ),
                parameters,
            )
        for number in range(len(drop)):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS carry_drop_{number}")
    return int(carried or 0)


def staged_counts(engine: Engine, district_id: str, run_id: str, entity: str) -> dict[str, int]:
    """Rows staged per scope for ``entity`` in this run (read and carried together)."""
    table = STAGED_SOURCE_TABLES[entity].__table__
    with engine.connect() as connection:
        return {
            scope: int(count)
            for scope, count in connection.execute(
                select(table.c.scope, func.count())
                .where(table.c.district_id == district_id, table.c.run_id == run_id)
                .group_by(table.c.scope)
            )
        }


def staged_total(engine: Engine, district_id: str, run_id: str, entity: str) -> int:
    """Rows staged for ``entity`` in a run, every scope together.

    Counted on the run index alone (no table row is read): a million staged enrollments in
    0.05 s on SQLite where counting them per scope reads every row (0.6 s).
    """
    table = STAGED_SOURCE_TABLES[entity].__table__
    with engine.connect() as connection:
        return int(
            connection.scalar(select(func.count()).where(table.c.district_id == district_id, table.c.run_id == run_id))
            or 0
        )


def staged_values(engine: Engine, district_id: str, run_id: str, entity: str, *columns: str) -> list[tuple[Any, ...]]:
    """The ``columns`` of a run's staged rows of ``entity`` (e.g. the base run's sections and their schools)."""
    table = STAGED_SOURCE_TABLES[entity].__table__
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                select(*(table.c[column] for column in columns)).where(
                    table.c.district_id == district_id, table.c.run_id == run_id
                )
            )
        ]


def staged_ids(engine: Engine, district_id: str, run_id: str, entity: str, column: str) -> set[str]:
    """The ``column`` values of a run's staged rows of ``entity`` (e.g. the base run's student DCIDs)."""
    return {value for (value,) in staged_values(engine, district_id, run_id, entity, column) if value is not None}


def describe(plan: ReadPlan, extra: Mapping[str, Any] | None = None) -> str:
    parts = [plan.note]
    for name, value in (extra or {}).items():
        parts.append(f"{name} {value}")
    return "; ".join(part for part in parts if part)


def read_with_plan(
    hook: PowerSchoolHook,
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    entity: str,
    subset: bool,
    read_changed: Callable[[ReadPlan], dict[str, Any]],
    read_full: Callable[[ReadPlan], dict[str, Any]],
) -> dict[str, Any]:
    """Run an entity's incremental read when its plan says so, else (or when refused) its full read.

    A plugin that may not read a change cursor ("No access to the field", 403) makes the
    entity read in full, said in its ``extract_counts`` note and ``extract_reads`` row, which
    the run's report shows. The read is recorded only once the entity is staged.
    """
    plan = plan_read(engine, config, run_id, entity, subset=subset)
    if plan.incremental:
        try:
            result = read_changed(plan)
        except (PermissionDeniedError, ValidationFailedError) as error:
            hook.log.warning("%s: change cursor read refused (%s); reading in full", entity, error)
            plan = refused(plan, error)
        except TooManyChanges as error:
            plan = ReadPlan(entity, FULL, plan.read_at, note=f"full read: {error}", fallback=True)
        else:
            record_read(engine, config, run_id, plan)
            return {**result, "read_mode": plan.mode}
    result = read_full(plan)
    record_read(engine, config, run_id, plan)
    return {**result, "read_mode": plan.mode}


class TooManyChanges(Exception):
    """So much changed that reading it all again is the cheaper (and bounded-memory) read."""


# An incremental read that would read more than this share of the entity's rows reads in full.
FULL_READ_ABOVE_SHARE = 0.25


def check_change_share(entity: str, changed: int, base_rows: int) -> None:
    if changed > max(1000, FULL_READ_ABOVE_SHARE * base_rows):
        raise TooManyChanges(
            f"{changed} {entity} rows changed since the last successful run (of {base_rows}): "
            f"more than {FULL_READ_ABOVE_SHARE:.0%}, so reading everything again is cheaper"
        )


def per_school_changes(
    hook: PowerSchoolHook,
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    entity: str,
    plan: ReadPlan,
    schools: list[str],
    *,
    changed: list[dict[str, Any]],
    cursor_reads: list[Listing],
    ids_by_school: Mapping[str, Iterable[str]],
    listing_for: Callable[[str, list[str]], Listing],
    build: Callable[[Mapping[str, Any], Listing], dict[str, Any] | None],
    ids_per_read: int,
) -> dict[str, Any]:
    """Stage an entity listed school by school from what changed: read by id, the rest carried.

    ``changed`` are the cursor's rows (every id in them is read again or, when a listing no
    longer returns it, left out as a full read would); ``ids_by_school`` says which school's
    listing to ask for which ids (``listing_for(school, ids)``: a ``q=id==(...)`` listing of
    at most ``ids_per_read`` ids, one page). Every other row of the base run is carried
    forward under its school.
    """
    from sis_learning.extract.listing import _result, _scope_summaries, _stage_listings
    from sis_learning.staging.writer import EntityStaging

    assert plan.base_run_id is not None
    key = SOURCE_KEYS[entity][0][0]
    changed_ids = {id_string(row.get("dcid") or row.get("id")) for row in changed} - {None}
    staging = EntityStaging(engine, config, run_id, entity)
    staging.clear(schools)
    listings = []
    for school in schools:
        ids = sorted(set(ids_by_school.get(school, ())), key=lambda value: (len(value), value))
        for start in range(0, len(ids), ids_per_read):
            listing = listing_for(school, ids[start : start + ids_per_read])
            listing.label = f"{listing.path} ({len(ids[start : start + ids_per_read])} changed)"
            listings.append(listing)
    _stage_listings(hook, staging, listings, build, page_by_page=True)
    read = sum(staging.written.values())
    carried = carry_forward(engine, config, run_id, entity, plan.base_run_id, drop={key: changed_ids}, scopes=schools)
    written = staged_counts(engine, config.district_id, run_id, entity)
    note = (
        f"{plan.note}; {len(changed_ids)} changed by the cursor, {read} read again by id in "
        f"{len(listings)} requests, {carried} unchanged rows carried forward from run {plan.base_run_id}"
    )
    summaries = _scope_summaries(listings, written, {school: [] for school in schools})
    if summaries:
        first = summaries[0]
        first["requests"] += sum(listing.requests for listing in cursor_reads)
        first["pages"] += sum(listing.pages for listing in cursor_reads)
        first["note"] = "; ".join(part for part in (note, first["note"]) if part)
    staging.write_counts(summaries)
    return _result(hook, entity, summaries, carried_forward=carried)
