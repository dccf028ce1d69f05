"""Send a run's change set to Learning in batches, and record Learning's answer per row.

Implements issue 7's load, for the source document's import ("Users, Classes and Rosters
will automatically be imported"; "Passwords are not passed via the PowerSchool SIS
Integration. PowerSchool Learning can set default passwords for you"; "If the user fails
and is the owner of a class, roster and class creation will also fail"):

- only ``change_set`` rows still ``pending`` are sent (``diff.compute_changes`` wrote them),
  in dependency order: organizations, users, user levels, classes, then removals of
  roster rows and parent links, then roster rows and parent links, and last the
  deactivation of users who left the import (after their rosters and links are gone);
- batches of ``config.learning.batch_size`` rows (at most 1000), a few in flight at once;
- each row's result goes back into ``change_set`` (accepted or refused, Learning's
  result and reason); refused rows also go to ``rejected_rows`` (stage ``load``) with
  Learning's reason, so the district sees why;
- ``learning_snapshot`` advances in the same transaction, and only for accepted rows: a
  refused row is diffed, and sent, again next run;
- the district's default password is resolved (``secrets.resolve_secret``) only when
  new users are sent, added to user creates only, with ``password_temporary`` from the
  district's setting, and never stored or logged.

Crash-safe and idempotent: every write to Learning is keyed, and a batch's outcome is
committed atomically with the snapshot. Killed mid-load, the rows of unrecorded batches
stay pending; the rerun sends them again and Learning answers "unchanged" for what it
already applied, so nothing is lost and nothing is duplicated.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.engine import Connection, Engine

from sis_learning.config import DistrictConfig
from sis_learning.delta import DELTA, LOAD, carried_unchanged, forget_stage, record_load, stage_record
from sis_learning.diff import ENTITIES, ENTITY_BY_NAME
from sis_learning.entities import LEARNING_ENTITIES
from sis_learning.hooks.learning import MAX_BATCH_ROWS, LearningHook, LearningResponseError
from sis_learning.secrets import resolve_secret
from sis_learning.staging.base import RUN_COLUMNS, analyze, analyze_if_changed, bulk_insert, create_all
from sis_learning.staging.changes import (
    ACTION_CREATE,
    ACTION_DEACTIVATE,
    ACTION_REMOVE,
    ACTION_UNCHANGED,
    ACTION_UPDATE,
    DEACTIVATED_HASH,
    STATUS_ACCEPTED,
    STATUS_PENDING,
    STATUS_REFUSED,
    ChangeSet,
    LearningSnapshot,
)
from sis_learning.staging.quality import RejectedRow
from sis_learning.staging.runs import utcnow

log = logging.getLogger(__name__)

# What Learning answers for a row it applied (or had already applied).
ACCEPTED_RESULTS = frozenset({"created", "updated", "unchanged", "deactivated", "removed"})
REFUSED_RESULT = "failed"
LOAD_REJECTION_RULE = "learning_refused"

# The counts load_run reports per entity.
COUNT_NAMES = ("created", "updated", "unchanged", "deactivated", "removed", "refused", "pending")


@dataclass(frozen=True)
class Phase:
    entity: str
    method: str  # upsert | remove | deactivate
    actions: tuple[str, ...]


# Learning refuses a class whose teacher is missing and a roster row whose class or user
# is missing, so parents come before children; a user is deactivated only after the
# rosters and links that point at them are removed.
PHASES: tuple[Phase, ...] = (
    *(
        Phase(entity.name, "upsert", (ACTION_CREATE, ACTION_UPDATE))
        for entity in LEARNING_ENTITIES
        if entity.vanished_action != "remove"
    ),
    *(
        Phase(entity.name, "remove", (ACTION_REMOVE,))
        for entity in LEARNING_ENTITIES
        if entity.vanished_action == "remove"
    ),
    *(
        Phase(entity.name, "upsert", (ACTION_CREATE, ACTION_UPDATE))
        for entity in LEARNING_ENTITIES
        if entity.vanished_action == "remove"
    ),
    *(
        Phase(entity.name, "deactivate", (ACTION_DEACTIVATE,))
        for entity in LEARNING_ENTITIES
        if entity.vanished_action == "deactivate"
    ),
)


# What a refused row points at: if that was refused in this run too, the row's refusal is
# a cascade ("If the user fails and is the owner of a class, roster and class creation
# will also fail") and rejected_rows.caused_by names it.
# Each reference: (entity referred to, the referred key from the row's payload). A user's key
# is "<user_type>:<external_id>": the type is the field's (a class's teacher is a T) or the row's.
REFERENCES: dict[str, tuple[tuple[str, Callable[[dict[str, Any]], str]], ...]] = {
    entity.name: tuple((reference.entity, reference.key) for reference in entity.references)
    for entity in LEARNING_ENTITIES
    if entity.references
}


class PendingRow(NamedTuple):
    """One pending change-set row (built for the rows Learning refused, to report them)."""

    id: int
    key: str
    action: str
    payload: dict[str, Any]


@dataclass
class PendingBatch:
    """Pending change-set rows of one phase, in id order, column by column (no object per row).

    The snapshot copies organization, hash and payload text from change_set itself, so
    only what is sent and checked is read.
    """

    ids: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, other: PendingBatch) -> None:
        self.ids += other.ids
        self.keys += other.keys
        self.actions += other.actions
        self.payloads += other.payloads

    def split(self, size: int) -> tuple[PendingBatch, PendingBatch]:
        """The first ``size`` rows, and the rest."""
        return (
            PendingBatch(self.ids[:size], self.keys[:size], self.actions[:size], self.payloads[:size]),
            PendingBatch(self.ids[size:], self.keys[size:], self.actions[size:], self.payloads[size:]),
        )

    def row(self, position: int) -> PendingRow:
        return PendingRow(self.ids[position], self.keys[position], self.actions[position], self.payloads[position])


@dataclass
class LoadStats:
    requests: int = 0
    rows_sent: int = 0
    seconds_waiting_for_learning: float = 0.0
    seconds_recording: float = 0.0
    per_phase: dict[str, int] = field(default_factory=dict)


# The largest id an INTEGER column holds: the upper end of an action's place in the index.
_LAST_POSSIBLE_ID = 2**31 - 1


def _pending_pages(engine: Engine, district_id: str, run_id: str, phase: Phase, page_size: int):
    """The phase's pending rows, page by page: per action, in id order (keyset pagination).

    Each page is an index range scan (ix_change_set_run_action), so a million rows cost
    one pass. Rows already handed out are past the keyset cursor: a batch still in flight
    is never read twice, whether or not its results are recorded yet. A page's payloads
    are decoded in one call (one JSON array), not row by row. A page shorter than
    ``page_size`` is the action's last.

    On PostgreSQL a page is asked for as a range of the index's whole key (row comparisons
    on district, run, entity, action and id, ordered by all five), which only that index
    can give. Asked with equalities and ``ORDER BY id LIMIT``, the planner read it along the
    primary key whenever it expected the wanted rows to be dense there; for the last page
    of a phase (fewer rows left than the limit) and the empty read after it, that went on
    through every later row of the change set: 969,518 rows filtered out, 0.46 s, for the
    users' last page at L (``tests/load/test_pending_pages.py``). SQLite keeps the
    equalities: it takes only the first four fields of a row comparison to the index, and
    every page would start again at the action's first row.
    """
    changes = ChangeSet.__table__
    index_key = (changes.c.district_id, changes.c.run_id, changes.c.entity, changes.c.action, changes.c.id)
    by_index_key = engine.dialect.name == "postgresql"
    for action in phase.actions:
        place = (district_id, run_id, phase.entity, action)
        if by_index_key:
            of_action = (tuple_(*index_key) <= tuple_(*place, _LAST_POSSIBLE_ID),)
            order = index_key
        else:
            of_action = tuple(column == value for column, value in zip(index_key[:4], place, strict=True))
            order = (changes.c.id,)
        page = (
            select(changes.c.id, changes.c.key, changes.c.payload)
            .where(*of_action, changes.c.status == STATUS_PENDING)
            .order_by(*order)
            .limit(page_size)
        )
        last_id = 0
        while True:
            after = tuple_(*index_key) > tuple_(*place, last_id) if by_index_key else changes.c.id > last_id
            with engine.connect() as connection:
                rows = connection.execute(page.where(after)).all()
            if not rows:
                break
            last_id = rows[-1][0]
            ids, keys, payloads = zip(*rows, strict=True)
            yield PendingBatch(
                list(ids),
                list(keys),
                [action] * len(rows),
                orjson.loads("[" + ",".join(payload or "{}" for payload in payloads) + "]"),
            )
            if len(rows) < page_size:
                break


def _pending_batches(engine: Engine, district_id: str, run_id: str, phase: Phase, batch_size: int):
    """Full batches across the phase's actions (creates and updates share requests)."""
    buffer = PendingBatch()
    for page in _pending_pages(engine, district_id, run_id, phase, batch_size):
        buffer.extend(page)
        while len(buffer) >= batch_size:
            batch, buffer = buffer.split(batch_size)
            yield batch
    if len(buffer):
        yield buffer


