"""After an incremental read: what changed since the base run, for validate, transform and diff (issue 17).

An incremental extract stages the district's whole current state, most of it carried
forward unchanged from its base run (``extract_reads.base_run_id``), and records in
``extract_changes`` the source ids it read again or left out. Validate, transform and
diff then process only those rows and the rows whose result can depend on them, take
everything else from the base run's result, and must give exactly what processing the
whole district would (tests/extract/test_incremental_all_entities.py, the e2e oracle).

A stage works this way (``mode`` ``delta`` in ``stage_deltas``) only when all of this holds,
else it processes the whole district (``full``) and says why:

- every entity with a change cursor was read incrementally, from one base run, and the
  base run finished successfully;
- the base run's same stage recorded its result with the same fingerprint: the district
  settings, the column rules or mapping specs, and (validate) the run's date, which
  decides which section teachers' assignments have ended;
- for transform and diff: this run's previous stage worked from the same base run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.staging.delta import DeltaKey, ExtractChange, StageDelta
from sis_learning.staging.runs import SyncRun
from sis_learning.staging.source import STAGED_SOURCE_TABLES, ExtractRead

FULL, DELTA = "full", "delta"
# Bumped when what a stage writes changes shape: a base written by another version is not used.
DELTA_VERSION = "1"
# Read in full every run (docs/extract.md): what changed is found by comparing the two runs' rows.
COMPARED_ENTITIES: dict[str, str] = {
    "schools": "t.school_id",
    "terms": "t.term_id",
    "section_teachers": "t.section_id || ':' || t.staff_id",
}
# Entities with a change cursor (extract.incremental.ENTITY_CURSORS): carried forward with extract_changes.
CARRIED_ENTITIES = ("courses", "sections", "staff", "students", "section_enrollments", "guardians")


@dataclass
class SourceDelta:
    """What an incremental run changed in staging against its base run, per entity (source ids)."""

    run_id: str
    base_run_id: str
    touched: dict[str, set[str]] = field(default_factory=dict)

    def ids(self, entity: str) -> set[str]:
        return self.touched.get(entity, set())

    def size(self) -> int:
        return sum(len(values) for values in self.touched.values())


def fingerprint(config: DistrictConfig, stage: str, extra: Mapping[str, Any] | None = None) -> str:
    """What decides a stage's result besides the staged rows, as one hash."""
    document = {
        "version": DELTA_VERSION,
        "stage": stage,
        "config": config.model_dump(mode="json"),
        "extra": dict(extra or {}),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def source_delta(engine: Engine, config: DistrictConfig, run_id: str) -> tuple[SourceDelta | None, str]:
    """The run's changes against its base run, or None and why the whole district must be processed."""
    reads_table = ExtractRead.__table__
    district = config.district_id
    with engine.connect() as connection:
        reads = {
            row.entity: row
            for row in connection.execute(
                select(reads_table).where(reads_table.c.district_id == district, reads_table.c.run_id == run_id)
            )
        }
        missing = [entity for entity in CARRIED_ENTITIES if entity not in reads]
        if missing:
            return None, f"no incremental read recorded for {', '.join(missing)}"
        full = [entity for entity in CARRIED_ENTITIES if reads[entity].mode != "incremental"]
        if full:
            return None, f"read in full: {', '.join(full)}"
        bases = {reads[entity].base_run_id for entity in CARRIED_ENTITIES}
        if len(bases) != 1 or None in bases:
            return None, "the entities were read incrementally from different runs"
        base = bases.pop()
        runs = SyncRun.__table__
        status = connection.execute(
            select(runs.c.status).where(runs.c.district_id == district, runs.c.run_id == base, runs.c.kind == "import")
        ).scalar()
        if status != "success":
            return None, f"the base run {base} is not a successful run ({status})"
        changes = ExtractChange.__table__
        touched: dict[str, set[str]] = {entity: set() for entity in (*CARRIED_ENTITIES, *COMPARED_ENTITIES)}
        for entity, source_id in connection.execute(
            select(changes.c.entity, changes.c.source_id).where(
                changes.c.district_id == district, changes.c.run_id == run_id
            )
        ):
            touched.setdefault(entity, set()).add(source_id)
        for entity, key in COMPARED_ENTITIES.items():
            table = STAGED_SOURCE_TABLES[entity].__table__
            columns = ", ".join(
                f't."{column.name}"' for column in table.columns if column.name not in ("id", "run_id", "scope")
            )
            for one, other in ((run_id, base), (base, run_id)):
                touched[entity].update(
                    value
                    for (value,) in connection.execute(
                        text(
                            f"SELECT {key} FROM (SELECT {columns} FROM {table.name} t WHERE t.district_id = :d "
                            f"AND t.run_id = :one EXCEPT SELECT {columns} FROM {table.name} t WHERE "
                            f"t.district_id = :d AND t.run_id = :other) AS t"
                        ),
                        {"d": district, "one": one, "other": other},
                    )
                    if value is not None
                )
            # A row without an id changed or not cannot be told apart: the whole entity is processed again.
            if _has_null_key(connection, table.name, key, district, run_id, base):
                return None, f"{entity} has rows without an id"
    return SourceDelta(run_id, base, touched), ""


def _has_null_key(connection: Any, table: str, key: str, district: str, run_id: str, base: str) -> bool:
    return (
        connection.execute(
            text(
                f"SELECT 1 FROM {table} t WHERE t.district_id = :d AND t.run_id IN (:r, :b) AND ({key}) IS NULL LIMIT 1"
            ),
            {"d": district, "r": run_id, "b": base},
        ).first()
        is not None
    )


def stage_record(engine: Engine, district_id: str, run_id: str, stage: str) -> Any:
    table = StageDelta.__table__
    with engine.connect() as connection:
        return connection.execute(
            select(table).where(table.c.district_id == district_id, table.c.run_id == run_id, table.c.stage == stage)
        ).first()


def usable_delta(
    engine: Engine, config: DistrictConfig, run_id: str, stage: str, print_: str, previous_stage: str | None = None
) -> tuple[SourceDelta | None, str]:
    """The run's ``SourceDelta`` when ``stage`` may work from the base run's result, else None and why."""
    delta, reason = source_delta(engine, config, run_id)
    if delta is None:
        return None, reason
    base = stage_record(engine, config.district_id, delta.base_run_id, stage)
    if base is None:
        return None, f"the base run {delta.base_run_id} recorded no {stage} result to start from"
    if base.fingerprint != print_:
        return None, f"the settings, rules or date of {stage} differ from the base run {delta.base_run_id}'s"
    if previous_stage is not None:
        previous = stage_record(engine, config.district_id, run_id, previous_stage)
        if previous is None or previous.mode != DELTA or previous.base_run_id != delta.base_run_id:
            return None, f"{previous_stage} of this run processed the whole district"
    return delta, ""


def _delete_record(connection: Any, district_id: str, run_id: str, stage: str) -> None:
    """Remove what ``stage`` recorded for the run (its ``stage_deltas`` row and ``delta_keys``)."""
    for model in (StageDelta, DeltaKey):
        table = model.__table__
        connection.execute(
            table.delete().where(table.c.district_id == district_id, table.c.run_id == run_id, table.c.stage == stage)
        )


def _counts(value: Any) -> dict[str, int]:
    """A record's ``counts`` (JSON; a string on SQLite) as ``{entity: int}``."""
    counts = value if isinstance(value, dict) else json.loads(value)
    return {entity: int(number) for entity, number in counts.items()}


def record_stage(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    stage: str,
    mode: str,
    print_: str,
    *,
    base_run_id: str | None = None,
    rows: int | None = None,
    note: str | None = None,
    keys: Mapping[str, Iterable[str]] | None = None,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Record how ``stage`` processed the run (and, for a delta, the keys it processed again)."""
    table = StageDelta.__table__
    keys_table = DeltaKey.__table__
    district = config.district_id
    with engine.begin() as connection:
        _delete_record(connection, district, run_id, stage)
        connection.execute(
            table.insert().values(
                district_id=district,
                run_id=run_id,
                stage=stage,
                mode=mode,
                base_run_id=base_run_id,
                fingerprint=print_,
                rows=rows,
                note=note,
                counts=dict(counts) if counts is not None else None,
            )
        )
        rows_out = [
            {"district_id": district, "run_id": run_id, "stage": stage, "entity": entity, "key": key}
            for entity, values in (keys or {}).items()
            for key in sorted(set(values))
        ]
        if rows_out:
            connection.execute(keys_table.insert(), rows_out)


def delta_keys(engine: Engine, district_id: str, run_id: str, stage: str) -> dict[str, set[str]]:
    """The keys ``stage`` processed again in a delta run, per entity."""
    table = DeltaKey.__table__
    keys: dict[str, set[str]] = {}
    with engine.connect() as connection:
        for entity, key in connection.execute(
            select(table.c.entity, table.c.key).where(
                table.c.district_id == district_id, table.c.run_id == run_id, table.c.stage == stage
            )
        ):
            keys.setdefault(entity, set()).add(key)
    return keys


def carried_unchanged(engine: Engine, district_id: str, run_id: str) -> dict[str, int]:
    """Per Learning entity, the keys a delta diff found unchanged without writing change_set rows for them."""
    record = stage_record(engine, district_id, run_id, "diff")
    if record is None or record.mode != DELTA or not record.counts:
        return {}
    return _counts(record.counts)


# --- what a run's load left unanswered ---------------------------------------------------------
# A delta diff compares again the keys its base run did not get accepted. A completed load
# records how many it left (refused or still pending) per entity, so the next run reads the
# base run's change set only where some were left: after a full reconcile (06:00) most of the
# 18:00 run's base is 1.6 million accepted creates at L, whose statuses cost 0.5-1.6 s to read.
LOAD = "load"


def forget_stage(engine: Engine, district_id: str, run_id: str, stage: str) -> None:
    """Remove what ``stage`` recorded for the run: it no longer holds (the stage runs again)."""
    with engine.begin() as connection:
        _delete_record(connection, district_id, run_id, stage)


def record_load(engine: Engine, config: DistrictConfig, run_id: str, unanswered: Mapping[str, int], diff: Any) -> None:
    """A load of the run completed: the change-set rows it left refused or pending, per entity.

    ``diff``: the run's diff record (:func:`stage_record`), whose ``mode`` the load's is: after
    a delta diff the load sent only what may have changed.
    """
    record_stage(
        engine,
        config,
        run_id,
        LOAD,
        diff.mode if diff is not None else FULL,
        fingerprint(config, LOAD),
        base_run_id=diff.base_run_id if diff is not None else None,
        rows=sum(unanswered.values()),
        note="change-set rows the load left refused or pending, per entity",
        counts=unanswered,
    )


def left_unanswered(connection: Any, district_id: str, run_id: str) -> dict[str, int] | None:
    """Per entity, the rows the run's last completed load left refused or pending.

    None when no load of the run completed since its change set was last computed (the diff
    forgets the record; a load forgets it before it sends anything): the change set must be read.
    """
    table = StageDelta.__table__
    counts = connection.execute(
        select(table.c.counts).where(
            table.c.district_id == district_id, table.c.run_id == run_id, table.c.stage == LOAD
        )
    ).scalar()
    return None if counts is None else _counts(counts)
