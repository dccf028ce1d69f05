"""Staged source tables: what extract read from PowerSchool, per district and run.

``raw_records`` keeps each record's JSON as received (after the single-object and empty
value quirks are normalised), so any run can be audited or re-transformed; the typed
``stg_*`` tables are the flattened columns validate and transform read. Identifiers are
DCIDs as strings (PowerSchool sends digit-only ids as numbers: extract coerces them).
See docs/architecture.md and docs/staged-tables.md.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.entities import SOURCE_ENTITIES
from sis_learning.staging.base import Base


class RunKeyed:
    """Columns every run-keyed staged table has."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))


class ExtractScoped:
    """The extract scope a typed row came from (a school id, or ``district``).

    A task extracting one school deletes exactly that scope's rows before writing, so a
    retried or re-mapped task never duplicates and never erases another school's rows.
    """

    scope: Mapped[str] = mapped_column(String(64), default="district", server_default="district")


class SourceChecked:
    """What extract found wrong with a source record's id, for validate to reject it by.

    ``source_problem`` is the rule (``missing_source_id``, ``non_integer_source_id``,
    ``duplicate_source_id``), ``source_problem_reason`` names the field and the value.
    Such a row is staged as it came (its id null or as sent) instead of stopping the
    extract: one bad record never costs the district the rest of the run.
    """

    source_problem: Mapped[str | None] = mapped_column(String(40))
    source_problem_reason: Mapped[str | None] = mapped_column(Text)
    # Problems with a field's value extract cleaned up (control characters removed, a
    # non-integer number staged empty): JSON [{"rule", "field", "value", "reason"}], for
    # validate to warn or reject by. Null for a clean row.
    value_problems: Mapped[str | None] = mapped_column(Text)


class RawRecord(RunKeyed, Base):
    __tablename__ = "raw_records"
    entity: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(64), default="district")
    source_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_raw_records_run", "district_id", "run_id", "entity", "scope"),)


class ExtractCount(RunKeyed, Base):
    __tablename__ = "extract_counts"
    entity: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(64), default="district")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    reported_count: Mapped[int | None] = mapped_column(Integer)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    mismatch: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_extract_counts_run", "district_id", "run_id", "entity"),)


class StgSchool(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_schools"
    school_id: Mapped[str | None] = mapped_column(String(64))
    school_number: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(400))
    low_grade: Mapped[int | None] = mapped_column(Integer)
    high_grade: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index("ix_stg_schools_run", "district_id", "run_id", "school_id"),)


class StgTerm(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_terms"
    term_id: Mapped[str | None] = mapped_column(String(64))
    local_id: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(400))
    abbreviation: Mapped[str | None] = mapped_column(String(100))
    start_year: Mapped[int | None] = mapped_column(Integer)
    start_date: Mapped[str | None] = mapped_column(String(10))
    end_date: Mapped[str | None] = mapped_column(String(10))
    portion: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index("ix_stg_terms_run", "district_id", "run_id", "term_id"),)


