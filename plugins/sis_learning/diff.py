"""Diff a run's Learning-shaped rows against the last state Learning accepted, and guard it.

Implements issue 7's "send only what changed" and its safety stop, for the source
document's import ("Users, Classes and Rosters will automatically be imported ...
twice per day"; "Import IDs ... We strongly recommend against changing your
integrations setup during the school year"):

- ``compute_changes`` compares this run's ``learning_*`` rows with ``learning_snapshot``
  per entity, keyed by the entity's external id (rosters: ``class_id:user_id``, parent
  links: ``parent_id:child_id``), using a SHA-256 of the Learning-visible fields. Each key
  gets one ``change_set`` row: create, update, unchanged, deactivate (a user no longer in
  the import is disabled, never deleted) or remove (a roster row or parent link no longer
  present). Organizations, user levels and classes that vanish are left as they are:
  Learning's contract has no way to delete them, and their rosters are removed.
- ``check_safety`` stops the run before anything is written when, per school and entity,
  deactivations and removals exceed ``safety.max_removal_ratio`` of the previous snapshot
  and at least ``safety.min_removal_rows``; when every user of a school would leave (a
  school dropping to zero, whatever its size); or when the run looks like an Import ID
  change (many users vanish while about as many appear with the same name and user type,
  or the same email). In the DAG a stopped run then waits for a person (sis_learning.approval).

In the database: the content hash and the payload are SQL expressions (PostgreSQL's
sha256(); on SQLite the same function registered from Python), and the comparison is one
INSERT ... SELECT with a join per entity, so no row of the run passes through Python and
memory stays flat at any district size. It needs ``WITH ... AS MATERIALIZED``: SQLite 3.35+
(Python 3.11 images ship 3.40), PostgreSQL 12+.

A rerun of the same run keeps the change-set rows Learning already accepted in that run
and recomputes the rest from the snapshot (which advanced only for accepted rows), so a
retried or crashed load neither loses nor repeats anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Boolean, String, Text, and_, case, cast, exists, func, literal, or_, select, text, true
from sqlalchemy.engine import Connection, Engine

from sis_learning.config import DistrictConfig
from sis_learning.delta import (
    DELTA,
    FULL,
    LOAD,
    carried_unchanged,
    delta_keys,
    fingerprint,
    forget_stage,
    left_unanswered,
    record_stage,
    usable_delta,
)
from sis_learning.entities import LEARNING_ENTITIES
from sis_learning.exceptions import MassChangeDetected
from sis_learning.staging.base import (
    RUN_COLUMNS,
    analyze,
    analyze_if_changed,
    create_all,
    side_by_side,
    staging_workers,
    temporary_values,
)
from sis_learning.staging.changes import (
    ACTION_CREATE,
    ACTION_DEACTIVATE,
    ACTION_REMOVE,
    ACTION_UNCHANGED,
    ACTION_UPDATE,
    ACTIONS,
    STATUS_ACCEPTED,
    STATUS_PENDING,
    STATUS_SKIPPED,
    ChangeSet,
    LearningSnapshot,
    migrate_user_identity,
)
from sis_learning.staging.learning import LEARNING_TABLES, LearningClass, LearningUser, largest_first
from sis_learning.staging.quality import RejectedRow
from sis_learning.staging.runs import SyncRun
from sis_learning.transform_delta import TYPE_PREFIX, WHOLE

log = logging.getLogger(__name__)

_FIELD_SEPARATOR = "\x1f"
_NULL_MARK = "\x00"
STAGE = "diff"
# Rows read per round trip when the safety guard reads pending rows.
STREAM_PAGE_ROWS = 20_000


@dataclass(frozen=True)
class EntitySpec:
    """How one Learning entity is keyed, compared and sent."""

    name: str
    key_fields: tuple[str, ...]
    # Learning-visible fields: a change in any of them is an update.
    compared_fields: tuple[str, ...]
    # Sent with the row but not compared: "imported passwords are temporary" only
    # matters when Learning creates the user, so flipping it does not touch every user.
    sent_only_fields: tuple[str, ...] = ()
    # What Learning does with a key that left the import: None (leave it as it is),
    # "deactivate" (users) or "remove" (rosters, parent links).
    vanished_action: str | None = None

    @property
    def payload_fields(self) -> tuple[str, ...]:
        return self.compared_fields + self.sent_only_fields


# In dependency order (sis_learning.entities): Learning refuses a class whose teacher does
# not exist, and a roster row whose class or user does not exist.
ENTITIES: tuple[EntitySpec, ...] = tuple(
    EntitySpec(entity.name, entity.key_fields, entity.compared_fields, entity.sent_only_fields, entity.vanished_action)
    for entity in LEARNING_ENTITIES
)
ENTITY_BY_NAME = {spec.name: spec for spec in ENTITIES}


def content_hash(payload: dict[str, Any], spec: EntitySpec) -> str:
    """SHA-256 of the Learning-visible fields, in the entity's field order.

    Values are joined with a unit separator, None marked apart from "" (a plain join is
    several times faster than JSON, and the diff hashes every row of every run).
    """
    parts = [_NULL_MARK if value is None else str(value) for value in map(payload.get, spec.compared_fields)]
    return hashlib.sha256(_FIELD_SEPARATOR.join(parts).encode("utf-8")).hexdigest()


def entity_key(payload: dict[str, Any], spec: EntitySpec) -> str:
    """The key Learning answers with: the external id, or ``a:b`` for rosters and links."""
    return ":".join(str(payload[name]) for name in spec.key_fields)


def _organization_column(spec: EntitySpec):
    """The select expression and joins giving each row's school (the guard counts per school)."""
    table = LEARNING_TABLES[spec.name].__table__
    if "organization_id" in spec.compared_fields:
        return table.c.organization_id, None
    user_type = None
    if spec.name == "user_levels":
        other, on, user_type = LearningUser.__table__, "external_id", "S"
        join_column = table.c.external_id
    elif spec.name == "parent_links":
        other, on, user_type = LearningUser.__table__, "external_id", "S"
        join_column = table.c.child_id
    elif spec.name == "rosters":
        other, on = LearningClass.__table__, "class_id"
        join_column = table.c.class_id
    else:  # pragma: no cover - every entity is listed above
        raise ValueError(spec.name)
    alias = other.alias(f"organization_of_{spec.name}")
    condition = and_(
        alias.c.district_id == table.c.district_id, alias.c.run_id == table.c.run_id, alias.c[on] == join_column
    )
    if user_type is not None:  # a student's DCID may also be a teacher's or a parent's
        condition = and_(condition, alias.c.user_type == user_type)
    return alias.c.organization_id, (alias, condition)