def sso_authentication_types(config: DistrictConfig) -> dict[str, str]:
    """Email domain -> the Learning authentication type an import asks for (google, office365)."""
    types = {domain: "office365" for domain in config.sso_domains.office365}
    types.update({domain: "google" for domain in config.sso_domains.google})
    return types


def _authentication_type(sso_email: str | None, sso_types: dict[str, str]) -> str | None:
    if not sso_email or "@" not in sso_email:
        return None
    return sso_types.get(sso_email.rsplit("@", 1)[1].strip().lower())


def _request_rows(
    phase: Phase, batch: PendingBatch, password: str | None, temporary: bool, sso_types: dict[str, str] | None = None
) -> list[dict]:
    """What goes over the wire for a batch; the password only ever exists here.

    A user whose ``sso_email_address`` is on one of the district's Google Apps / Office 365
    domains is asked onto that SSO authentication ("users ... automatically set to this
    authentication via the import"); Learning applies it only to a user not already on SSO
    and whose type no admin set, so an import never undoes either.
    """
    spec = ENTITY_BY_NAME[phase.entity]
    if phase.method == "deactivate":
        # users are keyed "<user_type>:<external_id>"
        return [dict(zip(("user_type", "external_id"), key.split(":", 1), strict=True)) for key in batch.keys]
    if phase.method == "remove":
        return [{name: payload.get(name) for name in spec.key_fields} for payload in batch.payloads]
    fields = spec.compared_fields
    if phase.entity != "users":
        # The payload is what the diff compared, usually exactly the fields sent: sent as it is.
        wanted = set(fields)
        return [
            payload if payload.keys() == wanted else {name: payload.get(name) for name in fields}
            for payload in batch.payloads
        ]
    rows = []
    for action, payload in zip(batch.actions, batch.payloads, strict=True):
        sent = {name: payload.get(name) for name in fields}
        if sso_types:
            authentication = _authentication_type(payload.get("sso_email_address"), sso_types)
            if authentication:
                sent["authentication_type"] = authentication
        if action == ACTION_CREATE:
            # Learning applies a password on create only; it is never part of an update.
            if password is not None:
                sent["password"] = password
            sent["password_temporary"] = temporary
        rows.append(sent)
    return rows


