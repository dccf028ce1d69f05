"""The run-level guard: stop a run before load when too many of an entity's rows failed."""

from __future__ import annotations

from sqlalchemy import String, cast, func, select
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.exceptions import ValidationThresholdExceeded
from sis_learning.staging.quality import ExcludedRow, RejectedRow
from sis_learning.staging.source import (
    StgCourse,
    StgGuardian,
    StgSchool,
    StgSection,
    StgSectionEnrollment,
    StgSectionTeacher,
    StgStaff,
    StgStudent,
    StgTerm,
)
from sis_learning.validate.outcomes import ENTITIES, STAGE


def _evaluated_counts(engine: Engine, config: DistrictConfig, run_id: str) -> dict[str, int]:
    models = {
        "schools": StgSchool,
        "terms": StgTerm,
        "courses": StgCourse,
        "staff": StgStaff,
        "students": StgStudent,
        "sections": StgSection,
        "section_enrollments": StgSectionEnrollment,
        "section_teachers": StgSectionTeacher,
        "parent_links": StgGuardian,
    }
    counts: dict[str, int] = {}
    with engine.connect() as connection:
        for entity, model in models.items():
            table = model.__table__
            counts[entity] = (
                connection.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.district_id == config.district_id, table.c.run_id == run_id)
                )
                or 0
            )
        guardians = StgGuardian.__table__
        counts["guardians"] = (
            connection.scalar(
                select(func.count(func.distinct(guardians.c.guardian_id))).where(
                    guardians.c.district_id == config.district_id, guardians.c.run_id == run_id
                )
            )
            or 0
        )
    return counts


def check_thresholds(engine: Engine, config: DistrictConfig, run_id: str) -> None:
    """Stop the run when an entity's failing share exceeds its threshold.

    The share is the entity's own rejected rows (not the ones rejected only by the cascade)
    over its rows in scope (evaluated minus excluded by design). The message names the entity,
    the rules, the share and the threshold, and shows up to 5 examples with reasons.
    """
    evaluated = _evaluated_counts(engine, config, run_id)
    rejected_table, excluded_table = RejectedRow.__table__, ExcludedRow.__table__
    problems: list[str] = []
    with engine.connect() as connection:

        def per_entity(table, *conditions):
            rows = connection.execute(
                select(
                    table.c.entity,
                    func.count(func.distinct(func.coalesce(table.c.source_id, cast(table.c.id, String)))),
                )
                .where(
                    table.c.district_id == config.district_id,
                    table.c.run_id == run_id,
                    table.c.stage == STAGE,
                    *conditions,
                )
                .group_by(table.c.entity)
            )
            return dict(rows.all())

        # An entity's failing share counts its own broken rows. Rows rejected only because
        # something they depend on failed (the cascade, caused_by set) are that other row's
        # failure, already counted where it happened.
        rejected = per_entity(rejected_table, rejected_table.c.caused_by.is_(None))
        excluded = per_entity(excluded_table)
        for entity in ENTITIES:
            failing = int(rejected.get(entity, 0))
            in_scope = evaluated.get(entity, 0) - int(excluded.get(entity, 0))
            if failing == 0 or in_scope <= 0:
                continue
            share = failing / in_scope
            threshold = config.validation_thresholds.for_entity(entity)
            if share <= threshold:
                continue
            scope = (
                rejected_table.c.district_id == config.district_id,
                rejected_table.c.run_id == run_id,
                rejected_table.c.stage == STAGE,
                rejected_table.c.entity == entity,
                rejected_table.c.caused_by.is_(None),
            )
            rules = connection.execute(
                select(rejected_table.c.rule, func.count())
                .where(*scope)
                .group_by(rejected_table.c.rule)
                .order_by(func.count().desc(), rejected_table.c.rule)
            ).all()
            examples = connection.execute(
                select(rejected_table.c.source_id, rejected_table.c.rule, rejected_table.c.reason)
                .where(*scope)
                .order_by(rejected_table.c.caused_by.is_not(None), rejected_table.c.id)
                .limit(5)
            ).all()
            lines = [
                f"{entity}: {failing} of {in_scope} rows failed validation ({share:.1%}), more than the "
                f"threshold of {threshold:.1%}; rules: " + ", ".join(f"{rule} ({count})" for rule, count in rules)
            ]
            lines += [
                f"  - {entity} {source_id or '(no id)'} [{rule}]: {reason}" for source_id, rule, reason in examples
            ]
            problems.append("\n".join(lines))
    if problems:
        raise ValidationThresholdExceeded(
            f"District {config.district_id}, run {run_id}: the run stops before anything is loaded.\n"
            + "\n".join(problems)
        )