def _check_unique_keys(connection: Connection, spec: EntitySpec, district_id: str, run_id: str) -> None:
    """Transform writes one row per key; two would be sent twice."""
    table = LEARNING_TABLES[spec.name].__table__
    key_columns = [table.c[name] for name in spec.key_fields]
    duplicates = connection.execute(
        select(*key_columns, func.count())
        .where(table.c.district_id == district_id, table.c.run_id == run_id)
        .group_by(*key_columns)
        .having(func.count() > 1)
        .limit(5)
    ).all()
    if duplicates:
        examples = ", ".join(f"{':'.join(map(str, row[:-1]))} ({row[-1]} rows)" for row in duplicates)
        raise ValueError(
            f"learning_{spec.name} of run {run_id} has the same key more than once ({examples}): "
            "transform must write one row per key; rerun transform before the load"
        )


# --- content hash and payload, computed by the database ---------------------------------------
#
# The hash and the payload of every row are SQL expressions, so the comparison with the
# snapshot is one INSERT ... SELECT per entity and no row passes through Python (at district
# scale, 1.6 million rows, fetching them and writing them back was most of the diff). The
# hash is exactly ``content_hash`` of the same row, so a snapshot written by an earlier
# version stays comparable (tests/load/test_diff.py holds both to it); the payload is the
# same JSON object (byte for byte on SQLite; PostgreSQL's json_build_object spaces it).
# PostgreSQL has sha256(); SQLite gets the same function from Python
# (``_register_sqlite_functions``), called once per row.

SQLITE_SHA256_FUNCTION = "sis_learning_sha256"


