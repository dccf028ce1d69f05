"""Run summaries: one row per district DAG run, with status, counts and durations.

``counts`` is ``{entity: {stage: count}}`` (for example ``{"students": {"extracted":
5012, "rejected": 3, "excluded": 40, "created": 12}}``); ``durations`` is
``{stage: seconds}``. The report task and the failure email read it; analysts query it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.staging.base import Base, session_scope


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    dag_id: Mapped[str | None] = mapped_column(String(250))
    kind: Mapped[str] = mapped_column(String(20), default="import")
    status: Mapped[str] = mapped_column(String(20), default="running")
    stage: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    durations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    validation_docs: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("uq_sync_runs_run", "district_id", "run_id", "kind", unique=True),)


def start_run(engine: Engine, district_id: str, run_id: str, dag_id: str | None = None, kind: str = "import") -> None:
    """Create the run's row, or reset it to running when the same run is retried."""
    with session_scope(engine) as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == kind)
        )
        if run is None:
            session.add(SyncRun(district_id=district_id, run_id=run_id, dag_id=dag_id, kind=kind, counts={}, durations={}))
        else:
            run.status, run.error, run.finished_at = "running", None, None


def record_stage(
    engine: Engine,
    district_id: str,
    run_id: str,
    stage: str,
    counts: dict[str, dict[str, int]] | None = None,
    seconds: float | None = None,
    kind: str = "import",
    **fields: Any,
) -> None:
    """Merge a stage's counts and duration into the run's row."""
    with session_scope(engine) as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == kind)
        )
        if run is None:
            run = SyncRun(district_id=district_id, run_id=run_id, kind=kind, counts={}, durations={})
            session.add(run)
        merged = {entity: dict(values) for entity, values in (run.counts or {}).items()}
        for entity, values in (counts or {}).items():
            merged.setdefault(entity, {}).update(values)
        run.counts = merged
        if seconds is not None:
            run.durations = {**(run.durations or {}), stage: round(seconds, 3)}
        run.stage = stage
        for name, value in fields.items():
            setattr(run, name, value)


def finish_run(engine: Engine, district_id: str, run_id: str, status: str, error: str | None = None, kind: str = "import") -> None:
    """Close the run. A failed run keeps the stage it failed at, so a reader sees where it stopped."""
    with session_scope(engine) as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == kind)
        )
        if run is None:
            run = SyncRun(district_id=district_id, run_id=run_id, kind=kind, counts={}, durations={})
            session.add(run)
        run.status, run.finished_at = status, utcnow()
        if status == "success":
            run.stage, run.error = "finished", None
        elif error:
            run.error = error


def get_run(engine: Engine, district_id: str, run_id: str, kind: str = "import") -> SyncRun | None:
    with session_scope(engine) as session:
        return session.scalar(
            select(SyncRun).where(SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == kind)
        )
