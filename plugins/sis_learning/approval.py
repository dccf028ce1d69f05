"""Mass-change approvals: a run the safety guard stopped waits for a person, who approves exactly what was shown.

The source document warns against changing Import IDs mid-year, and a run that would
disable a school's students may be a broken SIS answer rather than a real change; so the
safety guard (``diff.find_mass_changes``) stops such a run before anything is written. A
person then decides in the Airflow UI (the standard provider's human-in-the-loop approval,
``approval_operator``). The rules, one function each:

- **the guard** (task ``load.check_mass_changes``, :func:`guard_run`): no finding, the run
  goes on. Findings and the ``approve_mass_changes`` parameter (the CLI's way): recorded as
  approved by the parameter, nothing waits. Findings otherwise: a review is opened in
  ``mass_change_reviews`` with the findings and the change set's fingerprint (a SHA-256
  over every row the load would send). A preview never gets here.
- **asking** (task ``load.approve_mass_changes``, :func:`request_approval`): the review to
  show, if the run needs one. If the change set changed since the review was opened (the
  diff was run again), the guard runs again on the new one. A run whose change set was
  already approved as it is now does not ask again (a retry, a rerun).
- **the answer** (:func:`record_answer`): rejected, or no answer within the district's
  ``safety.approval_timeout_hours``: nothing is loaded, the report emails the district.
  Approved: the fingerprint is checked again; if the change set changed while the person
  was looking, the review is superseded, nothing is approved, and the run asks again with
  the new figures in its next approval task (``load.approve_mass_changes_2``, then ``_3``:
  Airflow keeps the first request a task wrote, through its retries and clears, so each
  ask has a task of its own; ``approval_operator.APPROVAL_TASK_IDS``).
- **the load** (:func:`check_before_load`): the load sends only a change set that is
  either unreviewed (the guard found nothing) or approved with the fingerprint it has now;
  anything else raises :class:`ChangeSetNotApproved` before a single row is sent.

Plain functions over the staging database (engine, config, run id in; plain data out), so
tests call them without a scheduler.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.exceptions import FatalError
from sis_learning.staging.base import session_scope
from sis_learning.staging.reviews import (
    REVIEW_ABANDONED,
    REVIEW_APPROVED,
    REVIEW_REJECTED,
    REVIEW_SUPERSEDED,
    REVIEW_TIMED_OUT,
    REVIEW_WAITING,
    MassChangeReview,
    change_set_fingerprint,
    close_waiting_reviews,
    decide_review,
    latest_review,
    open_review,
)
from sis_learning.staging.runs import SyncRun

log = logging.getLogger(__name__)

# sync_runs.status while the run waits for a person, and after a refusal (what the report writes).
RUN_WAITING = "waiting"
RUN_REJECTED = "rejected"
RUN_TIMED_OUT = "timed_out"
APPROVAL_STAGE = "approval"
# What the guard and the answer come to (returned to the tasks, kept in XCom).
NOT_NEEDED, WAITING, APPROVED, REJECTED, TIMED_OUT, CHANGED = (
    "not_needed",
    "waiting",
    "approved",
    "rejected",
    "timed_out",
    "changed",
)
# Examples per finding shown to the reviewer (the guard keeps up to 5, ids and, for an Import ID
# change, the name it matched on: what a person needs to recognise the users, nothing more).
EXAMPLES_SHOWN = 5


class ChangeSetNotApproved(FatalError):
    """The load was asked to send a change set that is not the one a person approved."""


class ChangeSetKeptChanging(FatalError):
    """The change set changed after every approval task of the run had asked: nothing was loaded."""


# ---- the guard ---------------------------------------------------------------------------------


def parameter_approver(triggered_by: str | None) -> str:
    return f"approve_mass_changes=true (triggered by {triggered_by or 'an unknown user'})"


def guard_run(
    engine: Engine, config: DistrictConfig, run_id: str, *, approve_mass_changes: bool, triggered_by: str | None = None
) -> dict[str, Any]:
    """The guard's verdict on the run's change set: ``not_needed``, ``approved`` (by the parameter) or
    ``waiting`` (a review is open). Safe to run again: the same change set keeps its review."""
    from sis_learning.diff import find_mass_changes, format_findings

    district_id = config.district_id
    findings = find_mass_changes(engine, config, run_id)
    if not findings:
        closed = close_waiting_reviews(
            engine, district_id, REVIEW_SUPERSEDED, "The change set was computed again and needs no approval.", run_id
        )
        if closed:
            log.info("The recomputed change set of run %s needs no approval: its open review was closed", run_id)
        return {"decision": NOT_NEEDED, "findings": 0}
    message = format_findings(config, run_id, findings)
    if approve_mass_changes:
        approver = parameter_approver(triggered_by)
        review = open_review(engine, district_id, run_id, findings, message, approved_by=approver)
        log.warning("Mass changes approved by the run's approve_mass_changes parameter:\n%s", message)
        return {"decision": APPROVED, "findings": len(findings), "review_id": review.id, "rows": review.rows}
    review = open_review(engine, district_id, run_id, findings, message)
    log.warning(
        "Safety stop: the run waits for a person's approval in the Airflow UI (review %s, %d row(s)):\n%s",
        review.id,
        review.rows,
        message,
    )
    return {"decision": WAITING, "findings": len(findings), "review_id": review.id, "rows": review.rows}


# ---- asking ------------------------------------------------------------------------------------


def request_approval(engine: Engine, config: DistrictConfig, run_id: str) -> MassChangeReview | None:
    """The review a person must answer before the run may load, or None when the run needs none.

    None: the guard found nothing (no review), or the run's change set is approved exactly as
    it is now (by a person or the parameter: a retry or rerun does not ask twice). Otherwise
    the waiting review of the current change set; when the change set is not the one the
    latest review was opened for (or that review was answered and the task runs again), the
    guard looks at it again and a new review is opened (the older one superseded).
    """
    from sis_learning.diff import find_mass_changes, format_findings

    district_id = config.district_id
    latest = latest_review(engine, district_id, run_id)
    if latest is None:
        return None
    with engine.connect() as connection:
        fingerprint, _rows = change_set_fingerprint(connection, district_id, run_id)
    if latest.fingerprint == fingerprint and latest.status == REVIEW_APPROVED:
        return None
    if latest.fingerprint == fingerprint and latest.status == REVIEW_WAITING:
        return latest
    findings = find_mass_changes(engine, config, run_id)
    if not findings:
        close_waiting_reviews(
            engine, district_id, REVIEW_SUPERSEDED, "The change set was computed again and needs no approval.", run_id
        )
        return None
    return open_review(engine, district_id, run_id, findings, format_findings(config, run_id, findings))


def mark_asked(engine: Engine, district_id: str, run_id: str, review_id: int, task_id: str) -> None:
    """The review is asked in ``task_id``; sync_runs says the run waits for a person (the Districts
    page links to the task, analysts read the status)."""
    with session_scope(engine) as session:
        review = session.get(MassChangeReview, review_id)
        if review is not None:
            review.task_id = task_id
    _set_run_status(engine, district_id, run_id, RUN_WAITING)


def _set_run_status(engine: Engine, district_id: str, run_id: str, status: str) -> None:
    with session_scope(engine) as session:
        run = session.scalar(
            select(SyncRun).where(
                SyncRun.district_id == district_id, SyncRun.run_id == run_id, SyncRun.kind == "import"
            )
        )
        if run is not None:
            run.status, run.stage = status, APPROVAL_STAGE


# ---- the answer --------------------------------------------------------------------------------


def record_answer(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    *,
    approved: bool | None,
    responded_by: str | None,
    review_id: int | None = None,
) -> dict[str, Any]:
    """Record a person's answer (``approved`` True or False) or the timeout (``approved`` None).

    Returns ``{"decision": approved | rejected | timed_out | changed, "review_id", ...}``.
    ``changed``: the person approved, but the change set is no longer the one shown (or the
    review was closed meanwhile): nothing is approved, the next approval task asks again.
    """
    district_id = config.district_id
    review = latest_review(engine, district_id, run_id)
    if review is None or review.status != REVIEW_WAITING or (review_id is not None and review.id != review_id):
        return {"decision": CHANGED, "review_id": review.id if review else None}
    if approved is None:
        decide_review(
            engine,
            review.id,
            REVIEW_TIMED_OUT,
            None,
            f"Nobody answered within {config.safety.approval_timeout_hours:g} hour(s): nothing was loaded.",
        )
        _set_run_status(engine, district_id, run_id, RUN_TIMED_OUT)
        return {"decision": TIMED_OUT, "review_id": review.id}
    if not approved:
        decide_review(engine, review.id, REVIEW_REJECTED, responded_by, f"Rejected by {responded_by}.")
        _set_run_status(engine, district_id, run_id, RUN_REJECTED)
        return {"decision": REJECTED, "review_id": review.id, "decided_by": responded_by}
    with engine.connect() as connection:
        fingerprint, rows = change_set_fingerprint(connection, district_id, run_id)
    if fingerprint != review.fingerprint:
        decide_review(
            engine,
            review.id,
            REVIEW_SUPERSEDED,
            responded_by,
            f"Approved by {responded_by}, but the change set had changed since it was shown "
            f"({review.rows} row(s) shown, {rows} now): nothing was approved; asked again.",
        )
        return {"decision": CHANGED, "review_id": review.id}
    decide_review(engine, review.id, REVIEW_APPROVED, responded_by)
    _set_run_status(engine, district_id, run_id, "running")
    return {"decision": APPROVED, "review_id": review.id, "decided_by": responded_by, "rows": review.rows}


# ---- the load ----------------------------------------------------------------------------------


def check_before_load(engine: Engine, config: DistrictConfig, run_id: str) -> MassChangeReview | None:
    """Raise ChangeSetNotApproved unless the run's change set may be sent as it is now.

    May be sent: the run has no review (the guard found nothing), or its latest review is
    approved and the change set's fingerprint is still the approved one. Returns that review.
    An approved review whose change set changed since is marked superseded.
    """
    district_id = config.district_id
    review = latest_review(engine, district_id, run_id)
    if review is None:
        return None
    if review.status != REVIEW_APPROVED:
        raise ChangeSetNotApproved(
            f"Run {run_id} of district {district_id} has mass changes that are not approved (review {review.id} "
            f"is {review.status}): nothing was sent to Learning. Approve them in the Airflow UI (task "
            "load.approve_mass_changes of this run), or trigger the DAG with approve_mass_changes=true."
        )
    with engine.connect() as connection:
        fingerprint, rows = change_set_fingerprint(connection, district_id, run_id)
    if fingerprint != review.fingerprint:
        decide_review(
            engine,
            review.id,
            REVIEW_SUPERSEDED,
            review.decided_by,
            f"The change set changed after it was approved ({review.rows} row(s) approved, {rows} at the load): "
            "nothing was loaded.",
        )
        raise ChangeSetNotApproved(
            f"Run {run_id} of district {district_id}: the change set changed after {review.decided_by} approved it "
            f"({review.rows} row(s) approved, {rows} now): nothing was sent to Learning. Clear the task "
            "load.approve_mass_changes of this run (with its downstream tasks) to be asked again about the "
            "changes as they are now."
        )
    return review


# ---- the next run ------------------------------------------------------------------------------


def abandon_waiting_reviews(engine: Engine, district_id: str, current_run_id: str) -> list[str]:
    """Close reviews of the district's earlier runs still waiting: a new run started, so they ended
    unanswered (one run of a district at a time). Returns their run ids."""
    return close_waiting_reviews(
        engine,
        district_id,
        REVIEW_ABANDONED,
        f"The run ended without an answer; run {current_run_id} started after it.",
        except_run_id=current_run_id,
    )


# ---- what the person sees ------------------------------------------------------------------------


def subject(config: DistrictConfig, review: MassChangeReview) -> str:
    return f"{config.name}: approve {review.rows:,} change(s) the safety guard stopped?"


def _examples(finding: dict[str, Any]) -> str:
    examples = [str(item) for item in (finding.get("examples") or [])[:EXAMPLES_SHOWN]]
    return ", ".join(f"`{item}`" for item in examples) or "-"


def _share(finding: dict[str, Any]) -> str:
    return f"{finding['ratio']:.0%}" if finding.get("ratio") is not None else "all"


def finding_rows(findings: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per school and entity: what the guard saw, in words (the UI's table, the email's)."""
    rows = []
    for finding in findings:
        kind = finding.get("kind")
        if kind == "import_id_change":
            per_school = finding.get("per_school") or {}
            for school, count in per_school.items():
                rows.append(
                    {
                        "school": str(school),
                        "what": "possible Import ID change: users leave and reappear under a new id",
                        "rows": f"{count:,}",
                        "of": f"{finding['previous_rows']:,} leaving in the district",
                        "share": _share(finding),
                        "examples": _examples(finding),
                    }
                )
            continue
        what = {
            "mass_removal": f"{finding['entity']} {finding['action']}d",
            "school_emptied": f"{finding['entity']} {finding['action']}d: the school drops to zero",
        }.get(str(kind), f"{finding.get('entity')} {finding.get('action')}")
        rows.append(
            {
                "school": str(finding.get("organization_id")),
                "what": what,
                "rows": f"{finding['rows']:,}",
                "of": f"{finding['previous_rows']:,} in Learning",
                "share": _share(finding),
                "examples": _examples(finding),
            }
        )
    return rows