def _sha256_hex(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _register_sqlite_functions(connection: Connection) -> None:
    connection.connection.driver_connection.create_function(SQLITE_SHA256_FUNCTION, 1, _sha256_hex, deterministic=True)


def _as_text(column: Any) -> Any:
    """The text ``str(value)`` gives: booleans as ``True`` / ``False`` (None stays NULL)."""
    if isinstance(column.type, Boolean):
        return case((column.is_(True), literal("True")), (column.is_(False), literal("False")))
    return column


def _concat(parts: list[Any]) -> Any:
    expression = parts[0]
    for part in parts[1:]:
        expression = expression.op("||")(part)
    return expression


def _hash_expression(columns: list[Any], dialect: str) -> Any:
    """SHA-256 (hex) of the fields joined by \\x1f, a NULL as \\x00: the same as ``content_hash``."""
    if dialect == "sqlite":
        separator, null_mark = func.char(0x1F), func.char(0)
        parts = [func.coalesce(_as_text(column), null_mark) for column in columns]
        joined = _concat([item for part in parts for item in (separator, part)][1:])
        return getattr(func, SQLITE_SHA256_FUNCTION)(joined, type_=String)
    # PostgreSQL text cannot hold \x00: the input is assembled as bytes.
    separator, null_mark = func.decode("1f", "hex"), func.decode("00", "hex")
    parts = [func.coalesce(func.convert_to(_as_text(column), "UTF8"), null_mark) for column in columns]
    joined = _concat([item for part in parts for item in (separator, part)][1:])
    return func.encode(func.sha256(joined), "hex", type_=String)


def _payload_expression(columns: list[Any], names: tuple[str, ...], dialect: str) -> Any:
    """The payload as JSON text, fields in spec order (booleans as JSON true / false)."""
    arguments: list[Any] = []
    for name, column in zip(names, columns, strict=True):
        if dialect == "sqlite" and isinstance(column.type, Boolean):
            # SQLite stores booleans as 0/1; json() marks the text as JSON so it is not quoted.
            column = func.json(case((column.is_(True), literal("true")), (column.is_(False), literal("false"))))
        arguments += [literal(name), column]
    if dialect == "sqlite":
        return func.json_object(*arguments, type_=Text)
    return cast(func.json_build_object(*arguments), Text)


def _key_expression(columns: list[Any]) -> Any:
    """The key Learning answers with: the external id, or ``a:b`` for rosters and links."""
    if len(columns) == 1:
        return columns[0]
    return _concat([item for column in columns for item in (literal(":"), column)][1:])


# A delta diff (after an incremental read): the keys transform made anew, plus those to retry.
DELTA_KEYS_TABLE = "delta_diff_keys"


def _key_filter(spec: EntitySpec, replaced: set[str] | None, key_column: Any, user_type_column: Any = None) -> Any:
    """The rows a delta diff compares: keys in the temporary key table, or of a user type recomputed whole.

    Transform now records the changed keys of a user type (``transform_delta.changed_of_types``);
    a whole type still comes from a run transformed by an older version and diffed after an upgrade.
    """
    if replaced is None or WHOLE in replaced:
        return None
    # Usually only keys: a plain IN, which PostgreSQL plans as a join with the (analysed)
    # key table (staging.base.temporary_values), so the snapshot is read by its index for
    # those keys only. Under an OR the IN stays a filter with a guessed selectivity of one
    # half, and every entity's diff read the district's whole snapshot.
    conditions = [key_column.in_(select(text("key")).select_from(text(DELTA_KEYS_TABLE)))]
    for item in sorted(replaced):
        if item.startswith(TYPE_PREFIX):
            user_type = item[len(TYPE_PREFIX) :]
            if user_type_column is not None:
                conditions.append(user_type_column == user_type)
            elif spec.name == "users":
                conditions.append(key_column.like(f"{user_type}:%"))
            elif spec.name == "rosters":
                conditions.append(key_column.like(f"%:{user_type}:%"))
    return conditions[0] if len(conditions) == 1 else or_(*conditions)


def _current_rows(
    spec: EntitySpec, district_id: str, run_id: str, dialect: str, replaced: set[str] | None = None
) -> Any:
    """This run's rows of one entity with key, school and content hash (a CTE, materialized).

    Materialized so the hash is computed once per row however often the comparison
    refers to it (SQLite would otherwise inline the subquery and call it four times).
    """
    table = LEARNING_TABLES[spec.name].__table__
    organization, join = _organization_column(spec)
    source = table if join is None else table.outerjoin(join[0], join[1])
    key_columns = [table.c[name] for name in spec.key_fields]
    compared = [table.c[name] for name in spec.compared_fields]
    query = (
        select(
            _key_expression(key_columns).label("key"),
            organization.label("organization_id"),
            _hash_expression(compared, dialect).label("content_hash"),
            *(table.c[name] for name in spec.payload_fields),
        )
        .select_from(source)
        .where(table.c.district_id == district_id, table.c.run_id == run_id)
        .order_by(*key_columns)
    )
    restrict = _key_filter(
        spec, replaced, _key_expression(key_columns), table.c.user_type if "user_type" in table.c else None
    )
    if restrict is not None:
        query = query.where(restrict)
    return query.cte(f"current_{spec.name}").prefix_with("MATERIALIZED")


def _diff_entity(
    connection: Connection, spec: EntitySpec, district_id: str, run_id: str, replaced: set[str] | None = None
) -> None:
    """Write the entity's change_set rows; with ``replaced`` (a delta diff), only for those keys."""
    if replaced is None or WHOLE in replaced:
        _check_unique_keys(connection, spec, district_id, run_id)
    dialect = connection.dialect.name
    snapshot = LearningSnapshot.__table__
    changes = ChangeSet.__table__
    current = _current_rows(spec, district_id, run_id, dialect, replaced)
    run_changes = (changes.c.district_id == district_id, changes.c.run_id == run_id, changes.c.entity == spec.name)
    # Rows Learning accepted in an earlier attempt of this run stay as they are. Usually
    # there are none, and the lookup per row is left out.
    any_accepted = (
        connection.execute(
            select(changes.c.id).where(*run_changes, changes.c.status == STATUS_ACCEPTED).limit(1)
        ).first()
        is not None
    )

    previous = snapshot.alias("previous")
    joined = current.outerjoin(
        previous,
        and_(previous.c.district_id == district_id, previous.c.entity == spec.name, previous.c.key == current.c.key),
    )
    is_unchanged = previous.c.content_hash == current.c.content_hash
    action = case(
        (previous.c.key.is_(None), ACTION_CREATE),
        (is_unchanged, ACTION_UNCHANGED),
        else_=ACTION_UPDATE,
    )
    status = case((previous.c.key.is_not(None) & is_unchanged, STATUS_SKIPPED), else_=STATUS_PENDING)
    # The payload of an unchanged row is in the snapshot already: not copied a second time.
    payload = case(
        (previous.c.key.is_not(None) & is_unchanged, None),
        else_=_payload_expression([current.c[name] for name in spec.payload_fields], spec.payload_fields, dialect),
    )
    present_rows = select(
        literal(district_id),
        literal(run_id),
        literal(spec.name),
        current.c.key,
        current.c.organization_id,
        action,
        status,
        current.c.content_hash,
        payload,
    ).select_from(joined)
    if any_accepted:
        present_rows = present_rows.where(
            ~exists().where(*run_changes, changes.c.status == STATUS_ACCEPTED, changes.c.key == current.c.key)
        )
    columns = [
        "district_id",
        "run_id",
        "entity",
        "key",
        "organization_id",
        "action",
        "status",
        "content_hash",
        "payload",
    ]
    connection.execute(changes.insert().from_select(columns, present_rows))

    if spec.vanished_action is None:
        return
    # Keys Learning has (active) that this run no longer has: deactivate / remove. This run's
    # change set now holds every key present (and every key accepted in an earlier attempt).
    vanished_rows = select(
        literal(district_id),
        literal(run_id),
        literal(spec.name),
        snapshot.c.key,
        snapshot.c.organization_id,
        literal(spec.vanished_action),
        literal(STATUS_PENDING),
        snapshot.c.content_hash,
        snapshot.c.payload,
    ).where(
        snapshot.c.district_id == district_id,
        snapshot.c.entity == spec.name,
        snapshot.c.active.is_(True),
        ~exists().where(*run_changes, changes.c.key == snapshot.c.key),
    )
    restrict = _key_filter(spec, replaced, snapshot.c.key)
    if restrict is not None:
        vanished_rows = vanished_rows.where(restrict)
    connection.execute(changes.insert().from_select(columns, vanished_rows))


def change_counts(engine: Engine, district_id: str, run_id: str) -> dict[str, dict[str, int]]:
    """``{entity: {action: rows}}`` of a run's change set (every action listed, zeros included)."""
    changes = ChangeSet.__table__
    counts = {spec.name: dict.fromkeys(ACTIONS, 0) for spec in ENTITIES}
    with engine.connect() as connection:
        for entity, action, rows in connection.execute(
            select(changes.c.entity, changes.c.action, func.count())
            .where(changes.c.district_id == district_id, changes.c.run_id == run_id)
            .group_by(changes.c.entity, changes.c.action)
        ):
            counts.setdefault(entity, dict.fromkeys(ACTIONS, 0))[action] = rows
    # After an incremental read the keys unchanged since the base run have no change_set row.
    for entity, rows in carried_unchanged(engine, district_id, run_id).items():
        counts.setdefault(entity, dict.fromkeys(ACTIONS, 0))[ACTION_UNCHANGED] += rows
    return counts


def _retry_keys(connection: Connection, district_id: str, base_run_id: str) -> dict[str, set[str]]:
    """Keys a delta diff compares although transform did not make them anew: what the base run
    did not get accepted (refused, still pending), and what changed in the snapshot since it finished."""
    changes = ChangeSet.__table__
    snapshot = LearningSnapshot.__table__
    runs = SyncRun.__table__
    keys: dict[str, set[str]] = {}
    # Per entity and sent action, on the index the load pages through (district, run, entity,
    # action, id): an unchanged row is always skipped, so the base run's unchanged rows (most
    # of a full reconcile's) are never read. On a kept L SQLite database with an incremental
    # run as the base: 0.004 s against 0.063 s. An entity whose rows the base run's completed
    # load all got accepted is not read at all (its record, sis_learning.delta.record_load):
    # a full reconcile's 1.6 million creates took 0.5-1.6 s to read for nothing.
    unanswered = left_unanswered(connection, district_id, base_run_id)
    sent = (ACTION_CREATE, ACTION_UPDATE, ACTION_DEACTIVATE, ACTION_REMOVE)
    for spec in ENTITIES:
        if unanswered is not None and unanswered.get(spec.name) == 0:
            continue
        for (key,) in connection.execute(
            select(changes.c.key).where(
                changes.c.district_id == district_id,
                changes.c.run_id == base_run_id,
                changes.c.entity == spec.name,
                changes.c.action.in_(sent),
                changes.c.status.not_in((STATUS_ACCEPTED, STATUS_SKIPPED)),
            )
        ):
            keys.setdefault(spec.name, set()).add(key)
    finished = connection.execute(
        select(runs.c.finished_at).where(
            runs.c.district_id == district_id, runs.c.run_id == base_run_id, runs.c.kind == "import"
        )
    ).scalar()
    condition = snapshot.c.updated_at > finished if finished is not None else true()
    for entity, key in connection.execute(
        select(snapshot.c.entity, snapshot.c.key).where(snapshot.c.district_id == district_id, condition)
    ):
        keys.setdefault(entity, set()).add(key)
    return keys


def _present_keys(connection: Connection, spec: EntitySpec, district_id: str, run_id: str) -> int:
    table = LEARNING_TABLES[spec.name].__table__
    return int(
        connection.scalar(
            select(func.count()).select_from(table).where(table.c.district_id == district_id, table.c.run_id == run_id)
        )
        or 0
    )


def _delete_unaccepted(connection: Connection, district_id: str, run_id: str) -> None:
    """The run's change-set rows, except those Learning accepted in an earlier attempt."""
    changes = ChangeSet.__table__
    connection.execute(
        changes.delete().where(
            changes.c.district_id == district_id, changes.c.run_id == run_id, changes.c.status != STATUS_ACCEPTED
        )
    )


def _diff_one(
    connection: Connection,
    spec: EntitySpec,
    district_id: str,
    run_id: str,
    source: Any,
    made_anew: dict[str, set[str]],
    retry: dict[str, set[str]],
    unchanged: dict[str, int],
) -> None:
    """One entity's change-set rows: all of them, or (after an incremental read) the keys that may have changed."""
    if source is None:
        _diff_entity(connection, spec, district_id, run_id)
        return
    changes = ChangeSet.__table__
    replaced = set(made_anew.get(spec.name, set())) | retry.get(spec.name, set())
    temporary_values(connection, DELTA_KEYS_TABLE, (key for key in replaced if not key.startswith("*")), "key")
    _diff_entity(connection, spec, district_id, run_id, replaced)
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {DELTA_KEYS_TABLE}")
    if WHOLE not in replaced:
        present = connection.scalar(
            select(func.count()).where(
                changes.c.district_id == district_id,
                changes.c.run_id == run_id,
                changes.c.entity == spec.name,
                changes.c.action.not_in((ACTION_DEACTIVATE, ACTION_REMOVE)),
            )
        )
        unchanged[spec.name] = _present_keys(connection, spec, district_id, run_id) - int(present or 0)


def compute_changes(engine: Engine, config: DistrictConfig, run_id: str) -> dict[str, dict[str, int]]:
    """Diff this run's Learning-shaped rows against the snapshot into ``change_set``.

    Returns ``{entity: {"create": n, "update": n, "deactivate": n, "remove": n,
    "unchanged": n}}``. On SQLite it runs in one transaction: a crash leaves the previous
    change set. On PostgreSQL the entities are compared side by side (``staging.base.side_by_side``),
    each committed on its own: an error in one removes the others' rows again (rows accepted
    in an earlier attempt stay), and a process killed part-way fails the task before the load
    reads anything; the rerun recomputes every row not yet accepted.
    Rows Learning already accepted in an earlier attempt of the same run are kept as they
    are; everything else (pending, skipped, refused) is recomputed, and this run's
    load-stage rejected rows are cleared because refused rows are tried again.
    """
    if not run_id:
        raise ValueError("compute_changes needs the run id of the DAG run whose learning_* rows to diff")
    create_all(engine)
    district_id = config.district_id
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"the diff runs on SQLite or PostgreSQL staging, not {engine.dialect.name}")
    changes = ChangeSet.__table__
    rejected = RejectedRow.__table__
    print_ = fingerprint(config, STAGE)
    source, reason = usable_delta(engine, config, run_id, STAGE, print_, previous_stage="transform")
    made_anew = delta_keys(engine, district_id, run_id, "transform") if source is not None else {}
    parallel = staging_workers(engine) > 1
    # This run's change set is computed again: what an earlier load of it left unanswered no longer holds.
    forget_stage(engine, district_id, run_id, LOAD)
    retry: dict[str, set[str]] = {}
    unchanged: dict[str, int] = {}
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            _register_sqlite_functions(connection)
        migrated = migrate_user_identity(
            connection, district_id, lambda payload: content_hash(payload, ENTITY_BY_NAME["rosters"])
        )
        if any(migrated.values()):
            log.info("snapshot of %s rekeyed for identity by user type: %s", district_id, migrated)
        _delete_unaccepted(connection, district_id, run_id)
        connection.execute(
            rejected.delete().where(
                rejected.c.district_id == district_id, rejected.c.run_id == run_id, rejected.c.stage == "load"
            )
        )
        # Transform has just filled the learning_* tables; before autovacuum gets to them
        # PostgreSQL's planner thinks they are empty and picks nested loops that take hours.
        # After an incremental read the tables' other columns keep the statistics of earlier
        # runs (a run adds the same kinds of rows), and only the table sizes and the run
        # columns are refreshed: on a kept L database, 0.33 s against 0.75 s warm, 1.3-3.0 s
        # in the runs measured, where transform has just written the rows.
        # The snapshot, written by loads alone, keeps the statistics the last load left it
        # unless loads wrote a tenth of it since (staging.base.analyze_if_changed): 0.73 s at L.
        written = [*(LEARNING_TABLES[spec.name] for spec in ENTITIES), changes]
        if source is None:
            analyze(connection, [*written, LearningSnapshot])
        else:
            analyze(connection, written, columns=RUN_COLUMNS)
            analyze_if_changed(connection, LearningSnapshot)
        if source is not None:
            retry = _retry_keys(connection, district_id, source.base_run_id)
        jobs = [
            partial(
                _diff_one,
                spec=ENTITY_BY_NAME[name],
                district_id=district_id,
                run_id=run_id,
                source=source,
                made_anew=made_anew,
                retry=retry,
                unchanged=unchanged,
            )
            for name in largest_first(ENTITY_BY_NAME)
        ]
        if not parallel:
            for job in jobs:
                job(connection)
    if parallel:
        # PostgreSQL: the entities side by side, each committed on its own (see the docstring).
        side_by_side(engine, jobs, undo=partial(_delete_unaccepted, district_id=district_id, run_id=run_id))
    record_stage(
        engine,
        config,
        run_id,
        STAGE,
        FULL if source is None else DELTA,
        print_,
        base_run_id=None if source is None else source.base_run_id,
        note=f"compared every row: {reason}"
        if source is None
        else "compared the rows transform made anew, "
        "and those the base run did not get accepted or that changed in the snapshot since; the others are "
        "unchanged: " + ", ".join(f"{unchanged[spec.name]} {spec.name}" for spec in ENTITIES if spec.name in unchanged),
        counts={spec.name: unchanged[spec.name] for spec in ENTITIES if spec.name in unchanged}
        if source is not None
        else None,
    )
    counts = change_counts(engine, district_id, run_id)
    log.debug("change set of %s run %s: %s", district_id, run_id, counts)  # the task logs a summary line
    return counts