class StgCourse(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_courses"
    course_id: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    course_number: Mapped[str | None] = mapped_column(String(100))
    course_name: Mapped[str | None] = mapped_column(String(400))
    __table_args__ = (Index("ix_stg_courses_run", "district_id", "run_id", "course_id"),)


class StgSection(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_sections"
    section_id: Mapped[str | None] = mapped_column(String(64))
    local_id: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    course_id: Mapped[str | None] = mapped_column(String(64))
    term_id: Mapped[str | None] = mapped_column(String(64))
    section_number: Mapped[str | None] = mapped_column(String(100))
    expression: Mapped[str | None] = mapped_column(String(200))
    external_expression: Mapped[str | None] = mapped_column(String(200))
    staff_id: Mapped[str | None] = mapped_column(String(64))
    gradebook_type: Mapped[str | None] = mapped_column(String(40))
    __table_args__ = (Index("ix_stg_sections_run", "district_id", "run_id", "section_id"),)


class StgStaff(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_staff"
    staff_id: Mapped[str | None] = mapped_column(String(64))
    local_id: Mapped[str | None] = mapped_column(String(64))
    users_dcid: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(400))
    middle_name: Mapped[str | None] = mapped_column(String(400))
    last_name: Mapped[str | None] = mapped_column(String(400))
    teacher_username: Mapped[str | None] = mapped_column(String(400))
    admin_username: Mapped[str | None] = mapped_column(String(400))
    email: Mapped[str | None] = mapped_column(String(400))
    school_id: Mapped[str | None] = mapped_column(String(64))
    school_ids: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index("ix_stg_staff_run", "district_id", "run_id", "staff_id"),)


class StgStudent(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_students"
    student_id: Mapped[str | None] = mapped_column(String(64))
    local_id: Mapped[str | None] = mapped_column(String(64))
    student_number: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(400))
    middle_name: Mapped[str | None] = mapped_column(String(400))
    last_name: Mapped[str | None] = mapped_column(String(400))
    student_username: Mapped[str | None] = mapped_column(String(400))
    email: Mapped[str | None] = mapped_column(String(400))
    school_id: Mapped[str | None] = mapped_column(String(64))
    grade_level: Mapped[int | None] = mapped_column(Integer)
    enroll_status: Mapped[str | None] = mapped_column(String(8))
    enroll_status_code: Mapped[int | None] = mapped_column(Integer)
    entry_date: Mapped[str | None] = mapped_column(String(10))
    exit_date: Mapped[str | None] = mapped_column(String(10))
    __table_args__ = (Index("ix_stg_students_run", "district_id", "run_id", "student_id"),)


class StgSectionEnrollment(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_section_enrollments"
    enrollment_id: Mapped[str | None] = mapped_column(String(64))
    section_id: Mapped[str] = mapped_column(String(64))
    student_id: Mapped[str] = mapped_column(String(64))
    school_id: Mapped[str | None] = mapped_column(String(64))
    term_id: Mapped[str | None] = mapped_column(String(64))
    entry_date: Mapped[str | None] = mapped_column(String(10))
    exit_date: Mapped[str | None] = mapped_column(String(10))
    dropped: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (Index("ix_stg_section_enrollments_run", "district_id", "run_id", "section_id"),)


class StgSectionTeacher(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_section_teachers"
    section_id: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(100))
    start_date: Mapped[str | None] = mapped_column(String(10))
    end_date: Mapped[str | None] = mapped_column(String(10))
    priority_order: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index("ix_stg_section_teachers_run", "district_id", "run_id", "section_id"),)


class StgGuardian(RunKeyed, ExtractScoped, SourceChecked, Base):
    __tablename__ = "stg_guardians"
    guardian_id: Mapped[str | None] = mapped_column(String(64))
    student_id: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(String(400))
    last_name: Mapped[str | None] = mapped_column(String(400))
    portal_username: Mapped[str | None] = mapped_column(String(400))
    portal_enabled: Mapped[bool | None] = mapped_column(Boolean)
    email: Mapped[str | None] = mapped_column(String(400))
    relationship: Mapped[str | None] = mapped_column(String(100))
    __table_args__ = (Index("ix_stg_guardians_run", "district_id", "run_id", "guardian_id"),)


# entity name (as used in task ids, extract_counts and raw_records) -> typed table
STAGED_SOURCE_TABLES = {entity.name: globals()[entity.staged_model] for entity in SOURCE_ENTITIES}


class ExtractRead(Base):
    """How a run read one entity: a full read, or only what changed since a cursor.

    ``read_at`` is when the read started (UTC, the pipeline's clock); the next incremental
    read of the entity starts from the ``read_at`` of the district's last *successful* run
    (its load committed) minus the overlap window, so a failed or abandoned run's read is
    never a starting point and its changes are read again. ``base_run_id`` is the run whose
    staged rows an incremental read carried forward. Entity ``*`` records what the run was
    asked for (``full_refresh``). See docs/extract.md, "Incremental and full reads".
    """

    __tablename__ = "extract_reads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))
    entity: Mapped[str] = mapped_column(String(40))
    mode: Mapped[str] = mapped_column(String(20))  # full | incremental | requested_full
    read_at: Mapped[datetime] = mapped_column(DateTime)
    read_from: Mapped[str | None] = mapped_column(String(40))
    base_run_id: Mapped[str | None] = mapped_column(String(250))
    note: Mapped[str | None] = mapped_column(Text)
    # The selected schools, import start year and ignore_parents the read staged rows for:
    # a run with other settings reads in full.
    scope_key: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("uq_extract_reads_run", "district_id", "run_id", "entity", unique=True),)