def body(
    config: DistrictConfig, run_id: str, review: MassChangeReview, change_counts: dict[str, dict[str, int]]
) -> str:
    """The approval request in Markdown (the Airflow UI renders it): per school the figures and examples,
    the whole change set per entity, and what each answer does."""
    safety = config.safety
    lines = [
        f"The safety guard stopped run `{run_id}` of **{config.name}** (`{config.district_id}`) before "
        "anything was sent to PowerSchool Learning.",
        "",
        "| School | What | Rows | Of | Share | Examples |",
        "|---|---|---:|---|---:|---|",
    ]
    for row in finding_rows(list(review.findings or [])):
        lines.append(
            f"| {row['school']} | {row['what']} | {row['rows']} | {row['of']} | {row['share']} | {row['examples']} |"
        )
    lines += [
        "",
        f"Limits: more than {safety.max_removal_ratio:.0%} of a school's rows of an entity and at least "
        f"{safety.min_removal_rows}; any school whose every user leaves; an Import ID change when "
        f"{safety.import_id_change_ratio:.0%} of the users leaving reappear under a new id.",
        "",
        f"**The whole change set ({review.rows:,} row(s))**, per entity:",
        "",
        "| Entity | Create | Update | Deactivate | Remove |",
        "|---|---:|---:|---:|---:|",
    ]
    for entity, counts in change_counts.items():
        if any(counts.get(action) for action in ("create", "update", "deactivate", "remove")):
            lines.append(
                f"| {entity} | {counts.get('create', 0):,} | {counts.get('update', 0):,} | "
                f"{counts.get('deactivate', 0):,} | {counts.get('remove', 0):,} |"
            )
    lines += [
        "",
        f"**Approve** loads exactly these {review.rows:,} row(s) (change set `{review.fingerprint[:12]}`); if the "
        "change set changes before the load, nothing is loaded and you are asked again. **Reject** loads nothing "
        f"and emails the district ({', '.join(config.notifications.failure_emails) or 'no recipients configured'}); "
        f"so does no answer within {safety.approval_timeout_hours:g} hour(s). Every row is in the staged table "
        f"`change_set` (run `{run_id}`).",
    ]
    return "\n".join(lines)


def describe_decision(review: MassChangeReview | None) -> str | None:
    """One sentence for the run's report: what became of the run's approval."""
    if review is None:
        return None
    when = review.decided_at.strftime("%Y-%m-%d %H:%M UTC") if isinstance(review.decided_at, datetime) else ""
    return {
        REVIEW_WAITING: f"Waiting for a person's approval of {review.rows:,} change(s) (review {review.id}).",
        REVIEW_APPROVED: f"Mass changes ({review.rows:,} row(s)) approved by {review.decided_by} at {when}.",
        REVIEW_REJECTED: f"Mass changes ({review.rows:,} row(s)) rejected by {review.decided_by} at {when}: "
        "nothing was loaded.",
        REVIEW_TIMED_OUT: f"Nobody approved the mass changes ({review.rows:,} row(s)) in time (by {when}): "
        "nothing was loaded.",
        REVIEW_SUPERSEDED: f"The change set changed after review {review.id}: nothing was loaded.",
        REVIEW_ABANDONED: f"The run ended without an answer to review {review.id}: nothing was loaded.",
    }.get(review.status)
