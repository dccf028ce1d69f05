"""The bodies of the district import DAG's tasks: Airflow context in, package calls, counts out.

Each function here is what one task runs. It loads the district's config, opens the
staging database, calls the module that does the work (extract, validate, transform,
diff, load, report), records the stage's counts and duration in ``sync_runs``, and
returns counts only (XCom carries counts and ids, never data sets). Errors are recorded
on the run before they are raised, so the report task and the failure email can say
which step failed and why. Errors no retry can fix (a threshold, a mass-change guard,
bad credentials, a missing field grant) fail the task at once instead of retrying.

This module is imported by the DAG file at parse time: keep its top-level imports light
(no pandas, Great Expectations, requests): everything heavy is imported inside functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sis_learning.config import REPO_ROOT, DistrictConfig, load_district_by_id
from sis_learning.entities import SOURCE_ENTITIES
from sis_learning.exceptions import FatalError
from sis_learning.hooks.district import learning_hook, powerschool_hook

log = logging.getLogger(__name__)

VALIDATION_RESULTS_ROOT = REPO_ROOT / "var" / "validation"

# The entities with an extract.<name> task, in extract order (schools are read by start).
EXTRACT_ENTITIES = tuple(entity.name for entity in SOURCE_ENTITIES if entity.extracted_by_task)


def _engine():
    from sis_learning.staging.base import create_all, get_engine

    return create_all(get_engine())


def _is_fatal(error: BaseException) -> bool:
    """No retry can fix it: the type says so (sis_learning.exceptions.FatalError)."""
    return isinstance(error, FatalError)


def _plain_reason(error: BaseException) -> str:
    message = str(error).strip() or type(error).__name__
    return message if len(message) < 4000 else message[:4000] + " ..."


def run_step(
    stage: str,
    district_id: str,
    run_id: str,
    work: Callable[[Any, DistrictConfig], dict[str, Any]],
    to_counts: Callable[[dict[str, Any]], dict[str, dict[str, int]]] | None = None,
) -> dict[str, Any]:
    """Run one step of a district run with bookkeeping; returns the step's counts.

    Each call is one attempt of the stage in the run's history (``sync_run_attempts``).
    A database error is replaced by its value-free summary (staging/errors.py) before
    it is recorded, logged or raised; a FatalError fails the task without retries.
    """
    from sis_learning.report import step_summary
    from sis_learning.staging.errors import summarise
    from sis_learning.staging.runs import ATTEMPT_FAILED, ATTEMPT_SUCCEEDED, begin_attempt, end_attempt, record_stage

    config = load_district_by_id(district_id)
    engine = _engine()
    attempt = begin_attempt(engine, district_id, run_id, stage)
    started = time.monotonic()
    try:
        result = work(engine, config) or {}
    except Exception as error:
        summary = summarise(error, stage)
        reason = _plain_reason(summary or error)
        record_stage(engine, district_id, run_id, stage, seconds=time.monotonic() - started, error=reason)
        end_attempt(engine, attempt, ATTEMPT_FAILED, reason)
        log.error(
            "%s failed for district %s%s: %s",
            stage,
            district_id,
            " (no retry can fix this)" if _is_fatal(summary or error) else "",
            reason,
        )
        if summary is not None:
            raise summary from None  # the driver's message and parameters carry row values
        raise
    counts = to_counts(result) if to_counts else {}
    seconds = time.monotonic() - started
    record_stage(engine, district_id, run_id, stage, counts=counts, seconds=seconds)
    end_attempt(engine, attempt, ATTEMPT_SUCCEEDED)
    log.info(
        "%s (%.1f s)",
        step_summary(stage, result, str(validation_results_dir(district_id, run_id)) if stage == "validate" else None),
        seconds,
    )
    return _xcom_safe(result)


def _xcom_safe(result: dict[str, Any]) -> dict[str, Any]:
    """Counts and ids only: drop anything that is not a number, string, bool or a dict of them."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(key): clean(item)
                for key, item in value.items()
                if isinstance(item, (int, float, str, bool, dict, type(None)))
            }
        return value

    return clean(result)


# ---- start ---------------------------------------------------------------------------