def planned_requests(engine: Engine, config: DistrictConfig, run_id: str):
    """What ``load_run`` would send for the run's pending change set, in the order it would send it.

    Yields ``(phase, batch, rows)`` per request, the rows exactly as they would go over the
    wire except the default password (never shown: a preview says where it would go). The
    preview (preview.py) writes these instead of sending them; nothing is read from or
    written to Learning, and nothing in staging changes.
    """
    batch_size = min(config.learning.batch_size, MAX_BATCH_ROWS)
    temporary = config.imported_passwords_temporary
    sso_types = sso_authentication_types(config)
    for phase in PHASES:
        for batch in _pending_batches(engine, config.district_id, run_id, phase, batch_size):
            yield phase, batch, _request_rows(phase, batch, None, temporary, sso_types)


def _send(hook: LearningHook, phase: Phase, rows: list[dict]) -> tuple[list[dict], float]:
    started = time.perf_counter()
    if phase.method == "upsert":
        results = hook.upsert(phase.entity, rows)
    elif phase.method == "remove":
        results = hook.remove(phase.entity, rows)
    else:
        results = hook.deactivate_users(rows)
    return results, time.perf_counter() - started


def _driver_value(connection: Connection, column: Any, value: Any) -> Any:
    """``value`` as SQLAlchemy's column type hands it to the driver (for statements sent as SQL text)."""
    convert = column.type.dialect_impl(connection.dialect).bind_processor(connection.dialect)
    return convert(value) if convert is not None else value


def _markers(connection: Connection, count: int) -> str:
    marker = "?" if connection.dialect.paramstyle in ("qmark", "numeric") else "%s"
    return ", ".join([marker] * count)


