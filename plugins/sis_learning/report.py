"""The run summary: what one district import did, stage by stage, for the report task,
the failure email and analysts.

It reads only staged tables (``sync_runs``, ``extract_counts``, ``rejected_rows``,
``excluded_rows``, ``change_set``) and returns plain data, so it can run at the end of
a successful run or of a failed one (whatever tables exist by then).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.staging.runs import PREVIOUS_RUN_NOTE, SyncRun, get_run, run_attempts


@dataclass
class RunSummary:
    district_id: str
    district_name: str
    run_id: str
    status: str
    stage: str | None
    error: str | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    top_rejections: list[dict[str, Any]] = field(default_factory=list)
    # Fields imported without their value (validation_warnings): counted apart, never a rejection.
    warned: int = 0
    top_warnings: list[dict[str, Any]] = field(default_factory=list)
    changes: dict[str, dict[str, int]] = field(default_factory=dict)
    extract_mismatches: list[dict[str, Any]] = field(default_factory=list)
    # How each entity was read (``extract_reads``): full or incremental, and why (a full read
    # that replaced an incremental one says so: a refused change cursor, too many changes).
    reads: list[dict[str, Any]] = field(default_factory=list)
    # How validate, transform and diff processed the run (``stage_deltas``): the whole district,
    # or after an incremental read only what changed since the base run.
    stages: list[dict[str, Any]] = field(default_factory=list)
    validation_docs: str | None = None
    run_url: str | None = None
    # The run's history: attempts that did not succeed (retried or final) and earlier runs this
    # run found abandoned (``sync_run_attempts``).
    failed_attempts: list[dict[str, Any]] = field(default_factory=list)
    abandoned_runs: list[str] = field(default_factory=list)
    # A preview run (status "previewed"): its report, where nothing was sent (preview.py).
    preview_report: str | None = None
    # What became of the run's mass-change approval (sis_learning.approval), in a sentence.
    approval: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


DEFAULT_AIRFLOW_BASE_URL = "http://localhost:8080"


def airflow_base_url(config: DistrictConfig | None) -> str:
    """Where the Airflow UI is, for links in emails: the district's ``notifications.airflow_base_url``,
    else Airflow's own ``[api] base_url`` (``AIRFLOW__API__BASE_URL``), else http://localhost:8080."""
    if config is not None and config.notifications.airflow_base_url:
        return config.notifications.airflow_base_url.rstrip("/")
    try:
        from airflow.sdk.configuration import conf

        base = conf.get("api", "base_url", fallback=None)
    except Exception:  # Airflow's configuration cannot be read (a bare script): the default
        base = None
    return (base or DEFAULT_AIRFLOW_BASE_URL).rstrip("/")


