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
    # When retention removed the run's detail rows, and the change_set rows of what it sent
    # (staging/retention.py); null while they are kept.
    detail_pruned_at: Mapped[datetime | None] = mapped_column(DateTime)
    changes_pruned_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (Index("uq_sync_runs_run", "district_id", "run_id", "kind", unique=True),)


def start_run(engine: Engine, district_id: str, run_id: str, dag_id: str | None = None, kind: str = "import") -> None:
    """Create the run's row, or reset it to running when the same run is retried."""
    with session_scope(engine) as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == kind)
        )
        if run is None:
            session.add(
                SyncRun(district_id=district_id, run_id=run_id, dag_id=dag_id, kind=kind, counts={}, durations={})
            )
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


def finish_run(
    engine: Engine, district_id: str, run_id: str, status: str, error: str | None = None, kind: str = "import"
) -> None:
    """Close the run. A failed run keeps the stage it failed at, so a reader sees where it stopped."""
    with session_scope(engine) as session:
        run = session.scalar(
            select(SyncRun).where(SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == kind)
        )
        if run is None:
            run = SyncRun(district_id=district_id, run_id=run_id, kind=kind, counts={}, durations={})
            session.add(run)
        run.status, run.finished_at = status, utcnow()
        if status in ("success", "previewed"):
            run.stage, run.error = "finished", None
        elif error:
            run.error = error


def get_run(engine: Engine, district_id: str, run_id: str, kind: str = "import") -> SyncRun | None:
    with session_scope(engine) as session:
        return session.scalar(
            select(SyncRun).where(SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == kind)
        )


# ---- attempts: the run's history, one row per task attempt of a stage --------------------
#
# A run's outcome is its final state: a stage whose last attempt succeeded succeeded, even
# if an earlier attempt failed (that attempt stays here, in the history). An attempt still
# ``running`` when a later one of its stage starts, or when the district's next run starts,
# belonged to a process that died without reporting (killed, out of memory, lost worker).

ATTEMPT_RUNNING, ATTEMPT_SUCCEEDED, ATTEMPT_FAILED = "running", "succeeded", "failed"
ATTEMPT_KILLED = "killed"  # the process died; a later attempt of the stage followed
RUN_ABANDONED = "abandoned"
PREVIOUS_RUN_NOTE = "previous_run"  # the stage of a note saying this run found an abandoned one


class SyncRunAttempt(Base):
    __tablename__ = "sync_run_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    kind: Mapped[str] = mapped_column(String(20), default="import")
    stage: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=ATTEMPT_RUNNING)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (Index("ix_sync_run_attempts_run", "district_id", "run_id", "kind"),)


def begin_attempt(engine: Engine, district_id: str, run_id: str, stage: str, kind: str = "import") -> int:
    """Record that a stage's attempt starts; returns its id. Earlier attempts still running were killed."""
    with session_scope(engine) as session:
        earlier = list(
            session.scalars(
                select(SyncRunAttempt).where(
                    SyncRunAttempt.district_id == district_id,
                    SyncRunAttempt.run_id == run_id,
                    SyncRunAttempt.kind == kind,
                    SyncRunAttempt.stage == stage,
                )
            )
        )
        for attempt in earlier:
            if attempt.status == ATTEMPT_RUNNING:
                attempt.status, attempt.finished_at = ATTEMPT_KILLED, utcnow()
                attempt.error = "the task process stopped without reporting (killed or lost)"
        row = SyncRunAttempt(
            district_id=district_id,
            run_id=run_id,
            kind=kind,
            stage=stage,
            attempt=len(earlier) + 1,
            status=ATTEMPT_RUNNING,
        )
        session.add(row)
        session.flush()
        return row.id


def end_attempt(engine: Engine, attempt_id: int, status: str, error: str | None = None) -> None:
    with session_scope(engine) as session:
        row = session.get(SyncRunAttempt, attempt_id)
        if row is not None:
            row.status, row.error, row.finished_at = status, error, utcnow()


def run_attempts(engine: Engine, district_id: str, run_id: str, kind: str = "import") -> list[SyncRunAttempt]:
    """Every attempt of the run, oldest first."""
    with session_scope(engine) as session:
        return list(
            session.scalars(
                select(SyncRunAttempt)
                .where(
                    SyncRunAttempt.district_id == district_id,
                    SyncRunAttempt.run_id == run_id,
                    SyncRunAttempt.kind == kind,
                )
                .order_by(SyncRunAttempt.id)
            )
        )