# The two statements every batch makes, as SQL text through the driver: with a thousand
# ids each, SQLAlchemy's per-parameter compilation cost more than the statements
# themselves. Same SQL on SQLite (3.24+) and PostgreSQL, except how the ids are given:
# SQLite takes a thousand markers (IN); PostgreSQL one array (= ANY), which the driver
# binds once instead of a thousand times: the full load at M took 7.1 and 8.2 s of client
# CPU against 11.4 and 10.1 s with a thousand markers (runs alternated; bench/README.md).
_ACCEPT_SQL = "UPDATE change_set SET status = {m}, learning_result = {m}, reason = NULL WHERE {ids}"
# The snapshot is upserted from the accepted change-set rows: payloads never pass through Python.
# A user's login goes to its own column (staging.changes.held_logins reads it every run).
_ADVANCE_SNAPSHOT_SQL = (
    'INSERT INTO learning_snapshot (district_id, entity, "key", organization_id, content_hash, payload, active, '
    "run_id, updated_at, login) "
    'SELECT district_id, entity, "key", organization_id, content_hash, payload, {m}, run_id, {m}, '
    "CASE WHEN entity = 'users' THEN {login} END "
    "FROM change_set WHERE {ids} "
    'ON CONFLICT (district_id, entity, "key") DO UPDATE SET organization_id = excluded.organization_id, '
    "content_hash = excluded.content_hash, payload = excluded.payload, active = excluded.active, "
    "run_id = excluded.run_id, updated_at = excluded.updated_at, login = excluded.login"
)
_PAYLOAD_LOGIN = {"postgresql": "CAST(payload AS JSON) ->> 'login'", "sqlite": "json_extract(payload, '$.login')"}


def _ids_condition(connection: Connection, change_ids: list[int]) -> tuple[str, tuple[Any, ...]]:
    """``id`` among ``change_ids``, as SQL text and its parameters (see ``_ACCEPT_SQL``)."""
    if connection.dialect.name == "postgresql":
        return f"id = ANY(CAST({_markers(connection, 1)} AS INTEGER[]))", (list(change_ids),)
    return f"id IN ({_markers(connection, len(change_ids))})", tuple(change_ids)


def _accept(connection: Connection, change_ids: list[int], result: str) -> None:
    condition, ids = _ids_condition(connection, change_ids)
    connection.exec_driver_sql(
        _ACCEPT_SQL.format(m=_markers(connection, 1), ids=condition), (STATUS_ACCEPTED, result, *ids)
    )


def _advance_snapshot(connection: Connection, change_ids: list[int], now: Any) -> None:
    """Upsert the snapshot from these accepted change-set rows (upserts: creates and updates)."""
    snapshot = LearningSnapshot.__table__
    condition, ids = _ids_condition(connection, change_ids)
    connection.exec_driver_sql(
        _ADVANCE_SNAPSHOT_SQL.format(
            m=_markers(connection, 1), ids=condition, login=_PAYLOAD_LOGIN[connection.dialect.name]
        ),
        (
            _driver_value(connection, snapshot.c.active, True),
            _driver_value(connection, snapshot.c.updated_at, now),
            *ids,
        ),
    )


