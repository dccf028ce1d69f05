"""The grade-push ledger: what has been written to PowerTeacher Pro, so each change goes once.

Implements the source document's grade push rules ("Grade Push Frequency: Immediate";
"Any scores that are edited or changed in PowerSchool Learning will overwrite the
existing score in PowerTeacher"; "Grade Pull: No") as three staged tables an analyst
can query:

- ``grade_push_assignments``: one row per district and Learning gradable: the
  PowerTeacher Pro assignment made for it (``assignment_id``, ``assignment_section_id``),
  the section (``class_id`` = Sections.DCID), the teacher it was created as
  (``teacher_users_dcid``), the name sent (within 50 characters), the category chosen
  and why. ``status`` is ``creating`` (the intent, written and committed *before* the
  POST), ``created`` (ids known) or ``refused`` (PowerTeacher answered 409; ``message``
  says why). A row left in ``creating`` by a crash is resolved by looking the assignment
  up by name in the section before any second POST: an assignment is never made twice.
- ``grade_push_scores``: one row per district, gradable and student: the last score
  written (``score``) and its Learning ``version``; an older version never overwrites a
  newer one. ``status`` is ``pushed`` or ``refused`` (``message`` holds PowerTeacher's
  words and ``refused_version`` the version it refused; ``score``/``version`` still say
  what PowerTeacher last accepted).
- ``grade_push_cursor``: per district, the Learning change-feed cursor up to which every
  change has been handled (pushed, refused or skipped). The trigger polls from it; the
  push advances it after each page is recorded.

Nothing here is ever sent back to Learning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.staging.base import Base
from sis_learning.staging.runs import utcnow

# grade_push_assignments.status
ASSIGNMENT_CREATING = "creating"
ASSIGNMENT_CREATED = "created"
ASSIGNMENT_REFUSED = "refused"
ASSIGNMENT_DELETED = "deleted"  # the gradable was deleted in Learning and the assignment in PowerTeacher
ASSIGNMENT_DELETE_REFUSED = "delete_refused"  # deleted in Learning; PowerTeacher keeps it (it has grades: 412)

# grade_push_assignments.gradebook
GRADEBOOK_PRO = "ptp"  # PowerTeacher Pro (/ws/xte)
GRADEBOOK_LEGACY = "ptg"  # the legacy PowerTeacher Gradebook (/powerschool-ptg-api/v2)

# grade_push_scores.status
SCORE_PUSHED = "pushed"
SCORE_REFUSED = "refused"


class GradePushAssignment(Base):
    """Learning gradable -> PowerTeacher Pro assignment (and its assignment section)."""

    __tablename__ = "grade_push_assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    gradable_id: Mapped[str] = mapped_column(String(64))
    class_id: Mapped[str] = mapped_column(String(64))
    teacher_users_dcid: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default=ASSIGNMENT_CREATING)
    assignment_id: Mapped[str | None] = mapped_column(String(64))
    assignment_section_id: Mapped[str | None] = mapped_column(String(64))
    teacher_category_id: Mapped[str | None] = mapped_column(String(64))
    category_rule: Mapped[str | None] = mapped_column(String(40))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    # what was last written: the gradable's revision, its points and the due date sent
    gradebook: Mapped[str | None] = mapped_column(String(8))
    revision: Mapped[int | None] = mapped_column(Integer)
    total_points: Mapped[str | None] = mapped_column(String(32))
    duedate: Mapped[str | None] = mapped_column(String(10))
    adopted: Mapped[bool] = mapped_column(default=False)
    message: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (Index("uq_grade_push_assignments_gradable", "district_id", "gradable_id", unique=True),)


class GradePushScore(Base):
    """Per gradable and student: the last score written to PowerTeacher Pro and its version."""

    __tablename__ = "grade_push_scores"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    gradable_id: Mapped[str] = mapped_column(String(64))
    student_id: Mapped[str] = mapped_column(String(64))
    assignment_section_id: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)
    cursor: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=SCORE_PUSHED)
    refused_version: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(250))
    pushed_at: Mapped[datetime | None] = mapped_column()
    # When Learning recorded the change (its change feed's changed_at, UTC): pushed_at - changed_at
    # is the grade push latency the Districts page reports.
    changed_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        Index("uq_grade_push_scores_student", "district_id", "gradable_id", "student_id", unique=True),
        # The last 24 hours' pushes and refusals (the Districts page), without reading the whole ledger.
        Index("ix_grade_push_scores_updated", "updated_at"),
    )


class GradePushCursor(Base):
    """Per district: every change-feed entry up to ``cursor`` has been handled."""

    __tablename__ = "grade_push_cursor"
    district_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str | None] = mapped_column(String(250))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The lease: one push run of a district at a time (runs may overlap in Airflow).
    lease_owner: Mapped[str | None] = mapped_column(String(250))
    lease_until: Mapped[datetime | None] = mapped_column()


# --------------------------------------------------------------------------- helpers


def add_missing_columns(engine: Engine) -> None:
    """Add the columns newer code expects to ledger tables created by an older version (no data change)."""
    from sqlalchemy import inspect

    inspector = inspect(engine)
    for model in (GradePushAssignment, GradePushScore, GradePushCursor):
        table = model.__table__
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as connection:
                    connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")


def acquire_lease(engine: Engine, district_id: str, owner: str, seconds: float) -> bool:
    """Take (or renew) the district's push lease; False while another live run holds it."""
    from datetime import timedelta

    now = utcnow()
    table = GradePushCursor.__table__
    with engine.begin() as connection:
        statement = _insert(connection, GradePushCursor).values(district_id=district_id, cursor=0, updated_at=now)
        connection.execute(statement.on_conflict_do_nothing(index_elements=[table.c.district_id]))
        result = connection.execute(
            table.update()
            .where(
                table.c.district_id == district_id,
                (table.c.lease_owner.is_(None)) | (table.c.lease_owner == owner) | (table.c.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds))
        )
        return result.rowcount == 1