def start_run(district_id: str, run_id: str, dag_id: str, full_refresh: bool = False) -> dict[str, Any]:
    """Open the run's row; a run of the district still ``running`` died unreported: mark it abandoned.

    ``full_refresh`` (the DAG param) makes every extract of this run read in full.
    """
    from sis_learning.extract.incremental import request_full_read
    from sis_learning.staging.runs import abandon_unfinished_runs
    from sis_learning.staging.runs import start_run as start

    config = load_district_by_id(district_id)
    engine = _engine()
    start(engine, district_id, run_id, dag_id=dag_id)
    if full_refresh:
        request_full_read(engine, district_id, run_id, "full_refresh requested when the run was triggered")
    abandoned = abandon_unfinished_runs(engine, district_id, run_id)
    from sis_learning.approval import abandon_waiting_reviews

    for earlier in abandon_waiting_reviews(engine, district_id, run_id):
        log.warning(
            "Run %s of district %s ended while waiting for approval: its review is closed", earlier, district_id
        )
    for item in abandoned:
        log.warning(
            "Run %s of district %s stopped without reporting while in %s: marked abandoned",
            item["run_id"],
            district_id,
            ", ".join(item["stages"]),
        )
    run_step("configuration_check", district_id, run_id, lambda engine, config: check_targets_not_shared(config))
    return {"district_id": config.district_id, "run_id": run_id, "abandoned_runs": len(abandoned)}


def _learning_target(connection_id: str) -> tuple[str, str] | None:
    """(host, digest of the domain token) a Learning connection reaches; None when it cannot be read."""
    import hashlib

    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(connection_id)
    except Exception:  # another district's connection may not exist here: nothing to compare
        return None
    host = (connection.host or "").lower().split("://", 1)[-1].rstrip("/")
    if connection.port:
        host = f"{host}:{connection.port}"
    token = connection.password or ""
    return (host, hashlib.sha256(token.encode()).hexdigest()) if host and token else None


def check_targets_not_shared(config: DistrictConfig) -> dict[str, Any]:
    """Refuse to run a district that shares a PowerSchool connection, a Learning connection, or a
    Learning host and domain (the same host and domain token) with another district file."""
    from sis_learning.config import scan_districts
    from sis_learning.exceptions import DistrictConfigError

    source = str(config.source_file)
    configs, broken = scan_districts(Path(source).parent)
    for item in broken:
        if item.source_file == source:
            raise DistrictConfigError(item.error)
    mine = _learning_target(config.learning.connection_id)
    for other in configs:
        if other.district_id == config.district_id or mine is None:
            continue
        if _learning_target(other.learning.connection_id) == mine:
            raise DistrictConfigError(
                f"{source}: invalid district configuration\n  - learning.connection_id: "
                f"{config.learning.connection_id!r} reaches the same Learning host ({mine[0]}) and domain (the same "
                f"token) as {other.learning.connection_id!r} of {other.source_file}: two districts must not share "
                "a Learning domain (one would write into the other's); give each district its own domain token"
            )
    return {"checked": len(configs)}


def configuration_error(source_file: str, run_id: str) -> dict[str, Any]:
    """The task of a broken district's DAG: email the recipients once per distinct error, then fail at once."""
    import hashlib

    from sis_learning import notify
    from sis_learning.config import load_district, scan_districts
    from sis_learning.exceptions import DistrictConfigError
    from sis_learning.staging.runs import claim_config_error_notice, release_config_error_notice

    _, broken = scan_districts(Path(source_file).parent)
    found = [item for item in broken if item.source_file == source_file]
    if not found:
        load_district(source_file)  # fixed since the DAG was parsed (or deleted: that raises)
        log.info("%s is valid now: the district's DAGs replace this one at the next parse", source_file)
        return {"fixed": True}
    item = found[0]
    engine = _engine()
    digest = hashlib.sha256(item.error.encode()).hexdigest()
    if claim_config_error_notice(engine, source_file, digest):
        try:
            notify.send_config_error_email(
                item.failure_emails, item.smtp_connection_id, item.district_id, source_file, item.error
            )
        except Exception:
            release_config_error_notice(engine, source_file, digest)
            log.exception("Could not send the configuration error email for %s", source_file)
    else:
        log.info("The recipients of %s were already told about this error", source_file)
    raise DistrictConfigError(item.error)