# --- the safety guard --------------------------------------------------------------------


def _identity_keys(payload: dict[str, Any]) -> list[str]:
    """What stays the same when only the Import ID changes: name and type, or email."""
    keys = []
    first, last = (payload.get("first_name") or "").strip().lower(), (payload.get("last_name") or "").strip().lower()
    if first or last:
        keys.append(f"name:{first}|{last}|{payload.get('user_type') or ''}")
    email = (payload.get("email") or "").strip().lower()
    if email:
        keys.append(f"email:{email}")
    return keys


def _describe_user(payload: dict[str, Any]) -> str:
    return f"{payload.get('external_id')} ({payload.get('first_name', '')} {payload.get('last_name', '')})".strip()


def _pending_rows(connection: Connection, district_id: str, run_id: str, entity: str, action: str) -> Iterator[Any]:
    changes = ChangeSet.__table__
    result = connection.execution_options(yield_per=STREAM_PAGE_ROWS).execute(
        select(changes.c.key, changes.c.organization_id, changes.c.payload)
        .where(
            changes.c.district_id == district_id,
            changes.c.run_id == run_id,
            changes.c.entity == entity,
            changes.c.action == action,
            changes.c.status == STATUS_PENDING,
        )
        .order_by(changes.c.key)
    )
    yield from result


