"""Data quality tables: what validate (and later stages) refused or left out, and why.

The source document's import is row by row: "If the user fails and is the owner of a
class, roster and class creation will also fail." These tables keep that outcome for
every row, so a district can tell broken data (``rejected_rows``) from rows left out
by design (``excluded_rows``: inactive enrollment, inactive staff, a term before the
import start year, a section without a teacher, a parent without a Parent Portal
account, "ignore parents", the 25-class co-teacher cap). ``validation_results`` points
at the Great Expectations JSON results and Data Docs kept for each run.

Entities are the staged source entities (``students``, ``staff``, ``sections``,
``section_enrollments``, ``section_teachers``, ``guardians``, ...) plus
``parent_links`` for guardian-child pairs. ``caused_by`` is ``entity:source_id`` of the
failure that cascaded here (null for a row's own failure).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.staging.base import Base
from sis_learning.staging.runs import utcnow
from sis_learning.staging.source import RunKeyed


class RejectedRow(RunKeyed, Base):
    """A row that failed a rule: it is not loaded, and neither is what it blocks."""

    __tablename__ = "rejected_rows"
    stage: Mapped[str] = mapped_column(
        String(20), default="validate", server_default="validate"
    )  # validate | transform | load
    entity: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str | None] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    blocks: Mapped[str | None] = mapped_column(Text)
    caused_by: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=func.now())
    __table_args__ = (Index("ix_rejected_rows_run", "district_id", "run_id", "entity", "source_id"),)


class ExcludedRow(RunKeyed, Base):
    """A row left out by a rule of the source document (not an error)."""

    __tablename__ = "excluded_rows"
    stage: Mapped[str] = mapped_column(String(20), default="validate", server_default="validate")
    entity: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str | None] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=func.now())
    __table_args__ = (Index("ix_excluded_rows_run", "district_id", "run_id", "entity", "source_id"),)


# A warning quotes at most this many characters of the value it is about.
WARNING_VALUE_MAX_LENGTH = 200


class ValidationWarning(RunKeyed, Base):
    """A field the row is imported without (or with a cleaned value): the row itself passes.

    The source document fails a user only for a missing username; anything else wrong with
    a field (an email that is not an address, a missing grade level) is a warning: the row
    is imported without that value (``action`` says what was done), and warnings never
    count toward the validation thresholds.
    """

    __tablename__ = "validation_warnings"
    stage: Mapped[str] = mapped_column(String(20), default="validate", server_default="validate")
    entity: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str | None] = mapped_column(String(200))
    rule: Mapped[str] = mapped_column(String(80))
    field: Mapped[str] = mapped_column(String(80))
    value: Mapped[str | None] = mapped_column(Text)  # at most WARNING_VALUE_MAX_LENGTH characters of it
    reason: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(40))  # cleared | stripped
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=func.now())
    __table_args__ = (Index("ix_validation_warnings_run", "district_id", "run_id", "entity", "source_id"),)


class ValidationResult(RunKeyed, Base):
    """One Great Expectations suite run of one entity in one run, and where its results are."""

    __tablename__ = "validation_results"
    entity: Mapped[str] = mapped_column(String(40))
    suite: Mapped[str] = mapped_column(String(120))
    success: Mapped[bool] = mapped_column(Boolean)
    evaluated: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    results_path: Mapped[str | None] = mapped_column(Text)
    data_docs_path: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=func.now())
    __table_args__ = (Index("ix_validation_results_run", "district_id", "run_id", "entity"),)
