"""The load's staged tables: the last state Learning accepted, and each run's change set.

Implements the issue 7 rule "send only what changed": ``learning_snapshot`` holds, per
district, entity and key, the content hash and payload of the row Learning last accepted;
``diff.compute_changes`` compares a run's Learning-shaped rows with it and writes one
``change_set`` row per key (create, update, deactivate, remove or unchanged), and
``load.load_run`` sends the changes and records Learning's answer per row. The snapshot
advances only for rows Learning accepted, so a refused row is tried again next run.

Beyond the columns docs/architecture.md lists, two extra columns make the diff and
the safety guard pure SQL: ``organization_id`` (the school a row belongs to: the guard
counts per school) and, on the snapshot, ``active`` (false once a user has been
deactivated in Learning, so a vanished user is deactivated once, not every run). The
change set also keeps the ``content_hash`` and the ``payload`` that was (or will be)
sent, so an analyst sees exactly what went to Learning. No password is ever stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, bindparam, case, cast, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.staging.base import Base
from sis_learning.staging.runs import utcnow

# change_set.action
ACTION_CREATE = "create"
ACTION_UPDATE = "update"
ACTION_DEACTIVATE = "deactivate"
ACTION_REMOVE = "remove"
ACTION_UNCHANGED = "unchanged"
ACTIONS = (ACTION_CREATE, ACTION_UPDATE, ACTION_DEACTIVATE, ACTION_REMOVE, ACTION_UNCHANGED)

# change_set.status
STATUS_PENDING = "pending"  # decided by the diff, not yet answered by Learning
STATUS_ACCEPTED = "accepted"  # Learning applied it (or found it already applied)
STATUS_REFUSED = "refused"  # Learning answered "failed"; see reason and rejected_rows
STATUS_SKIPPED = "skipped"  # nothing to send (unchanged)
STATUSES = (STATUS_PENDING, STATUS_ACCEPTED, STATUS_REFUSED, STATUS_SKIPPED)

# learning_snapshot.content_hash of a user Learning has deactivated: never equal to a
# real hash, so the user's return is an update that enables them again.
DEACTIVATED_HASH = "deactivated"


class LearningSnapshot(Base):
    """The last state Learning accepted, per district, entity and key."""

    __tablename__ = "learning_snapshot"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    organization_id: Mapped[str | None] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    run_id: Mapped[str] = mapped_column(String(250))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # A user's login, out of the payload when the load advances the row (``held_logins`` reads
    # it every run; NULL for other entities, and for rows from before the column: read from
    # the payload then).
    login: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (Index("uq_learning_snapshot_key", "district_id", "entity", "key", unique=True),)


class ChangeSet(Base):
    """One row per key and run: what the diff decided and what Learning answered."""

    __tablename__ = "change_set"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    entity: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    organization_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=STATUS_PENDING)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(Text)
    learning_result: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index("ix_change_set_run_key", "district_id", "run_id", "entity", "key"),
        # The load pages through one entity's pending rows of one action in id order: with id
        # last in the index, each batch is an index range scan however large the run (rows
        # already answered are behind the page's id cursor). ``status`` is left out of every
        # index, and on PostgreSQL half of each page is kept free (fillfactor 50): the load's
        # update of a row's status and result is then a heap-only update (HOT) that touches
        # no index, where an indexed status cost three index insertions per row sent.
        Index("ix_change_set_run_action", "district_id", "run_id", "entity", "action", "id"),
        {
            "postgresql_with": {"fillfactor": 50},
            # Indexes older versions made, dropped when the staging database is upgraded.
            "info": {"retired_indexes": ("ix_change_set_run_pending",)},
        },
    )


# --- identity by type: snapshots and change sets from before it -------------------------------

ROLE_USER_TYPE = {"student": "S", "teacher": "T", "co-teacher": "T"}
USER_IDENTITY_MIGRATED = "user_identity_migrated"


class StagingMarker(Base):
    """A one-time step done for a district (``user_identity_migrated``: its snapshot and change sets
    are keyed by user type, so the diff no longer scans them for older keys)."""

    __tablename__ = "staging_markers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (Index("uq_staging_markers", "district_id", "name", unique=True),)


def migrate_user_identity(
    connection: Connection, district_id: str, roster_hash: Callable[[dict[str, Any]], str]
) -> dict[str, int]:
    """Rekey a district's snapshot and change-set rows written before users were identified by type.

    Learning identifies a user by (user_type, external_id): a student, a teacher and a
    parent may carry the same number. A user's key was ``"5"`` and becomes ``"S:5"`` (the
    type is in its payload); a roster row's was ``"<class>:5"`` and becomes
    ``"<class>:S:5"``, its payload gains ``user_type`` (from its role: student -> S,
    teacher and co-teacher -> T) and its content hash is recomputed with ``roster_hash``,
    so the first run after the upgrade sends nothing that did not change. Idempotent: rows
    already in the new shape are left alone, so it runs at the start of every diff and
    costs one indexed range read once done. Returns the rows rekeyed per table and entity.
    """
    counts: dict[str, int] = {}
    markers = StagingMarker.__table__
    done = connection.execute(
        select(markers.c.id).where(markers.c.district_id == district_id, markers.c.name == USER_IDENTITY_MIGRATED)
    ).first()
    if done is not None:
        # Scanning every snapshot and change-set row of the district for older keys costs seconds
        # at district scale on every run; once migrated, nothing writes them again.
        return counts
    for table in (LearningSnapshot.__table__, ChangeSet.__table__):
        old_users = connection.execute(
            select(table.c.id, table.c.key, table.c.payload).where(
                table.c.district_id == district_id, table.c.entity == "users", ~table.c.key.contains(":")
            )
        ).all()
        updates = []
        for row_id, key, payload in old_users:
            user_type = (json.loads(payload) if payload else {}).get("user_type")
            if user_type:
                updates.append({"row_id": row_id, "new_key": f"{user_type}:{key}"})
        if updates:
            connection.execute(
                update(table).where(table.c.id == bindparam("row_id")).values(key=bindparam("new_key")), updates
            )
        counts[f"{table.name}.users"] = len(updates)

        old_rosters = connection.execute(
            select(table.c.id, table.c.key, table.c.payload, table.c.content_hash).where(
                table.c.district_id == district_id, table.c.entity == "rosters", ~table.c.key.like("%:%:%")
            )
        ).all()
        updates = []
        for row_id, key, payload, old_hash in old_rosters:
            values = json.loads(payload) if payload else {}
            user_type = ROLE_USER_TYPE.get(values.get("role"))
            if user_type is None:
                continue
            class_id, _, user_id = key.partition(":")
            new_payload = {
                "class_id": values.get("class_id", class_id),
                "user_type": user_type,
                "user_id": values.get("user_id", user_id),
                "role": values.get("role"),
            }
            new_hash = old_hash if old_hash is None else roster_hash(new_payload)
            updates.append(
                {
                    "row_id": row_id,
                    "new_key": f"{class_id}:{user_type}:{user_id}",
                    "new_payload": json.dumps(new_payload, separators=(",", ":")),
                    "new_hash": new_hash,
                }
            )
        if updates:
            connection.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values(key=bindparam("new_key"), payload=bindparam("new_payload"), content_hash=bindparam("new_hash")),
                updates,
            )
        counts[f"{table.name}.rosters"] = len(updates)
    # Everything the district had is in the new shape now (rows that cannot be rekeyed stay as
    # they are whatever runs next), and only code from before the rekeying writes the old shape:
    # later diffs skip the scan. Also after a district's first diff (nothing to rekey); the
    # second diff scanned its first change set: 0.7 s at L.
    connection.execute(markers.insert().values(district_id=district_id, name=USER_IDENTITY_MIGRATED))
    return counts


# --- logins Learning holds ---------------------------------------------------------------------


def held_logins(connection: Connection, district_id: str) -> dict[str, str]:
    """Every login Learning accepted for a user of the district, by user key (``"S:5"``).

    Read from the snapshot, deactivated users included (their login stays theirs while
    they are away): transform keeps a generated login for its user and makes new ones
    avoid all of these. The login is taken out of the JSON payload by the database.
    """
    snapshot = LearningSnapshot.__table__
    # The login column the load fills; the payload's JSON is parsed only for a row without it
    # (written before the column existed). Each JSON expression parses the payload again: the
    # type is read only for a key without it (from before identity by type).
    if connection.dialect.name == "postgresql":
        payload = cast(snapshot.c.payload, postgresql.JSON)
        login = func.coalesce(snapshot.c.login, payload["login"].astext)
        user_type = case((func.strpos(snapshot.c.key, ":") == 0, payload["user_type"].astext), else_=None)
    else:
        login = func.coalesce(snapshot.c.login, func.json_extract(snapshot.c.payload, "$.login"))
        user_type = case(
            (func.instr(snapshot.c.key, ":") == 0, func.json_extract(snapshot.c.payload, "$.user_type")), else_=None
        )
    query = select(snapshot.c.key, login, user_type).where(
        snapshot.c.district_id == district_id, snapshot.c.entity == "users"
    )
    # Through the driver's cursor: half a million users' rows as plain tuples (SQLAlchemy's
    # result rows cost more than the query).
    compiled = query.compile(dialect=connection.dialect)
    parameters = [compiled.params[name] for name in compiled.positiontup] if compiled.positiontup else compiled.params
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), parameters)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    held = {}
    for key, value, kind in rows:
        if not value:
            continue
        # A key from before identity by type ("5") gets its type from the payload.
        held[key if ":" in key else f"{kind}:{key}"] = str(value)
    return held
