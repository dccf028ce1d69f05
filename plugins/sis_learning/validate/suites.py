"""The column-level rules, run as Great Expectations 1.x suites (one per entity).

Ephemeral context, pandas data source, one checkpoint per entity on its in-scope rows;
the failing row indexes (``result_format: COMPLETE``) become rejected rows. The JSON
results and the Data Docs are kept under the run's ``results_dir``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sis_learning.config import COLUMN_RULES_PATH
from sis_learning.exceptions import ColumnRulesError

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
        common = {
            "column": self.column,
            "meta": meta,
            "notes": f"rule {self.rule}: {self.reason.replace('{value}', '...')}",
        }
        if self.check == "not_null":
            return gxe.ExpectColumnValuesToNotBeNull(**common)
        if self.check == "unique":
            return gxe.ExpectColumnValuesToBeUnique(**common)
        if self.check == "max_length":
            return gxe.ExpectColumnValueLengthsToBeBetween(max_value=self.limit, **common)
        if self.check == "email":
            return gxe.ExpectColumnValuesToMatchRegex(regex=EMAIL_PATTERN, **common)
        raise ValueError(f"unknown check {self.check!r}")


CHECKS = ("not_null", "unique", "max_length", "email")
RULE_COLUMNS = ("entity", "rule", "column", "check", "limit", "warn", "reason")


def _rules_error(path: Path, line: int, message: str) -> ColumnRulesError:
    return ColumnRulesError(f"{path}, line {line}: {message}")


def load_column_rules(path: Path | str = COLUMN_RULES_PATH) -> dict[str, list[ColumnRule]]:
    """Read and check the column rules file; any problem raises ColumnRulesError naming file and line.

    One line per entity and rule (include/rules/README.md): the entity (a validated entity),
    the rule's name, the staged column it checks, the check (``not_null``, ``unique``,
    ``max_length`` with its ``limit``, ``email``), ``warn`` (``yes``: the row passes without
    the value) and the reason a district admin reads (``{value}``: the row's value,
    ``{limit}``: the limit). Returns ``{entity: [ColumnRule, ...]}`` in file order.
    """
    from sis_learning.entities import VALIDATED_ENTITIES
    from sis_learning.staging.source import STAGED_SOURCE_TABLES

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as problem:
        raise ColumnRulesError(f"{path}: cannot read the column rules: {problem}") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in (reader.fieldnames or [])]
    if header != list(RULE_COLUMNS):
        raise _rules_error(path, 1, f"header must be {','.join(RULE_COLUMNS)} (found {','.join(header)})")
    suites: dict[str, list[ColumnRule]] = {}
    seen: dict[tuple[str, str], int] = {}
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise _rules_error(
                path, line, f"has more than {len(RULE_COLUMNS)} columns (quote a reason containing commas)"
            )
        values = {key: (row.get(key) or "").strip() for key in RULE_COLUMNS}
        entity, rule, column, check = values["entity"], values["rule"], values["column"], values["check"]
        if entity not in VALIDATED_ENTITIES:
            raise _rules_error(path, line, f"unknown entity {entity!r} (known: {', '.join(VALIDATED_ENTITIES)})")
        if not rule or not column or not values["reason"]:
            raise _rules_error(path, line, "'rule', 'column' and 'reason' must not be empty")
        if (entity, rule) in seen:
            raise _rules_error(path, line, f"rule {rule!r} of {entity} is already defined on line {seen[entity, rule]}")
        seen[entity, rule] = line
        # Parent links are judged on the guardian rows they come from.
        table = STAGED_SOURCE_TABLES["guardians" if entity == "parent_links" else entity].__table__
        if column not in table.columns:
            raise _rules_error(path, line, f"{entity} has no staged column {column!r}")
        if check not in CHECKS:
            raise _rules_error(path, line, f"unknown check {check!r} (known: {', '.join(CHECKS)})")
        limit = None
        if check == "max_length":
            if not values["limit"].isdigit() or int(values["limit"]) < 1:
                raise _rules_error(
                    path, line, f"check max_length needs a positive whole 'limit' (found {values['limit']!r})"
                )
            limit = int(values["limit"])
        elif values["limit"]:
            raise _rules_error(path, line, f"only max_length takes a 'limit' (found {values['limit']!r})")
        if values["warn"] not in ("", "yes"):
            raise _rules_error(path, line, f"'warn' is 'yes' or empty (found {values['warn']!r})")
        reason = values["reason"].replace("{limit}", str(limit)) if limit is not None else values["reason"]
        if "{limit}" in reason:
            raise _rules_error(path, line, "'{limit}' in a reason needs check max_length")
        suites.setdefault(entity, []).append(
            ColumnRule(rule, column, check, reason, limit, warn=values["warn"] == "yes")
        )
    return suites


SUITES: dict[str, list[ColumnRule]] = load_column_rules()


def run_suites(
    frames: dict[str, pd.DataFrame], results_dir: Path, district_id: str, run_name: str | None = None
) -> tuple[dict[str, Any], list[dict]]:
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
        data_docs_sites={
            "run": {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    context = gx.get_context(mode="ephemeral", project_config=project_config)
    with _without_batch_fingerprint():
        failures, result_rows = _run_checkpoints(context, frames, results_dir, district_id, run_name)
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


def _run_checkpoints(
    context: Any, frames: dict[str, pd.DataFrame], results_dir: Path, district_id: str, run_name: str | None = None
) -> tuple[dict[str, Any], list[dict]]:
    """One checkpoint per entity (its suite on its in-scope rows); the JSON result of each kept."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

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
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{entity}_checkpoint",
                validation_definitions=[definition],
                result_format={"result_format": "COMPLETE"},
            )
        )
        columns = sorted({rule.column for rule in rules})
        outcome = checkpoint.run(
            batch_parameters={"dataframe": frame[columns]}, run_id=RunIdentifier(run_name=run_name or results_dir.name)
        )
        key, validation = next(iter(outcome.run_results.items()))
        # GX reads a page's "Data asset" from batch_spec, which a dataframe batch leaves without one.
        validation.meta.setdefault("batch_spec", {})["data_asset_name"] = entity
        context.validation_results_store.set(key, validation)
        entity_failures = []
        failing_labels: set = set()
        for result in validation.results:
            meta = result.expectation_config.meta or {}
            rule = next(
                r
                for r in rules
                if r.rule == meta.get("rule") and r.column == result.expectation_config.kwargs["column"]
            )
            labels = list(result.result.get("unexpected_index_list") or [])
            if not result.success and labels:
                entity_failures.append((rule, labels))
                failing_labels.update(labels)
        failures[entity] = entity_failures
        results_path = results_dir / f"{entity}.json"
        results_path.write_text(json.dumps(validation.to_json_dict(), ensure_ascii=False), encoding="utf-8")
        result_rows.append(
            {
                "entity": entity,
                "suite": suite_name,
                "success": bool(validation.success),
                "evaluated": len(frame),
                "failed": len(failing_labels),
                "results_path": str(results_path),
            }
        )
    return failures, result_rows