# ---- extract -------------------------------------------------------------------------


def extract_schools(district_id: str, run_id: str) -> dict[str, Any]:
    from sis_learning import extract

    def work(engine, config):
        from sis_learning.extract_guard import check_listings_not_emptied

        result = extract.extract_schools(powerschool_hook(config), engine, config, run_id)
        check_listings_not_emptied(engine, district_id, run_id, "schools")
        return result

    return run_step(
        "extract_schools", district_id, run_id, work, lambda r: {"schools": {"extracted": int(r.get("rows", 0))}}
    )


def extract_entity(entity: str, district_id: str, run_id: str) -> dict[str, Any]:
    from sis_learning import extract

    function = getattr(extract, f"extract_{entity}")

    def work(engine, config):
        from sis_learning.extract_guard import check_listings_not_emptied

        result = function(powerschool_hook(config), engine, config, run_id)
        check_listings_not_emptied(engine, district_id, run_id, entity)  # no school's rows vanish unnoticed
        return result

    return run_step(
        f"extract_{entity}", district_id, run_id, work, lambda r: {entity: {"extracted": int(r.get("rows", 0))}}
    )


# ---- validate ------------------------------------------------------------------------


def validation_results_dir(district_id: str, run_id: str) -> Path:
    safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    return VALIDATION_RESULTS_ROOT / district_id / safe_run