def find_mass_changes(engine: Engine, config: DistrictConfig, run_id: str) -> list[dict[str, Any]]:
    """What the guard objects to, as data: one finding per school and entity (or Import ID change)."""
    district_id = config.district_id
    safety = config.safety
    changes = ChangeSet.__table__
    snapshot = LearningSnapshot.__table__
    findings: list[dict[str, Any]] = []
    with engine.connect() as connection:
        # Per entity, on the index the load pages through (district, run, entity, action, id):
        # only the run's deactivations and removals are read, not its whole change set.
        leaving = [
            row
            for spec in ENTITIES
            if spec.vanished_action is not None
            for row in connection.execute(
                select(changes.c.entity, changes.c.organization_id, changes.c.action, func.count())
                .where(
                    changes.c.district_id == district_id,
                    changes.c.run_id == run_id,
                    changes.c.entity == spec.name,
                    changes.c.action.in_((ACTION_DEACTIVATE, ACTION_REMOVE)),
                    changes.c.status == STATUS_PENDING,
                )
                .group_by(changes.c.entity, changes.c.organization_id, changes.c.action)
                .order_by(changes.c.organization_id)
            )
        ]
        leaving.sort(key=lambda row: row[0])  # by entity name, then as the database ordered the schools
        # Users each school keeps in this run: its Learning users, every one of them created,
        # updated or unchanged. Counted from the run's learning_users, not from the change set:
        # after an incremental read the change set holds only the keys that may have changed,
        # and a school whose other users were all carried forward is not emptied.
        users = LearningUser.__table__
        staying = (
            dict(
                connection.execute(
                    select(users.c.organization_id, func.count())
                    .where(users.c.district_id == district_id, users.c.run_id == run_id)
                    .group_by(users.c.organization_id)
                ).all()
            )
            if any(entity == "users" for entity, _school, _action, _rows in leaving)
            else {}
        )

        # What each school holds in Learning now is needed only where a finding is possible:
        # at least the row floor leaving, or a school losing its last user. A run of ordinary
        # leavers (a few per school) does not count the whole snapshot.
        def emptied(entity: str, school: str | None, rows: int) -> bool:
            """A school losing its last user (a stop whatever its size)."""
            return entity == "users" and school is not None and rows > 0 and not staying.get(school)

        needed = {
            (entity, school)
            for entity, school, _action, rows in leaving
            if rows >= safety.min_removal_rows or emptied(entity, school, rows)
        }
        previous = (
            {
                (entity, school): rows
                for entity, school, rows in connection.execute(
                    select(snapshot.c.entity, snapshot.c.organization_id, func.count())
                    .where(
                        snapshot.c.district_id == district_id,
                        snapshot.c.active.is_(True),
                        snapshot.c.entity.in_(sorted({entity for entity, _school in needed})),
                    )
                    .group_by(snapshot.c.entity, snapshot.c.organization_id)
                )
            }
            if needed
            else {}
        )
        for entity, school, action, rows in leaving:
            before = previous.get((entity, school), 0)
            too_many = rows >= safety.min_removal_rows and rows > safety.max_removal_ratio * before
            # A school dropping to zero users is a stop whatever its size: the row floor is there so
            # a small school's ordinary leavers do not stop a run, and a school emptying is not that.
            if too_many or emptied(entity, school, rows):
                examples = (
                    connection.execute(
                        select(changes.c.key)
                        .where(
                            changes.c.district_id == district_id,
                            changes.c.run_id == run_id,
                            changes.c.entity == entity,
                            changes.c.action == action,
                            changes.c.status == STATUS_PENDING,
                            changes.c.organization_id.is_(None)
                            if school is None
                            else changes.c.organization_id == school,
                        )
                        .order_by(changes.c.key)
                        .limit(5)
                    )
                    .scalars()
                    .all()
                )
                findings.append(
                    {
                        "kind": "mass_removal" if too_many else "school_emptied",
                        "entity": entity,
                        "organization_id": school,
                        "action": action,
                        "rows": rows,
                        "previous_rows": before,
                        "ratio": round(rows / before, 4) if before else None,
                        "examples": examples,
                    }
                )

        # Import ID change: users leaving while new users with the same identity arrive.
        # Without any user leaving there is nothing to match (a first run creates every user:
        # reading them all would be wasted).
        arriving_identities: set[str] = set()
        any_leaving = any(
            entity == "users" and action == ACTION_DEACTIVATE for entity, _school, action, _rows in leaving
        )
        for row in _pending_rows(connection, district_id, run_id, "users", ACTION_CREATE) if any_leaving else ():
            arriving_identities.update(_identity_keys(json.loads(row.payload)))
        vanished = matched = 0
        matched_per_school: dict[str | None, int] = defaultdict(int)
        examples: list[str] = []
        if arriving_identities:
            for row in _pending_rows(connection, district_id, run_id, "users", ACTION_DEACTIVATE):
                vanished += 1
                payload = json.loads(row.payload)
                if any(key in arriving_identities for key in _identity_keys(payload)):
                    matched += 1
                    matched_per_school[row.organization_id] += 1
                    if len(examples) < 5:
                        examples.append(_describe_user(payload))
        if (
            vanished
            and matched >= max(safety.min_removal_rows, 1)
            and matched >= safety.import_id_change_ratio * vanished
        ):
            findings.append(
                {
                    "kind": "import_id_change",
                    "entity": "users",
                    "organization_id": None,
                    "action": ACTION_DEACTIVATE,
                    "rows": matched,
                    "previous_rows": vanished,
                    "ratio": round(matched / vanished, 4),
                    "per_school": dict(sorted(matched_per_school.items(), key=lambda item: str(item[0]))),
                    "examples": examples,
                }
            )
    return findings


