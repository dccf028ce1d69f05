"""What an incremental run changed, for the stages after extract to process only that (issue 17).

``extract_changes``: per run and entity, the source ids an incremental extract read again
or left out of the rows it carried forward from its base run (``extract_reads.base_run_id``).
Every other staged row of the run is its base run's row, unchanged.

``stage_deltas``: per run and stage (validate, transform, diff), whether the stage processed
the whole district (``full``) or only what changed since ``base_run_id`` (``delta``), the
fingerprint of what decides the stage's result besides the staged rows (settings, rules,
mapping specs, the run's date), and how many rows it processed again. A later run's stage
works from this run's result only when the fingerprints are equal.

``delta_keys``: per run, stage and entity, the keys the stage processed again in a delta
run (validate: source ids; transform: Learning keys), which the next stage starts from.
See docs/extract.md, "After an incremental read".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.staging.base import Base
from sis_learning.staging.runs import utcnow


class ExtractChange(Base):
    __tablename__ = "extract_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    entity: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(200))
    __table_args__ = (Index("ix_extract_changes_run", "district_id", "run_id", "entity"),)


class StageDelta(Base):
    __tablename__ = "stage_deltas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    stage: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(20))  # full | delta
    base_run_id: Mapped[str | None] = mapped_column(String(250))
    fingerprint: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)  # rows processed again (delta) or in all (full)
    note: Mapped[str | None] = mapped_column(Text)
    # diff: per Learning entity, the keys unchanged since the base run that have no change_set
    # row in this run (counted as "unchanged" by change_counts and load_counts).
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (Index("uq_stage_deltas_run", "district_id", "run_id", "stage", unique=True),)


class DeltaKey(Base):
    __tablename__ = "delta_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    stage: Mapped[str] = mapped_column(String(20))
    entity: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(200))
    __table_args__ = (Index("ix_delta_keys_run", "district_id", "run_id", "stage", "entity"),)