def _record_batch(
    connection: Connection,
    config: DistrictConfig,
    run_id: str,
    phase: Phase,
    batch: PendingBatch,
    results: list[dict],
) -> None:
    """In the caller's transaction: the rows' results, the refused rows, and the snapshot's advance."""
    district_id = config.district_id
    changes = ChangeSet.__table__
    snapshot = LearningSnapshot.__table__
    accepted_by_result: dict[str, list[int]] = defaultdict(list)
    accepted_ids: list[int] = []
    accepted_keys: list[str] = []
    refused: list[tuple[PendingRow, str]] = []
    for position, (key, result) in enumerate(zip(batch.keys, results, strict=True)):
        answered_key = result.get("key")
        if answered_key is not None and answered_key != key and str(answered_key) != key:
            raise LearningResponseError(
                200,
                f"PowerSchool Learning answered key {answered_key!r} for the row sent as {key!r} "
                f"({phase.entity} {phase.method}); results must come back in the order sent.",
                phase.entity,
                method="POST",
            )
        status = result.get("status")
        if status in ACCEPTED_RESULTS:
            accepted_by_result[status].append(batch.ids[position])
            accepted_ids.append(batch.ids[position])
            accepted_keys.append(key)
        elif status == REFUSED_RESULT:
            refused.append((batch.row(position), str(result.get("reason") or "Learning gave no reason")))
        else:
            raise LearningResponseError(
                200,
                f"PowerSchool Learning answered an unknown row status {status!r} for {phase.entity} {key}.",
                phase.entity,
                method="POST",
            )
    now = utcnow()
    for result, ids in accepted_by_result.items():
        _accept(connection, ids, result)
    if refused:
        connection.execute(
            update(changes)
            .where(changes.c.id == bindparam("row_id"))
            .values(status=STATUS_REFUSED, learning_result=REFUSED_RESULT, reason=bindparam("why")),
            [{"row_id": row.id, "why": reason} for row, reason in refused],
        )
        causes = _refused_causes(connection, district_id, run_id, phase, [row for row, _ in refused])
        bulk_insert(
            connection,
            RejectedRow,
            [
                {
                    "district_id": district_id,
                    "run_id": run_id,
                    "stage": "load",
                    "entity": phase.entity,
                    "source_id": row.key,
                    "rule": LOAD_REJECTION_RULE,
                    "reason": f"Learning refused to {row.action} {phase.entity} {row.key}: {reason}",
                    "blocks": None,
                    "caused_by": causes.get(row.key),
                    "created_at": now,
                }
                for row, reason in refused
            ],
        )
    if not accepted_ids:
        return
    if phase.method == "upsert":
        _advance_snapshot(connection, accepted_ids, now)
        return
    where_keys = (
        snapshot.c.district_id == district_id,
        snapshot.c.entity == phase.entity,
        snapshot.c.key.in_(accepted_keys),
    )
    if phase.method == "remove":
        connection.execute(snapshot.delete().where(*where_keys))
    else:
        connection.execute(
            update(snapshot)
            .where(*where_keys)
            .values(active=False, content_hash=DEACTIVATED_HASH, run_id=run_id, updated_at=now)
        )


class ResultRecorder:
    """Records Learning's answers in a thread of its own, in send order, while the next batches go out.

    Writing a batch's results (and, on SQLite, the commit and the write-ahead log's
    checkpoints) took as long as Learning took to answer; on the sending thread it held
    the next request back. Answers are queued (at most ``backlog`` batches: memory stays
    bounded) and written in the order they were sent, so the rows a refusal points at
    are recorded before it. Whatever is queued when the recorder catches up is written
    in one transaction, atomically: a batch's results and its snapshot advance are never
    committed apart. The first error stops the recorder: the batches not yet written
    stay pending (resent by the rerun, and answered "unchanged"), and :meth:`close` and
    :meth:`put` raise it.
    """

    MAX_BATCHES_PER_TRANSACTION = 8

    def __init__(self, engine: Engine, config: DistrictConfig, run_id: str, stats: LoadStats, backlog: int = 8):
        self.engine = engine
        self.config = config
        self.run_id = run_id
        self.stats = stats
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, backlog))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="learning-results", daemon=True)
        self._thread.start()

    def put(self, phase: Phase, batch: PendingBatch, results: list[dict]) -> None:
        """Queue one answered batch (waits while the backlog is full); raises the recorder's error."""
        self._raise_error()
        while True:
            try:
                self._queue.put((phase, batch, results), timeout=0.5)
                return
            except queue.Full:
                self._raise_error()

    def close(self) -> None:
        """Wait until everything queued is written; raise the recorder's error, if any."""
        self._queue.put(None)
        self._thread.join()
        self._raise_error()

    def abandon(self) -> None:
        """Write what is queued (the load is stopping on another error), without raising."""
        try:
            self._queue.put(None, timeout=60)
        except queue.Full:
            return
        self._thread.join(timeout=600)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        finished = False
        while not finished:
            items = [self._queue.get()]
            while len(items) < self.MAX_BATCHES_PER_TRANSACTION and items[-1] is not None:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if items[-1] is None:
                finished = True
                items.pop()
            if not items or self._error is not None:
                continue  # after an error, what is queued stays pending
            started = time.perf_counter()
            try:
                with self.engine.begin() as connection:
                    for phase, batch, results in items:
                        _record_batch(connection, self.config, self.run_id, phase, batch, results)
            except BaseException as error:  # raised on the sending thread by put() or close()
                self._error = error
            self.stats.seconds_recording += time.perf_counter() - started


