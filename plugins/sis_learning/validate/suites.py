"""The column-level rules, run as Great Expectations 1.x suites (one per entity).

Ephemeral context, pandas data source, one checkpoint per entity on its in-scope rows;
the failing row indexes (``result_format: COMPLETE``) become rejected rows. The JSON
results and the Data Docs are kept under the run's ``results_dir``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sis_learning.mapping import LOGIN_MAX_LENGTH

# Great Expectations logs at INFO what only its own developers read: ~200 "Skipping registering
# function ..." lines at import (its public-API docs decorator) and "Loading 'datasources'".
# Its warnings and errors still reach the task log.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

# Learning's limits (docs/validation-and-mapping.md "Lengths Learning accepts").
NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254
CLASS_NAME_MAX_LENGTH = 255

# One @, something before it, a dot in the domain, no spaces: what Learning accepts.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

# ---- the expectation suites -----------------------------------------------------------

@dataclass(frozen=True)
class ColumnRule:
    """One column-level rule, run as a Great Expectations expectation.

    ``reason`` is what a district admin reads; ``{value}`` is replaced by the row's value.
    """

    rule: str
    column: str
    check: str  # not_null | unique | max_length | email
    reason: str
    limit: int | None = None
    # Set for a field the source document does not fail a user for: the row passes and is
    # imported without the value (a validation warning; never counted toward thresholds).
    warn: bool = False

    def expectation(self) -> Any:
        import great_expectations.expectations as gxe

        meta = {"rule": self.rule, "reason": self.reason}
        # Data Docs show the notes beside each expectation: the rule name and the admin's reason.
        common = {"column": self.column, "meta": meta,
                  "notes": f"rule {self.rule}: {self.reason.replace('{value}', '...')}"}
        if self.check == "not_null":
            return gxe.ExpectColumnValuesToNotBeNull(**common)
        if self.check == "unique":
            return gxe.ExpectColumnValuesToBeUnique(**common)
        if self.check == "max_length":
            return gxe.ExpectColumnValueLengthsToBeBetween(max_value=self.limit, **common)
        if self.check == "email":
            return gxe.ExpectColumnValuesToMatchRegex(regex=EMAIL_PATTERN, **common)
        raise ValueError(f"unknown check {self.check!r}")


def _id_rules(column: str, what: str) -> list[ColumnRule]:
    return [
        ColumnRule("id_present", column, "not_null", f"the {what} has no id ({column}) in PowerSchool"),
        ColumnRule("id_unique", column, "unique", f"the {what} id {{value}} appears more than once; Learning needs one row per id"),
    ]


def _person_rules(login_column: str, login_name: str) -> list[ColumnRule]:
    return [
        ColumnRule("first_name_present", "first_name", "not_null", "the first name is missing"),
        ColumnRule("last_name_present", "last_name", "not_null", "the last name is missing"),
        ColumnRule("first_name_length", "first_name", "max_length",
                   f"the first name '{{value}}' is longer than the {NAME_MAX_LENGTH} characters Learning accepts",
                   NAME_MAX_LENGTH),
        ColumnRule("last_name_length", "last_name", "max_length",
                   f"the last name '{{value}}' is longer than the {NAME_MAX_LENGTH} characters Learning accepts",
                   NAME_MAX_LENGTH),
        ColumnRule("email_format", "email", "email",
                   "the email address '{value}' is not a valid email address: imported without an email "
                   "(and without a Google / Office 365 SSO email)", warn=True),
        ColumnRule("email_length", "email", "max_length",
                   f"the email address '{{value}}' is longer than the {EMAIL_MAX_LENGTH} characters Learning accepts: "
                   "imported without an email", EMAIL_MAX_LENGTH, warn=True),
        ColumnRule("login_length", login_column, "max_length",
                   f"the {login_name} '{{value}}' is longer than the {LOGIN_MAX_LENGTH} characters Learning accepts",
                   LOGIN_MAX_LENGTH),
    ]


SUITES: dict[str, list[ColumnRule]] = {
    "schools": [*_id_rules("school_id", "school"),
                ColumnRule("name_present", "name", "not_null", "the school has no name")],
    "terms": [ColumnRule("id_present", "term_id", "not_null", "the term has no id (Terms.DCID)"),
              ColumnRule("start_year_present", "start_year", "not_null", "the term has no start year")],
    "courses": [ColumnRule("id_present", "course_id", "not_null", "the course has no id (Courses.DCID)"),
                ColumnRule("course_name_present", "course_name", "not_null", "the course has no name"),
                ColumnRule("course_number_present", "course_number", "not_null", "the course has no course number")],
    "staff": [*_id_rules("staff_id", "teacher"), *_person_rules("teacher_username", "teacher username")],
    "students": [*_id_rules("student_id", "student"), *_person_rules("student_username", "student web id"),
                 ColumnRule("grade_level_present", "grade_level", "not_null",
                            "the student has no grade level: imported without a user level", warn=True)],
    "guardians": [ColumnRule("id_present", "guardian_id", "not_null", "the parent has no id (Guardian.GuardianID)"),
                  *_person_rules("portal_username", "Parent Portal username")],
    "sections": [*_id_rules("section_id", "section"),
                 ColumnRule("section_number_present", "section_number", "not_null", "the section has no section number")],
    "section_enrollments": [
        ColumnRule("id_present", "enrollment_id", "not_null", "the section enrollment has no id"),
        ColumnRule("section_reference", "section_id", "not_null", "the section enrollment names no section"),
        ColumnRule("student_reference", "student_id", "not_null", "the section enrollment names no student"),
    ],
    "section_teachers": [
        ColumnRule("section_reference", "section_id", "not_null", "the section teacher row names no section"),
        ColumnRule("staff_reference", "staff_id", "not_null", "the section teacher row names no teacher"),
    ],
    "parent_links": [
        ColumnRule("child_reference", "student_id", "not_null", "the parent-child link names no student"),
    ],
}


def run_suites(frames: dict[str, pd.DataFrame], results_dir: Path, district_id: str) -> tuple[dict[str, Any], list[dict]]:
    """Run each entity's suite on its in-scope rows; keep JSON results and Data Docs.

    Returns ``{entity: [(ColumnRule, failing index labels)]}`` and the validation_results rows.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no network calls from a task
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    docs_dir = results_dir / "data_docs"
    # In memory, with the run's own Data Docs site only (the default one is a stray temp dir).
    project_config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={"run": {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }},
    )
    context = gx.get_context(mode="ephemeral", project_config=project_config)
    with _without_batch_fingerprint():
        failures, result_rows = _run_checkpoints(context, frames, results_dir, district_id)
    context.build_data_docs(site_names=["run"])
    for row in result_rows:
        pages = sorted((docs_dir / "validations" / row["suite"]).rglob("*.html"))
        row["data_docs_path"] = str(pages[-1] if pages else docs_dir / "index.html")
    return failures, result_rows