def _entity_counts(result: dict[str, Any], keys: tuple[str, ...]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for entity, values in result.items():
        if isinstance(values, dict):
            counts[entity] = {key: int(values[key]) for key in keys if isinstance(values.get(key), (int, float))}
    return counts


def validate_rows(district_id: str, run_id: str) -> dict[str, Any]:
    from sis_learning import validate

    results_dir = validation_results_dir(district_id, run_id)

    def work(engine, config):
        from sis_learning.staging.runs import record_stage

        result = validate.validate_run(engine, config, run_id, results_dir)
        record_stage(engine, district_id, run_id, "validate", validation_docs=str(results_dir))
        return result

    return run_step(
        "validate",
        district_id,
        run_id,
        work,
        lambda r: _entity_counts(r, ("evaluated", "passed", "rejected", "excluded")),
    )


def check_validation_thresholds(district_id: str, run_id: str) -> dict[str, Any]:
    from sis_learning import validate

    def work(engine, config):
        validate.check_thresholds(engine, config, run_id)
        return {"ok": True}

    return run_step("validation_guard", district_id, run_id, work)


# ---- transform -----------------------------------------------------------------------


def transform_rows(district_id: str, run_id: str) -> dict[str, Any]:
    from sis_learning import transform

    def work(engine, config):
        return transform.transform_run(engine, config, run_id)

    def counts(result: dict[str, Any]) -> dict[str, dict[str, int]]:
        return {
            f"learning_{entity}": {"transformed": int(value)}
            for entity, value in result.items()
            if isinstance(value, (int, float))
        }

    return run_step("transform", district_id, run_id, work, counts)


# ---- diff and load -------------------------------------------------------------------


def compute_changes(district_id: str, run_id: str) -> dict[str, Any]:
    from sis_learning import diff

    def work(engine, config):
        return diff.compute_changes(engine, config, run_id)

    return run_step("diff", district_id, run_id, work)


def check_mass_changes(
    district_id: str,
    run_id: str,
    approve_mass_changes: bool,
    preview: bool = False,
    triggered_by: str | None = None,
) -> dict[str, Any]:
    """The safety guard. Findings open a review the next task waits on (sis_learning.approval), or are
    approved by the ``approve_mass_changes`` parameter; in a preview they go into the report instead."""
    from sis_learning import approval, diff

    def work(engine, config):
        if preview:
            findings = diff.find_mass_changes(engine, config, run_id)
            if findings:
                log.warning(
                    "Preview: the safety guard would stop a real run (%d finding(s)); they are in the preview report",
                    len(findings),
                )
            return {"approved": bool(approve_mass_changes), "preview": True, "findings": len(findings)}
        return approval.guard_run(
            engine, config, run_id, approve_mass_changes=approve_mass_changes, triggered_by=triggered_by
        )

    return run_step("safety_guard", district_id, run_id, work)


def request_approval(district_id: str, run_id: str) -> dict[str, Any] | None:
    """What the approval task shows and waits on: ``{"review_id", "subject", "body"}``, or None when the
    run needs no approval (the guard found nothing, or its change set is approved as it is now)."""
    from sis_learning import approval, diff

    config = load_district_by_id(district_id)
    engine = _engine()
    review = approval.request_approval(engine, config, run_id)
    if review is None:
        return None
    return {
        "review_id": review.id,
        "rows": review.rows,
        "subject": approval.subject(config, review),
        "body": approval.body(config, run_id, review, diff.change_counts(engine, district_id, run_id)),
    }


def approval_asked(district_id: str, run_id: str, review_id: int, task_id: str) -> None:
    """The review is shown in ``task_id`` and the run waits (mass_change_reviews, sync_runs)."""
    from sis_learning import approval

    approval.mark_asked(_engine(), district_id, run_id, review_id, task_id)


def record_approval_answer(
    district_id: str, run_id: str, approved: bool | None, responded_by: str | None, review_id: int | None
) -> dict[str, Any]:
    """The person's answer (or the timeout, ``approved`` None), recorded on the review and the run."""
    from sis_learning import approval

    config = load_district_by_id(district_id)
    outcome = approval.record_answer(
        _engine(), config, run_id, approved=approved, responded_by=responded_by, review_id=review_id
    )
    log.info("Approval of run %s of district %s: %s", run_id, district_id, outcome)
    return outcome


def load_learning(district_id: str, run_id: str) -> dict[str, Any]:
    from sis_learning import approval, load

    def work(engine, config):
        review = approval.check_before_load(engine, config, run_id)
        if review is not None:
            log.info(
                "Loading the change set approved by %s (review %s, %d row(s), fingerprint %s)",
                review.decided_by,
                review.id,
                review.rows,
                review.fingerprint[:12],
            )
        return load.load_run(engine, config, run_id, learning_hook(config))

    def counts(result: dict[str, Any]) -> dict[str, dict[str, int]]:
        return {
            f"learning_{entity}": {action: int(n) for action, n in values.items() if n}
            for entity, values in (result.get("counts") or {}).items()
        }

    return run_step("load", district_id, run_id, work, counts)


def preview_learning(district_id: str, run_id: str) -> dict[str, Any]:
    """The load task of a preview: write what would be sent (preview.py); nothing reaches Learning."""
    from sis_learning import preview

    def work(engine, config):
        return preview.write_preview(engine, config, run_id)

    def counts(result: dict[str, Any]) -> dict[str, dict[str, int]]:
        return {
            f"learning_{entity}": {f"would_{action}": int(n) for action, n in values.items()}
            for entity, values in (result.get("counts") or {}).items()
        }

    return run_step("preview", district_id, run_id, work, counts)


# ---- report --------------------------------------------------------------------------


def failed_tasks(dag_id: str, run_id: str) -> list[str]:
    """Task ids of this run that failed or were blocked by a failure (from Airflow itself)."""
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id])
    except Exception as error:  # outside a task runner (tests calling this directly)
        log.warning("Could not read task states from Airflow: %s", error)
        return []
    by_task = states.get(run_id, states) if isinstance(states, dict) else {}
    return sorted(task_id for task_id, state in by_task.items() if str(state) in ("failed", "upstream_failed"))


def failed_stages(engine, district_id: str, run_id: str) -> list[tuple[str, str]]:
    """(stage, reason) of each stage whose LAST attempt did not succeed, in the order they started.

    The run's outcome is its final state: a stage that failed and then succeeded on retry
    succeeded. An attempt still running when the report runs died with its process.
    """
    from sis_learning.staging.runs import (
        ATTEMPT_FAILED,
        ATTEMPT_KILLED,
        ATTEMPT_RUNNING,
        PREVIOUS_RUN_NOTE,
        final_attempts,
        run_attempts,
    )

    attempts = [a for a in run_attempts(engine, district_id, run_id) if a.stage != PREVIOUS_RUN_NOTE]
    failed = []
    for stage, attempt in final_attempts(attempts).items():
        if attempt.status in (ATTEMPT_FAILED, ATTEMPT_KILLED, ATTEMPT_RUNNING):
            reason = (
                attempt.error
                if attempt.status == ATTEMPT_FAILED
                else ("the task process stopped without reporting (killed or lost)")
            )
            failed.append((stage, reason or "no reason was recorded"))
    return failed