def run_url(config: DistrictConfig, dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow 3 UI."""
    return f"{airflow_base_url(config)}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


# What each step does, in words a district admin reads: "<district>: could not read students
# from PowerSchool". Task ids (when a task failed without recording its stage) map to stages.
ENTITY_WORDS = {
    "schools": "schools",
    "terms": "terms",
    "courses": "courses",
    "sections": "classes (sections)",
    "staff": "teachers (staff)",
    "students": "students",
    "section_enrollments": "class rosters (section enrollments)",
    "section_teachers": "co-teachers",
    "guardians": "parents (guardians)",
}
STAGE_WORDS = {
    "configuration_check": "stopped: the district configuration was refused",
    "validate": "could not check the rows read from PowerSchool",
    "validation_guard": "stopped: too many rows failed validation",
    "transform": "could not build the rows for Learning",
    "diff": "could not compare with what Learning already has",
    "safety_guard": "stopped before a mass change in Learning (needs approval)",
    "approval": "stopped: the mass changes were not approved",
    "load": "could not write the changes to PowerSchool Learning",
    "preview": "could not write the preview report (nothing was sent to Learning)",
    "push": "could not push grades to PowerTeacher",
    "report": "could not write its report",
}
TASK_STAGES = {
    "start_run": "configuration_check",
    "validate_rows": "validate",
    "check_thresholds": "validation_guard",
    "transform_rows": "transform",
    "compute_changes": "diff",
    "check_mass_changes": "safety_guard",
    "approve_mass_changes": "approval",
    "approve_mass_changes_2": "approval",
    "approve_mass_changes_3": "approval",
    "load_learning": "load",
    "push_grades": "push",
}


def stage_name(stage_or_task_id: str) -> str:
    """The stage of a stage name or a task id (``extract.extract_students`` -> ``extract_students``)."""
    name = stage_or_task_id.rsplit(".", 1)[-1]
    return TASK_STAGES.get(name, name)


def describe_stage(stage_or_task_id: str | None) -> str:
    """What failed, in words: 'could not read students from PowerSchool'."""
    if not stage_or_task_id:
        return "failed at a step that was not recorded"
    stage = stage_name(stage_or_task_id)
    if stage.startswith("extract_"):
        entity = stage.removeprefix("extract_")
        return f"could not read {ENTITY_WORDS.get(entity, entity.replace('_', ' '))} from PowerSchool"
    return STAGE_WORDS.get(stage, f"failed at step {stage}")


def _has(engine: Engine, table: str) -> bool:
    return inspect(engine).has_table(table)


def build_summary(engine: Engine, config: DistrictConfig, run_id: str, dag_id: str | None = None) -> RunSummary:
    run: SyncRun | None = get_run(engine, config.district_id, run_id)
    summary = RunSummary(
        district_id=config.district_id,
        district_name=config.name,
        run_id=run_id,
        status=run.status if run else "unknown",
        stage=run.stage if run else None,
        error=run.error if run else None,
        counts=dict(run.counts or {}) if run else {},
        durations=dict(run.durations or {}) if run else {},
        validation_docs=run.validation_docs if run else None,
        run_url=run_url(config, dag_id or config.import_dag_id, run_id),
    )
    if summary.status == "previewed":
        from sis_learning.preview import preview_dir

        summary.preview_report = str(preview_dir(config.district_id, run_id) / "index.html")
    if _has(engine, "sync_run_attempts"):
        for attempt in run_attempts(engine, config.district_id, run_id):
            if attempt.stage == PREVIOUS_RUN_NOTE:
                summary.abandoned_runs.append(attempt.error or "")
            elif attempt.status != "succeeded":
                summary.failed_attempts.append(
                    {
                        "stage": attempt.stage,
                        "attempt": attempt.attempt,
                        "status": attempt.status,
                        "error": attempt.error,
                        "started_at": attempt.started_at,
                        "finished_at": attempt.finished_at,
                    }
                )
    if _has(engine, "mass_change_reviews"):
        from sis_learning.approval import describe_decision
        from sis_learning.staging.reviews import latest_review

        summary.approval = describe_decision(latest_review(engine, config.district_id, run_id))
    params = {"district_id": config.district_id, "run_id": run_id}
    with engine.connect() as connection:
        if _has(engine, "rejected_rows"):
            rows = connection.execute(
                text(
                    "SELECT entity, rule, MIN(reason) AS example, COUNT(*) AS n FROM rejected_rows "
                    "WHERE district_id = :district_id AND run_id = :run_id "
                    "GROUP BY entity, rule ORDER BY n DESC, entity, rule LIMIT 5"
                ),
                params,
            )
            summary.top_rejections = [dict(row._mapping) for row in rows]
        if _has(engine, "validation_warnings"):
            rows = connection.execute(
                text(
                    "SELECT entity, rule, field, MIN(reason) AS example, COUNT(*) AS n FROM validation_warnings "
                    "WHERE district_id = :district_id AND run_id = :run_id "
                    "GROUP BY entity, rule, field ORDER BY n DESC, entity, rule"
                ),
                params,
            )
            warnings = [dict(row._mapping) for row in rows]
            summary.warned = sum(int(item["n"]) for item in warnings)
            summary.top_warnings = warnings[:5]
        if _has(engine, "change_set"):
            rows = connection.execute(
                text(
                    "SELECT entity, action, status, COUNT(*) AS n FROM change_set "
                    "WHERE district_id = :district_id AND run_id = :run_id GROUP BY entity, action, status"
                ),
                params,
            )
            for row in rows:
                # accepted (or skipped, for unchanged rows) reads as the action itself; refusals stand apart
                key = (
                    row.action
                    if row.status in ("accepted", "pending", "skipped", None)
                    else f"{row.action}_{row.status}"
                )
                summary.changes.setdefault(row.entity, {})[key] = (
                    summary.changes.get(row.entity, {}).get(key, 0) + row.n
                )
        if _has(engine, "extract_counts"):
            rows = connection.execute(
                text(
                    "SELECT entity, scope, rows, reported_count, note FROM extract_counts "
                    "WHERE district_id = :district_id AND run_id = :run_id AND mismatch"
                ),
                params,
            )
            summary.extract_mismatches = [dict(row._mapping) for row in rows]
        if _has(engine, "extract_reads"):
            rows = connection.execute(
                text(
                    "SELECT entity, mode, read_from, base_run_id, note FROM extract_reads "
                    "WHERE district_id = :district_id AND run_id = :run_id AND entity <> '*' ORDER BY entity"
                ),
                params,
            )
            summary.reads = [dict(row._mapping) for row in rows]
        if _has(engine, "stage_deltas"):
            rows = connection.execute(
                text(
                    "SELECT stage, mode, base_run_id, counts FROM stage_deltas "
                    "WHERE district_id = :district_id AND run_id = :run_id ORDER BY id"
                ),
                params,
            )
            summary.stages = [dict(row._mapping) for row in rows]
            for item in summary.stages:
                counts = item.pop("counts", None)
                if item["stage"] != "diff" or item["mode"] != "delta" or not counts:
                    continue
                # A delta diff writes no change_set row for the keys unchanged since the base run.
                for entity, n in (json.loads(counts) if isinstance(counts, str) else counts).items():
                    if n:
                        entity_changes = summary.changes.setdefault(entity, {})
                        entity_changes["unchanged"] = entity_changes.get("unchanged", 0) + int(n)
    return summary


def format_text(summary: RunSummary) -> str:
    """A plain-text report, printed by the report task and the demo."""
    lines = [
        f"District {summary.district_name} ({summary.district_id}), run {summary.run_id}: {summary.status}",
    ]
    if summary.error:
        lines.append(f"Failed at {summary.stage} ({describe_stage(summary.stage)}): {summary.error}")
    for note in summary.abandoned_runs:
        lines.append(f"Found at start: {note} (marked abandoned)")
    if summary.approval:
        lines.append(f"Approval: {summary.approval}")
    if summary.failed_attempts:
        lines.append("Attempts that did not succeed (a later attempt of the same stage may have):")
        for item in summary.failed_attempts:
            lines.append(f"  {item['stage']} attempt {item['attempt']}: {item['status']}: {item['error']}")
    for entity in sorted(summary.counts):
        values = ", ".join(f"{stage} {count}" for stage, count in summary.counts[entity].items())
        lines.append(f"  {entity}: {values}")
    if summary.preview_report:
        lines.append(f"Preview: nothing was sent to Learning. What would be sent: {summary.preview_report}")
    if summary.changes:
        lines.append("Changes that would be sent (preview):" if summary.preview_report else "Changes sent to Learning:")
        for entity in sorted(summary.changes):
            values = ", ".join(f"{action} {count}" for action, count in sorted(summary.changes[entity].items()))
            lines.append(f"  {entity}: {values}")
    if summary.top_rejections:
        lines.append("Most common rejections:")
        for item in summary.top_rejections:
            lines.append(f"  {item['n']} x {item['entity']} / {item['rule']}: {item['example']}")
    if summary.warned:
        lines.append(f"Warnings (imported without the value; never counted toward thresholds): {summary.warned}")
        for item in summary.top_warnings:
            lines.append(f"  {item['n']} x {item['entity']} / {item['rule']} ({item['field']}): {item['example']}")
    if summary.extract_mismatches:
        lines.append("Extract count mismatches (PowerSchool /count vs rows read):")
        for item in summary.extract_mismatches:
            lines.append(
                f"  {item['entity']} [{item['scope']}]: read {item['rows']}, /count said {item['reported_count']}"
            )
    if summary.reads:
        incremental = [item["entity"] for item in summary.reads if item["mode"] == "incremental"]
        full = [item for item in summary.reads if item["mode"] != "incremental"]
        if incremental:
            since = sorted({item["read_from"] for item in summary.reads if item["read_from"]})
            lines.append(f"Read incrementally (what changed since {', '.join(since)}): {', '.join(incremental)}")
        by_reason: dict[str, list[str]] = {}
        for item in full:
            by_reason.setdefault((item["note"] or "").removeprefix("full read: "), []).append(item["entity"])
        for reason, entities in by_reason.items():
            lines.append(f"Read in full: {', '.join(entities)}" + (f" ({reason})" if reason else ""))
    delta_stages = [item for item in summary.stages if item["mode"] == "delta"]
    if delta_stages:
        lines.append(
            f"Processed only what changed since run {delta_stages[0]['base_run_id']}: "
            + ", ".join(item["stage"] for item in delta_stages)
            + " (the rest is that run's result, unchanged)"
        )
    if summary.durations:
        lines.append(
            "Durations: " + ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in summary.durations.items())
        )
    if summary.validation_docs:
        lines.append(f"Validation results: {summary.validation_docs}")
    if summary.run_url:
        lines.append(f"Airflow: {summary.run_url}")
    return "\n".join(lines)


# ---- one line per step, for the task log ------------------------------------------------------


def _number(value: Any) -> str:
    return f"{int(value):,}"


def _entity_list(parts: list[str]) -> str:
    return "; ".join(parts) if parts else "nothing"


def step_summary(stage: str, result: dict[str, Any], validation_docs: str | None = None) -> str:
    """What one step did, in a sentence an operator reads in the task log (counts, not data)."""
    if stage.startswith("extract_"):
        entity = result.get("entity") or stage.removeprefix("extract_")
        words = ENTITY_WORDS.get(entity, entity.replace("_", " "))
        line = (
            f"Read {_number(result.get('rows', 0))} {words} from PowerSchool in {_number(result.get('requests', 0))} "
            f"request(s) ({_number(result.get('pages', 0))} page(s), {_number(result.get('scopes', 0))} "
            f"{'school(s)' if result.get('scopes', 0) != 1 else 'listing'})"
        )
        if result.get("read_mode") == "incremental":
            line += (
                f", only what changed since the last run "
                f"({_number(result.get('carried_forward', 0))} rows carried forward)"
            )
        if result.get("mismatch"):
            line += f"; PowerSchool's /count said {result.get('reported_count')}: see extract_counts where mismatch"
        return line + f". Staged in stg_{entity}; per school: extract_counts."
    if stage == "validate":
        totals = {
            key: sum(int(values.get(key, 0)) for values in result.values() if isinstance(values, dict))
            for key in ("evaluated", "passed", "rejected", "excluded", "warned")
        }
        problems = [
            f"{entity} {values.get('rejected', 0)} rejected, {values.get('excluded', 0)} left out"
            for entity, values in result.items()
            if isinstance(values, dict) and (values.get("rejected") or values.get("excluded"))
        ]
        line = (
            f"Checked {_number(totals['evaluated'])} rows: {_number(totals['passed'])} passed, "
            f"{_number(totals['rejected'])} rejected (rejected_rows), {_number(totals['excluded'])} left out by "
            f"rule (excluded_rows), {_number(totals['warned'])} field warning(s) (validation_warnings). "
            f"By entity: {_entity_list(problems)}."
        )
        if validation_docs:
            line += f" Data Docs: {validation_docs}/data_docs/index.html"
        return line
    if stage == "validation_guard":
        return "Every entity is within its rejection threshold: the run goes on."
    if stage == "transform":
        built = [
            f"{entity.replace('_', ' ')} {_number(n)}" for entity, n in result.items() if isinstance(n, (int, float))
        ]
        return f"Built the rows Learning should hold: {_entity_list(built)} (tables learning_*)."
    if stage == "diff":
        changes = []
        for entity, actions in result.items():
            if isinstance(actions, dict):
                done = [f"{n} {action}" for action, n in actions.items() if n and action != "unchanged"]
                changes.append(f"{entity.replace('_', ' ')} {', '.join(done) if done else 'no change'}")
        return f"Changes to send to Learning: {_entity_list(changes)} (table change_set)."
    if stage == "safety_guard" and result.get("preview"):
        return (
            f"Preview: the safety guard found {result.get('findings', 0)} mass change(s); they go into the "
            "preview report instead of stopping the run."
        )
    if stage == "preview":
        would = [
            f"{entity.replace('_', ' ')} {', '.join(f'{n} {action}' for action, n in actions.items())}"
            for entity, actions in (result.get("counts") or {}).items()
            if actions
        ]
        return (
            f"Preview written, nothing sent to Learning: {_number(result.get('rows', 0))} row(s) in "
            f"{_number(result.get('requests', 0))} request(s) would go: {_entity_list(would)}. "
            f"Report: {result.get('report')}"
        )
    if stage == "safety_guard":
        decision = result.get("decision")
        if decision == "waiting":
            return (
                f"Safety stop: {result.get('findings', 0)} finding(s) over {_number(result.get('rows', 0))} row(s) "
                "to send; the run waits for a person's approval (load.approve_mass_changes; mass_change_reviews)."
            )
        return (
            "Mass changes approved by the run's approve_mass_changes parameter: the load goes ahead."
            if decision == "approved" or result.get("approved")
            else "No mass change and no Import ID change: the load goes ahead."
        )
    if stage == "load":
        counts = result.get("counts") or {}
        sent = []
        refused = 0
        for entity, actions in counts.items():
            refused += int(actions.get("refused", 0) or 0)
            done = [
                f"{n} {action}"
                for action, n in actions.items()
                if n and action not in ("unchanged", "refused", "pending")
            ]
            if done:
                sent.append(f"{entity.replace('_', ' ')} {', '.join(done)}")
        return (
            f"Sent {_number(result.get('rows_sent', 0))} row(s) to Learning in {_number(result.get('requests', 0))} "
            f"request(s): {_entity_list(sent)}; {refused} refused (change_set.status = 'refused', rejected_rows)."
        )
    if stage == "configuration_check":
        return (
            f"Configuration checked against {result.get('checked', 0)} district file(s): "
            "no shared PowerSchool or Learning target."
        )
    return f"{stage} done."