def _refused_causes(
    connection: Connection, district_id: str, run_id: str, phase: Phase, refused: list[PendingRow]
) -> dict[str, str]:
    """key -> ``entity:key`` of a row it depends on that Learning refused in this run."""
    references = REFERENCES.get(phase.entity) if phase.method == "upsert" else None
    if not references:
        return {}
    changes = ChangeSet.__table__
    causes: dict[str, str] = {}
    for entity, referred_key in references:
        wanted = {referred_key(row.payload) for row in refused if row.key not in causes}
        if not wanted:
            continue
        refused_there = set(
            connection.execute(
                select(changes.c.key).where(
                    changes.c.district_id == district_id,
                    changes.c.run_id == run_id,
                    changes.c.entity == entity,
                    changes.c.status == STATUS_REFUSED,
                    changes.c.key.in_(wanted),
                )
            ).scalars()
        )
        for row in refused:
            value = referred_key(row.payload)
            if row.key not in causes and value in refused_there:
                causes[row.key] = f"{entity}:{value}"
    return causes


ENTITY_LABELS = {entity.name: entity.labels for entity in LEARNING_ENTITIES if entity.name != "organizations"}


def _record_blocks(engine: Engine, district_id: str, run_id: str) -> None:
    """On each refused row that others failed because of, say what it held back (transitively).

    A refused teacher holds back their classes and, through them, the classes' roster
    rows: ``blocks`` reads "2 classes, 20 roster rows".
    """
    rejected = RejectedRow.__table__
    with engine.begin() as connection:
        cascades = connection.execute(
            select(rejected.c.entity, rejected.c.source_id, rejected.c.caused_by).where(
                rejected.c.district_id == district_id,
                rejected.c.run_id == run_id,
                rejected.c.stage == "load",
                rejected.c.caused_by.is_not(None),
            )
        ).all()
        dependants: dict[str, list[str]] = defaultdict(list)
        for entity, key, cause in cascades:
            dependants[cause].append(f"{entity}:{key}")
        for cause in dependants:
            held_back: dict[str, int] = defaultdict(int)
            seen, stack = {cause}, list(dependants[cause])
            while stack:
                node = stack.pop()
                if node in seen:
                    continue
                seen.add(node)
                held_back[node.split(":", 1)[0]] += 1
                stack.extend(dependants.get(node, ()))
            text = ", ".join(
                f"{count} {ENTITY_LABELS[entity][count != 1]}"
                for entity, count in sorted(held_back.items(), key=lambda item: list(ENTITY_LABELS).index(item[0]))
            )
            entity, key = cause.split(":", 1)
            connection.execute(
                update(rejected)
                .where(
                    rejected.c.district_id == district_id,
                    rejected.c.run_id == run_id,
                    rejected.c.stage == "load",
                    rejected.c.entity == entity,
                    rejected.c.source_id == key,
                )
                .values(blocks=text)
            )


def _run_phase(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    hook: LearningHook,
    phase: Phase,
    password: str | None,
    batch_size: int,
    in_flight: int,
    stats: LoadStats,
    recorder: ResultRecorder,
) -> None:
    """Send the phase's pending rows, ``in_flight`` batches at once; hand each answer to the recorder, in order.

    The phase ends when Learning has answered all its batches (the next phase's rows may
    refer to them); the recorder may still be writing the last answers.
    """
    temporary = config.imported_passwords_temporary
    sso_types = sso_authentication_types(config)
    window: list[tuple[PendingBatch, Future]] = []
    sent_in_phase = 0
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=f"learning-{phase.entity}") as pool:
        batches = _pending_batches(engine, config.district_id, run_id, phase, batch_size)
        exhausted = False
        while window or not exhausted:
            while not exhausted and len(window) < in_flight:
                batch = next(batches, None)
                if batch is None:
                    exhausted = True
                    break
                rows = _request_rows(phase, batch, password, temporary, sso_types)
                window.append((batch, pool.submit(_send, hook, phase, rows)))
                stats.requests += 1
                stats.rows_sent += len(rows)
                sent_in_phase += len(rows)
            if not window:
                break
            batch, future = window.pop(0)
            results, seconds = future.result()  # an error here leaves the batch pending
            stats.seconds_waiting_for_learning += seconds
            recorder.put(phase, batch, results)
    stats.per_phase[f"{phase.entity}.{phase.method}"] = sent_in_phase