def renew_lease(connection: Connection, district_id: str, owner: str, seconds: float) -> bool:
    """Extend the lease ``owner`` holds; False when it is no longer its own (another run took it over).

    A lease past its ``lease_until`` that nobody took is still the owner's and is renewed:
    only a takeover (``acquire_lease`` by another run once it expired) ends it.
    """
    from datetime import timedelta

    table = GradePushCursor.__table__
    result = connection.execute(
        table.update()
        .where(table.c.district_id == district_id, table.c.lease_owner == owner)
        .values(lease_until=utcnow() + timedelta(seconds=seconds))
    )
    return result.rowcount == 1


def lease_holder(engine: Engine, district_id: str) -> str | None:
    with engine.connect() as connection:
        return connection.scalar(select(GradePushCursor.lease_owner).where(GradePushCursor.district_id == district_id))


def save_cursor_holding_lease(
    connection: Connection, district_id: str, cursor: int, run_id: str, seconds: float
) -> bool:
    """Advance the cursor only while ``run_id`` holds the lease (renewing it); False when it lost it.

    One transaction: a run whose lease was taken over never moves the cursor the new holder reads from.
    """
    if not renew_lease(connection, district_id, run_id, seconds):
        return False
    save_cursor(connection, district_id, cursor, run_id)
    return True


def release_lease(engine: Engine, district_id: str, owner: str) -> None:
    table = GradePushCursor.__table__
    with engine.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.district_id == district_id, table.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


def _insert(connection: Connection, table: Any):
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(getattr(table, "__table__", table))


def read_cursor(engine: Engine, district_id: str) -> int:
    """The change-feed cursor the next push (and the trigger) starts after; 0 at first."""
    with engine.connect() as connection:
        value = connection.scalar(select(GradePushCursor.cursor).where(GradePushCursor.district_id == district_id))
    return int(value or 0)


def save_cursor(connection: Connection, district_id: str, cursor: int, run_id: str | None) -> None:
    """Advance the district's cursor (never moves it back)."""
    statement = _insert(connection, GradePushCursor).values(
        district_id=district_id, cursor=int(cursor), run_id=run_id, updated_at=utcnow()
    )
    table = GradePushCursor.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.district_id],
        set_={
            "cursor": statement.excluded.cursor,
            "run_id": statement.excluded.run_id,
            "updated_at": statement.excluded.updated_at,
        },
        where=table.c.cursor < statement.excluded.cursor,
    )
    connection.execute(statement)