def final_attempts(attempts: list[SyncRunAttempt]) -> dict[str, SyncRunAttempt]:
    """The last attempt of each stage (what decides the stage's outcome)."""
    last: dict[str, SyncRunAttempt] = {}
    for attempt in attempts:
        last[attempt.stage] = attempt
    return last


def abandon_unfinished_runs(
    engine: Engine, district_id: str, current_run_id: str, kind: str = "import"
) -> list[dict[str, Any]]:
    """Mark the district's other runs still ``running`` as abandoned, with the stage each died in.

    Called when a run starts: one run of a district at a time (``max_active_runs=1``), so
    another run still ``running`` died without reporting. Returns what was marked, for
    the new run's report (which also keeps it as an attempt note of its own).
    """
    found: list[dict[str, Any]] = []
    with session_scope(engine) as session:
        stale = list(
            session.scalars(
                select(SyncRun).where(
                    SyncRun.district_id == district_id,
                    SyncRun.kind == kind,
                    SyncRun.status.in_(("running", "waiting")),  # waiting: for a person's approval
                    SyncRun.run_id != current_run_id,
                )
            )
        )
        for run in stale:
            running = list(
                session.scalars(
                    select(SyncRunAttempt)
                    .where(
                        SyncRunAttempt.district_id == district_id,
                        SyncRunAttempt.run_id == run.run_id,
                        SyncRunAttempt.kind == kind,
                        SyncRunAttempt.status == ATTEMPT_RUNNING,
                    )
                    .order_by(SyncRunAttempt.id)
                )
            )
            stages = [attempt.stage for attempt in running] or [run.stage or "start_run"]
            for attempt in running:
                attempt.status, attempt.finished_at = ATTEMPT_KILLED, utcnow()
                attempt.error = "the task process stopped without reporting (killed or lost)"
            was_waiting = run.status == "waiting"
            run.status, run.finished_at, run.stage = RUN_ABANDONED, utcnow(), stages[0]
            run.error = (
                f"the run ended while waiting for a person's approval, without an answer (stopped in Airflow); "
                f"marked abandoned by run {current_run_id}"
                if was_waiting and not running
                else f"the run stopped without reporting while in {', '.join(stages)} (its task process was "
                f"killed or its worker lost); marked abandoned by run {current_run_id}"
            )
            found.append({"run_id": run.run_id, "stages": stages, "started_at": run.started_at})
        for item in found:
            session.add(
                SyncRunAttempt(
                    district_id=district_id,
                    run_id=current_run_id,
                    kind=kind,
                    stage=PREVIOUS_RUN_NOTE,
                    attempt=0,
                    status=RUN_ABANDONED,
                    finished_at=utcnow(),
                    error=f"previous run {item['run_id']} was abandoned in {', '.join(item['stages'])}",
                )
            )
    return found


class ConfigErrorNotice(Base):
    """One row per distinct configuration error a district's recipients were emailed about."""

    __tablename__ = "config_error_notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_file: Mapped[str] = mapped_column(String(500))
    error_digest: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (Index("uq_config_error_notices", "source_file", "error_digest", unique=True),)


def claim_config_error_notice(engine: Engine, source_file: str, error_digest: str) -> bool:
    """True the first time this error of this file is seen (send the email), False after."""
    from sqlalchemy.exc import IntegrityError

    try:
        with session_scope(engine) as session:
            if session.scalar(
                select(ConfigErrorNotice).where(
                    ConfigErrorNotice.source_file == source_file, ConfigErrorNotice.error_digest == error_digest
                )
            ):
                return False
            session.add(ConfigErrorNotice(source_file=source_file, error_digest=error_digest))
    except IntegrityError:  # another run claimed it at the same moment
        return False
    return True


def release_config_error_notice(engine: Engine, source_file: str, error_digest: str) -> None:
    """Forget a claim whose email could not be sent, so the next run tries again."""
    from sqlalchemy import delete

    with session_scope(engine) as session:
        session.execute(
            delete(ConfigErrorNotice).where(
                ConfigErrorNotice.source_file == source_file, ConfigErrorNotice.error_digest == error_digest
            )
        )