def _has_pending_user_creates(engine: Engine, district_id: str, run_id: str) -> bool:
    changes = ChangeSet.__table__
    with engine.connect() as connection:
        return (
            connection.execute(
                select(changes.c.id)
                .where(
                    changes.c.district_id == district_id,
                    changes.c.run_id == run_id,
                    changes.c.entity == "users",
                    changes.c.action == ACTION_CREATE,
                    changes.c.status == STATUS_PENDING,
                )
                .limit(1)
            ).first()
            is not None
        )


def load_counts(engine: Engine, district_id: str, run_id: str) -> dict[str, dict[str, int]]:
    """``{entity: {created, updated, unchanged, deactivated, removed, refused, pending}}`` of a run."""
    return _counts_and_changed(engine, district_id, run_id)[0]


def _counts_and_changed(engine: Engine, district_id: str, run_id: str) -> tuple[dict[str, dict[str, int]], int]:
    """:func:`load_counts`, and the run's change-set rows that are not "unchanged", from one read
    of the run's change set (at L on PostgreSQL each read of it is a scan of 0.25-0.3 s)."""
    changes = ChangeSet.__table__
    counts = {spec.name: dict.fromkeys(COUNT_NAMES, 0) for spec in ENTITIES}
    rows_changed = 0
    with engine.connect() as connection:
        for entity, action, status, result, rows in connection.execute(
            select(changes.c.entity, changes.c.action, changes.c.status, changes.c.learning_result, func.count())
            .where(changes.c.district_id == district_id, changes.c.run_id == run_id)
            .group_by(changes.c.entity, changes.c.action, changes.c.status, changes.c.learning_result)
        ):
            entity_counts = counts.setdefault(entity, dict.fromkeys(COUNT_NAMES, 0))
            rows_changed += rows if action != ACTION_UNCHANGED else 0
            if action == ACTION_UNCHANGED:
                name = "unchanged"
            elif status == STATUS_PENDING:
                name = "pending"
            elif status == STATUS_REFUSED:
                name = "refused"
            else:
                name = result if result in COUNT_NAMES else "unchanged"
            entity_counts[name] += rows
    # After an incremental read the keys unchanged since the base run have no change_set row.
    for entity, rows in carried_unchanged(engine, district_id, run_id).items():
        counts.setdefault(entity, dict.fromkeys(COUNT_NAMES, 0))["unchanged"] += rows
    return counts, rows_changed


def domain_settings(engine: Engine, config: DistrictConfig) -> dict[str, Any]:
    """The Manage Domain switches as the district YAML sets them, in Learning's settings shape.

    The source document puts "Ignore Parents from SIS", "Autogenerate usernames",
    "Imported passwords are temporary" and "Grade Push Config" in Learning's Manage Domain;
    here the YAML holds them, and the import writes them to Learning so Learning shows what
    is in force. Grade push is listed for the organizations Learning has accepted (it
    refuses to enable an organization it does not have) that the YAML enables.
    """
    snapshot = LearningSnapshot.__table__
    with engine.connect() as connection:
        organizations = (
            connection.execute(
                select(snapshot.c.key).where(
                    snapshot.c.district_id == config.district_id, snapshot.c.entity == "organizations"
                )
            )
            .scalars()
            .all()
        )
    return {
        "ignore_parents": config.ignore_parents,
        "autogenerate_usernames": config.autogenerate_usernames,
        "imported_passwords_temporary": config.imported_passwords_temporary,
        "grade_push_organizations": sorted(
            (organization for organization in organizations if config.grade_push.enabled_for(organization)),
            key=lambda value: (not value.isdigit(), len(value), value),
        ),
    }


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def write_domain_settings(engine: Engine, config: DistrictConfig, hook: LearningHook) -> str:
    """Make Learning's domain settings say what the YAML says (the YAML wins); "updated" or "unchanged".

    Read first and written only when they differ, so a run that changes nothing writes nothing.
    """
    wanted = domain_settings(engine, config)
    current = hook.get_domain_settings() or {}
    if all(current.get(name) == value for name, value in wanted.items()):
        return "unchanged"
    hook.put_domain_settings(wanted)
    organizations = wanted["grade_push_organizations"]
    log.info(
        "Learning's domain settings now say what the district file says: ignore parents %s, autogenerate "
        "usernames %s, imported passwords temporary %s, grade push for %d organization(s).",
        _yes_no(wanted["ignore_parents"]),
        _yes_no(wanted["autogenerate_usernames"]),
        _yes_no(wanted["imported_passwords_temporary"]),
        len(organizations),
    )
    return "updated"