@contextmanager
def _without_batch_fingerprint() -> Iterator[None]:
    """Great Expectations without the MD5 fingerprint of every pandas batch it loads.

    GE 1.x hashes every value of a batch under 1 GB (``pandas_data_fingerprint``, a batch
    marker in the result's metadata) before validating it: at district scale about 1.6 s
    of CPU, more than a third of all the expectations. Nothing here reads it; the
    expectations, their results and the Data Docs are the same without it.
    """
    from great_expectations.execution_engine import pandas_execution_engine

    threshold = getattr(pandas_execution_engine, "HASH_THRESHOLD", None)
    pandas_execution_engine.HASH_THRESHOLD = 0  # "memory used < 0": never fingerprinted
    try:
        yield
    finally:
        pandas_execution_engine.HASH_THRESHOLD = threshold


def _run_checkpoints(context: Any, frames: dict[str, pd.DataFrame], results_dir: Path,
                     district_id: str) -> tuple[dict[str, Any], list[dict]]:
    """One checkpoint per entity (its suite on its in-scope rows); the JSON result of each kept."""
    import great_expectations as gx

    data_source = context.data_sources.add_pandas(f"staged_{district_id}")
    failures: dict[str, list[tuple[ColumnRule, list]]] = {}
    result_rows: list[dict] = []
    for entity, rules in SUITES.items():
        frame = frames[entity]
        suite_name = f"{entity}_suite"
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
        for rule in rules:
            suite.add_expectation(rule.expectation())
        batch = data_source.add_dataframe_asset(entity).add_batch_definition_whole_dataframe("run")
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=entity, data=batch, suite=suite))
        # Data Docs are built once for all suites after the loop (rebuilding per suite is slow).
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{entity}_checkpoint", validation_definitions=[definition],
            result_format={"result_format": "COMPLETE"},
        ))
        columns = sorted({rule.column for rule in rules})
        outcome = checkpoint.run(batch_parameters={"dataframe": frame[columns]})
        validation = next(iter(outcome.run_results.values()))
        entity_failures = []
        failing_labels: set = set()
        for result in validation.results:
            meta = result.expectation_config.meta or {}
            rule = next(r for r in rules if r.rule == meta.get("rule") and r.column == result.expectation_config.kwargs["column"])
            labels = list(result.result.get("unexpected_index_list") or [])
            if not result.success and labels:
                entity_failures.append((rule, labels))
                failing_labels.update(labels)
        failures[entity] = entity_failures
        results_path = results_dir / f"{entity}.json"
        results_path.write_text(json.dumps(validation.to_json_dict(), ensure_ascii=False), encoding="utf-8")
        result_rows.append({
            "entity": entity, "suite": suite_name, "success": bool(validation.success),
            "evaluated": len(frame), "failed": len(failing_labels), "results_path": str(results_path),
        })
    return failures, result_rows