def assignments_for(connection: Connection, district_id: str, gradable_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Ledger rows of these gradables, by gradable id (as plain dicts)."""
    ids = sorted({str(value) for value in gradable_ids})
    table = GradePushAssignment.__table__
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        rows = connection.execute(
            select(table).where(table.c.district_id == district_id, table.c.gradable_id.in_(ids[start : start + 500]))
        ).mappings()
        for row in rows:
            found[row["gradable_id"]] = dict(row)
    return found


def claimed_assignment_ids(connection: Connection, district_id: str, class_id: str) -> set[str]:
    """PowerTeacher assignment ids the ledger already ties to a gradable in this section."""
    table = GradePushAssignment.__table__
    rows = connection.execute(
        select(table.c.assignment_id).where(
            table.c.district_id == district_id, table.c.class_id == class_id, table.c.assignment_id.is_not(None)
        )
    )
    return {str(value) for (value,) in rows}


def record_assignment_intent(connection: Connection, row: Mapping[str, Any]) -> None:
    """Write (or refresh) the ``creating`` row of a gradable before its POST is sent."""
    now = utcnow()
    values = {**row, "status": ASSIGNMENT_CREATING, "created_at": now, "updated_at": now}
    statement = _insert(connection, GradePushAssignment).values(**values)
    table = GradePushAssignment.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.district_id, table.c.gradable_id],
        set_={name: statement.excluded[name] for name in row if name not in ("district_id", "gradable_id")}
        | {"updated_at": statement.excluded.updated_at},
        # an assignment already created is never put back into "creating"
        where=table.c.status != ASSIGNMENT_CREATED,
    )
    connection.execute(statement)


def update_assignment(connection: Connection, district_id: str, gradable_id: str, **values: Any) -> None:
    table = GradePushAssignment.__table__
    connection.execute(
        table.update()
        .where(table.c.district_id == district_id, table.c.gradable_id == str(gradable_id))
        .values(**values, updated_at=utcnow())
    )


def scores_for(
    connection: Connection, district_id: str, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Ledger rows of these (gradable id, student id) pairs."""
    keys = set(keys)
    gradable_ids = sorted({gradable for gradable, _ in keys})
    table = GradePushScore.__table__
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for start in range(0, len(gradable_ids), 500):
        rows = connection.execute(
            select(
                table.c.gradable_id,
                table.c.student_id,
                table.c.score,
                table.c.version,
                table.c.status,
                table.c.refused_version,
            ).where(table.c.district_id == district_id, table.c.gradable_id.in_(gradable_ids[start : start + 500]))
        ).mappings()
        for row in rows:
            key = (row["gradable_id"], row["student_id"])
            if key in keys:
                found[key] = dict(row)
    return found


def record_pushed_scores(connection: Connection, rows: list[Mapping[str, Any]]) -> None:
    """Upsert scores PowerTeacher accepted; a row never goes back to an older version."""
    if not rows:
        return
    now = utcnow()
    statement = _insert(connection, GradePushScore)
    table = GradePushScore.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.district_id, table.c.gradable_id, table.c.student_id],
        set_={
            "assignment_section_id": statement.excluded.assignment_section_id,
            "score": statement.excluded.score,
            "version": statement.excluded.version,
            "cursor": statement.excluded.cursor,
            "status": statement.excluded.status,
            "refused_version": None,
            "message": None,
            "run_id": statement.excluded.run_id,
            "pushed_at": statement.excluded.pushed_at,
            "changed_at": statement.excluded.changed_at,
            "updated_at": statement.excluded.updated_at,
        },
        where=table.c.version < statement.excluded.version,
    )
    connection.execute(
        statement,
        [
            {
                "changed_at": None,
                **row,
                "status": SCORE_PUSHED,
                "refused_version": None,
                "message": None,
                "pushed_at": now,
                "updated_at": now,
            }
            for row in rows
        ],
    )


def record_refused_scores(connection: Connection, rows: list[Mapping[str, Any]]) -> None:
    """Upsert refusals: keep what was last pushed, note the refused version and the message."""
    if not rows:
        return
    now = utcnow()
    statement = _insert(connection, GradePushScore)
    table = GradePushScore.__table__
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.district_id, table.c.gradable_id, table.c.student_id],
        set_={
            "status": statement.excluded.status,
            "refused_version": statement.excluded.refused_version,
            "message": statement.excluded.message,
            "cursor": statement.excluded.cursor,
            "run_id": statement.excluded.run_id,
            "updated_at": statement.excluded.updated_at,
        },
        where=table.c.version < statement.excluded.refused_version,
    )
    connection.execute(
        statement,
        [
            {
                "district_id": row["district_id"],
                "gradable_id": row["gradable_id"],
                "student_id": row["student_id"],
                "assignment_section_id": row.get("assignment_section_id"),
                "score": None,
                "version": 0,
                "cursor": row.get("cursor"),
                "status": SCORE_REFUSED,
                "refused_version": row["version"],
                "message": row["message"],
                "run_id": row.get("run_id"),
                "pushed_at": None,
                "updated_at": now,
            }
            for row in rows
        ],
    )