def load_run(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    hook: LearningHook,
    *,
    max_batches_in_flight: int | None = None,
) -> dict[str, Any]:
    """Send the run's pending change set to Learning; return what happened.

    Call after ``diff.compute_changes`` and ``diff.check_safety``.

    Args: ``engine`` staging (the run's ``change_set``), ``config`` the district (batch size,
    default password reference), ``run_id`` the run whose change set to send, ``hook`` the
    district's LearningHook (``hooks.district.learning_hook``), ``max_batches_in_flight``
    concurrent batch requests (default: the district's ``learning.max_batches_in_flight``).

    Returns::

        {"counts": {entity: {"created", "updated", "unchanged", "deactivated",
                             "removed", "refused", "pending"}},
         "requests": <Learning requests made by this call>,
         "rows_sent": <rows in them>,
         "rows_changed": <change-set rows that are not "unchanged">,
         "seconds": <wall time>, "seconds_waiting_for_learning": <summed request time>,
         "seconds_recording_results": <time spent writing results and the snapshot>}

    Safe to call again (after a crash, or twice): only rows still pending are sent.
    """
    if not run_id:
        raise ValueError("load_run needs the run id whose change set to send")
    if max_batches_in_flight is None:
        max_batches_in_flight = config.learning.max_batches_in_flight
    if max_batches_in_flight < 1:
        raise ValueError("max_batches_in_flight must be at least 1")
    batch_size = min(config.learning.batch_size, MAX_BATCH_ROWS)
    create_all(engine)
    started = time.perf_counter()
    district_id = config.district_id
    password = None
    if config.default_password and _has_pending_user_creates(engine, district_id, run_id):
        password = resolve_secret(config.default_password)
    # Until this load completes, the next run's diff reads which rows it left unanswered.
    forget_stage(engine, district_id, run_id, LOAD)
    # The diff has just written the change set: fresh statistics keep the per-batch queries
    # on their indexes (PostgreSQL). After a delta diff (a few thousand rows) only the table
    # sizes and the run columns are refreshed: 0.9 s -> 0.3 s at L. The snapshot's the diff
    # has just taken care of (and this load does, below, once it has written to it).
    diff = stage_record(engine, district_id, run_id, "diff")
    with engine.begin() as connection:
        analyze(connection, [ChangeSet], columns=RUN_COLUMNS if diff is not None and diff.mode == DELTA else ())
    stats = LoadStats()
    recorder = ResultRecorder(engine, config, run_id, stats)
    try:
        for phase in PHASES:
            _run_phase(
                engine, config, run_id, hook, phase, password, batch_size, max_batches_in_flight, stats, recorder
            )
    except BaseException:
        recorder.abandon()  # the answers already received are still recorded
        raise
    recorder.close()
    # The snapshot was analysed before the rows just answered went in: after a district's
    # first load its statistics describe an empty table (staging.base.analyze_if_changed).
    with engine.begin() as connection:
        analyze_if_changed(connection, LearningSnapshot)
    _record_blocks(engine, district_id, run_id)
    domain_settings = write_domain_settings(engine, config, hook)
    counts, rows_changed = _counts_and_changed(engine, district_id, run_id)
    record_load(
        engine,
        config,
        run_id,
        {entity: values["refused"] + values["pending"] for entity, values in counts.items()},
        diff,
    )
    summary = {
        "counts": counts,
        "requests": stats.requests,
        "rows_sent": stats.rows_sent,
        "rows_changed": rows_changed,
        "seconds": round(time.perf_counter() - started, 3),
        "seconds_waiting_for_learning": round(stats.seconds_waiting_for_learning, 3),
        "seconds_recording_results": round(stats.seconds_recording, 3),
        "domain_settings": domain_settings,
    }
    log.debug(  # the task logs a summary line (report.step_summary)
        "load of %s run %s: %d requests, %d rows sent, %d rows changed; %s",
        district_id,
        run_id,
        stats.requests,
        stats.rows_sent,
        rows_changed,
        counts,
    )
    return summary