def _refused_review(engine, district_id: str, run_id: str):
    """The run's latest review when a person rejected it or nobody answered in time (nothing was loaded)."""
    from sis_learning.staging.reviews import REVIEW_REJECTED, REVIEW_TIMED_OUT, latest_review

    review = latest_review(engine, district_id, run_id)
    return review if review is not None and review.status in (REVIEW_REJECTED, REVIEW_TIMED_OUT) else None


def report(
    district_id: str, run_id: str, dag_id: str, preview: bool = False, email_preview: bool = False
) -> dict[str, Any]:
    """Write the run summary; on any failure send one email, then fail so the run shows failed.

    A run whose mass changes were rejected or not approved in time ends ``rejected`` /
    ``timed_out`` in ``sync_runs``, emails the district (nothing was loaded) and fails too.

    A preview that got through ends ``previewed`` (not ``success``: no later run reads
    changes since it), its report linked from the summary and, with ``email_preview``,
    emailed to the district's contacts.

    Failed means a task's final state is failed (Airflow's view) or a stage's last attempt
    did not succeed (the run's history); an attempt that failed and was retried
    successfully is history, not a failure.
    """
    from sis_learning import notify
    from sis_learning.report import build_summary, format_text
    from sis_learning.staging.runs import finish_run

    config = load_district_by_id(district_id)
    engine = _engine()
    failed = [task_id for task_id in failed_tasks(dag_id, run_id) if not task_id.endswith("report")]
    stages = failed_stages(engine, district_id, run_id)
    refused = None if preview or failed or stages else _refused_review(engine, district_id, run_id)
    if refused is not None:
        from sis_learning.approval import describe_decision

        reason = describe_decision(refused) or refused.status
        finish_run(engine, district_id, run_id, status=refused.status, error=reason)
        summary = build_summary(engine, config, run_id, dag_id)
        log.warning("%s", format_text(summary))
        notify.send_approval_refused_email(config, summary, refused)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"Run stopped at the safety guard: {reason}")
    if failed or stages:
        if stages:
            stage, reason = stages[0]
        else:
            stage, reason = failed[0], f"task(s) {', '.join(failed)} failed without a recorded reason: see their logs"
        finish_run(engine, district_id, run_id, status="failed", error=reason)
        summary = build_summary(engine, config, run_id, dag_id)
        summary.stage, summary.error = stage, reason
        log.error("%s", format_text(summary))
        notify.send_failure_email(config, summary)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"Run failed at {summary.stage}: {reason}")
    if preview:
        from sis_learning.preview import STATUS_PREVIEWED, preview_dir, send_preview_email

        finish_run(engine, district_id, run_id, status=STATUS_PREVIEWED)
        summary = build_summary(engine, config, run_id, dag_id)
        log.info("%s", format_text(summary))
        if email_preview:
            send_preview_email(config, preview_dir(district_id, run_id), summary.run_url)
        return {"status": STATUS_PREVIEWED, "counts": summary.counts, "report": summary.preview_report}
    finish_run(engine, district_id, run_id, status="success")
    summary = build_summary(engine, config, run_id, dag_id)
    log.info("%s", format_text(summary))
    apply_retention(engine, config)
    return {"status": "success", "counts": summary.counts}


def apply_retention(engine: Any, config: DistrictConfig) -> None:
    """After a successful run, remove the district's staged rows older than its retention settings.

    Never fails the run: Learning is already up to date and the run's summary written; a prune
    that fails is logged as an error and done by the next successful run (or ``make retention``).
    """
    from sis_learning.staging.retention import prune

    try:
        pruned = prune(engine, config.district_id, config.retention.days, config.retention.changes_days)
    except Exception as error:  # pruning is housekeeping: the run's outcome stands
        log.error(
            "retention for %s failed (%s: %s); the next successful run or `make retention` tries again",
            config.district_id,
            type(error).__name__,
            str(error).splitlines()[0][:300] if str(error) else "",
        )
        return
    log.info("%s", pruned.text())
