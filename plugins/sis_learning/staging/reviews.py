"""Mass-change reviews: a run the safety guard stopped, waiting for a person's decision.

When the safety guard (``diff.find_mass_changes``) objects to a run's change set and the
run was not triggered with ``approve_mass_changes``, the run waits for a person in the
Airflow UI (the standard provider's human-in-the-loop approval). This table keeps what
the person is shown and what they decided, per district and run:

- ``fingerprint``: a SHA-256 over the run's change set (entity, key, action, content
  hash of every row that would be sent). Approving loads exactly that change set: the
  answer and the load check the fingerprint again, and when it differs (the change set
  was recomputed) nothing is loaded and the run asks again with the new figures.
- ``findings``: the guard's findings (per school and entity, with examples), as JSON.
- ``status``: ``waiting`` (the run waits), ``approved``, ``rejected``, ``timed_out``
  (nobody answered within the district's ``safety.approval_timeout_hours``),
  ``superseded`` (the change set changed before the answer; a new review follows) or
  ``abandoned`` (the run ended without an answer, for example marked failed in the UI;
  closed when the district's next run starts).
- ``decided_by`` / ``decided_at``: who answered in the UI (the Airflow user's name), or
  ``approve_mass_changes=true (triggered by ...)`` for a run approved by its parameter; when.
- ``task_id``: the Airflow task where the person is asked (its Required Action page).

The decisions themselves (when to ask, what an answer does, the check before the load)
are in ``sis_learning.approval``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.staging.base import Base, session_scope
from sis_learning.staging.runs import utcnow

REVIEW_WAITING = "waiting"
REVIEW_APPROVED = "approved"
REVIEW_REJECTED = "rejected"
REVIEW_TIMED_OUT = "timed_out"
REVIEW_SUPERSEDED = "superseded"
REVIEW_ABANDONED = "abandoned"
REVIEW_STATUSES = (
    REVIEW_WAITING,
    REVIEW_APPROVED,
    REVIEW_REJECTED,
    REVIEW_TIMED_OUT,
    REVIEW_SUPERSEDED,
    REVIEW_ABANDONED,
)


class MassChangeReview(Base):
    """One request for a person's approval of a stopped run's change set."""

    __tablename__ = "mass_change_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(20), default=REVIEW_WAITING)
    fingerprint: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer, default=0)  # rows the change set would send
    findings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decided_by: Mapped[str | None] = mapped_column(String(250))
    # The Airflow task that asks (load.approve_mass_changes, or a later ask of the same run).
    task_id: Mapped[str | None] = mapped_column(String(250))
    __table_args__ = (Index("ix_mass_change_reviews_run", "district_id", "run_id", "status"),)


# ---- what was shown, and whether it is still what would be loaded ----------------------------


def change_set_fingerprint(connection: Connection, district_id: str, run_id: str) -> tuple[str, int]:
    """(SHA-256, rows) of what the run's load would send.

    Covers every change-set row of the run that is not ``unchanged`` (entity, key, action,
    content hash) in key order: a recomputed diff (the diff task cleared and run again) gives
    another fingerprint. Not the rows' status, nor the snapshot, which the load itself
    advances: a load retried after a crash still matches what was approved. (A district's
    runs go one at a time, ``max_active_runs=1``, so no other load moves the snapshot.)
    """
    from sis_learning.staging.changes import ChangeSet

    changes = ChangeSet.__table__
    digest = hashlib.sha256()
    rows = 0
    # Streamed (yield_per on the statement: on the connection it would stream the caller's later INSERTs too).
    result = connection.execute(
        select(changes.c.entity, changes.c.key, changes.c.action, changes.c.content_hash)
        .where(changes.c.district_id == district_id, changes.c.run_id == run_id, changes.c.action != "unchanged")
        .order_by(changes.c.entity, changes.c.key, changes.c.action)
        .execution_options(yield_per=20_000)
    )
    for entity, key, action, content_hash in result:
        rows += 1
        digest.update(f"{entity}\x1f{key}\x1f{action}\x1f{content_hash or ''}\x1e".encode())
    return digest.hexdigest(), rows


def open_review(
    engine: Engine,
    district_id: str,
    run_id: str,
    findings: list[dict[str, Any]],
    message: str,
    approved_by: str | None = None,
) -> MassChangeReview:
    """The run's waiting review for its current change set: the same one when nothing changed since it
    was opened, else a new one (earlier waiting reviews of the run are marked superseded).

    ``approved_by``: the change set is approved as it is opened (the ``approve_mass_changes``
    parameter): the review is recorded ``approved`` by that name, and nothing waits.
    """
    with session_scope(engine) as session:
        fingerprint, rows = change_set_fingerprint(session.connection(), district_id, run_id)
        waiting = list(
            session.scalars(
                select(MassChangeReview)
                .where(
                    MassChangeReview.district_id == district_id,
                    MassChangeReview.run_id == run_id,
                    MassChangeReview.status == REVIEW_WAITING,
                )
                .order_by(MassChangeReview.id)
            )
        )
        for review in waiting:
            if review.fingerprint == fingerprint and approved_by is None:
                return review
            review.status, review.decided_at = REVIEW_SUPERSEDED, utcnow()
        review = MassChangeReview(
            district_id=district_id,
            run_id=run_id,
            status=REVIEW_WAITING if approved_by is None else REVIEW_APPROVED,
            fingerprint=fingerprint,
            rows=rows,
            findings=findings,
            message=message,
            decided_by=approved_by[:250] if approved_by else None,
            decided_at=utcnow() if approved_by else None,
        )
        session.add(review)
        session.flush()
        return review


def latest_review(engine: Engine, district_id: str, run_id: str) -> MassChangeReview | None:
    with session_scope(engine) as session:
        return session.scalar(
            select(MassChangeReview)
            .where(
                MassChangeReview.district_id == district_id,
                MassChangeReview.run_id == run_id,
            )
            .order_by(MassChangeReview.id.desc())
            .limit(1)
        )


def decide_review(
    engine: Engine, review_id: int, status: str, decided_by: str | None, note: str | None = None
) -> MassChangeReview | None:
    """Record the answer (or the end) of a review; ``note`` is added to its message."""
    if status not in REVIEW_STATUSES:
        raise ValueError(f"unknown review status {status!r}")
    with session_scope(engine) as session:
        review = session.get(MassChangeReview, review_id)
        if review is not None:
            review.status, review.decided_at = status, utcnow()
            review.decided_by = decided_by[:250] if decided_by else None
            if note:
                review.message = f"{review.message or ''}\n{note}".strip()
        return review


def close_waiting_reviews(
    engine: Engine,
    district_id: str,
    status: str,
    note: str,
    run_id: str | None = None,
    except_run_id: str | None = None,
) -> list[str]:
    """Close the district's waiting reviews (of one run, or of every run but one) with ``status``;
    returns the run ids they belonged to."""
    with session_scope(engine) as session:
        query = select(MassChangeReview).where(
            MassChangeReview.district_id == district_id, MassChangeReview.status == REVIEW_WAITING
        )
        if run_id is not None:
            query = query.where(MassChangeReview.run_id == run_id)
        if except_run_id is not None:
            query = query.where(MassChangeReview.run_id != except_run_id)
        closed = []
        for review in session.scalars(query):
            review.status, review.decided_at = status, utcnow()
            review.message = f"{review.message or ''}\n{note}".strip()
            closed.append(review.run_id)
        return closed