def format_findings(config: DistrictConfig, run_id: str, findings: list[dict[str, Any]]) -> str:
    safety = config.safety
    lines = [f"Safety stop for district {config.district_id}, run {run_id}: nothing was sent to Learning."]
    for finding in findings:
        examples = ", ".join(finding["examples"]) or "-"
        if finding["kind"] == "mass_removal":
            share = f"{finding['ratio']:.0%}" if finding["ratio"] is not None else "all (none before)"
            lines.append(
                f"- school {finding['organization_id']}, {finding['entity']}: {finding['rows']} of "
                f"{finding['previous_rows']} would be {finding['action']}d ({share}; limit "
                f"{safety.max_removal_ratio:.0%} and at least {safety.min_removal_rows} rows). Examples: {examples}"
            )
        elif finding["kind"] == "school_emptied":
            lines.append(
                f"- school {finding['organization_id']} would drop to zero users: all {finding['previous_rows']} "
                f"would be {finding['action']}d. Examples: {examples}"
            )
        else:
            per_school = ", ".join(f"school {school}: {rows}" for school, rows in finding["per_school"].items())
            lines.append(
                f"- possible Import ID change: {finding['rows']} of {finding['previous_rows']} users leaving "
                f"reappear under a new id with the same name and type or the same email ({finding['ratio']:.0%}; "
                f"limit {safety.import_id_change_ratio:.0%}) [{per_school}]. Examples: {examples}"
            )
    lines.append(
        "If this is expected (for example the end of a school year), approve it: in the Airflow UI, where the "
        "run waits for a person (task load.approve_mass_changes, Required Actions), or by triggering the DAG "
        f"{config.import_dag_id} with the parameter approve_mass_changes=true "
        f"(airflow dags trigger {config.import_dag_id} --conf '{{\"approve_mass_changes\": true}}'). "
        "If not, reject it and fix the data in PowerSchool first: the source document strongly recommends "
        "against changing Import IDs during the school year."
    )
    return "\n".join(lines)


def check_safety(engine: Engine, config: DistrictConfig, run_id: str, approve_mass_changes: bool) -> None:
    """Raise MassChangeDetected unless the change set is safe or approved.

    Call after ``compute_changes`` and before ``load_run``. With
    ``approve_mass_changes=True`` the findings are logged and the load may go ahead.
    """
    findings = find_mass_changes(engine, config, run_id)
    if not findings:
        return
    message = format_findings(config, run_id, findings)
    if approve_mass_changes:
        log.warning("mass changes approved by the run's approve_mass_changes parameter:\n%s", message)
        return
    raise MassChangeDetected(message, findings)
