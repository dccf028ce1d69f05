"""Every email the pipeline sends, built and sent in one place.

Three messages, all to the district's ``notifications.failure_emails``:

- the **failure email**, once per failed import run: the subject names the step in words
  ("could not read students from PowerSchool"), the first sentence says what to do, then
  the reason, how many attempts Airflow made, what Learning has, the counts so far, the
  most common rejections and a link to the run in the Airflow UI;
- the **grade-push refusal email**: the scores and assignment changes PowerTeacher refused;
- the **configuration error email**: a district file that cannot be used (once per error);
- the **preview email** (asked for with ``email_preview``): what the next import would send;
- the **approval refused email**: a run the safety guard stopped was rejected in the Airflow
  UI, or nobody answered in time; nothing was loaded.

Each is an :class:`Email` with a plain-text and an HTML part built from the same blocks,
sent by :func:`send_email` through the district's Airflow SMTP connection. No secret ever
goes into one: reasons come from our own exception messages, which never carry one, and
row values never reach them (staging/errors.py).
"""

from __future__ import annotations

import html
import logging
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sis_learning.config import DistrictConfig
from sis_learning.report import RunSummary, airflow_base_url, describe_stage, run_url, stage_name

if TYPE_CHECKING:
    from sis_learning.grade_push import PushSummary

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[SIS -> Learning]"


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


# ---- blocks: one content, two renderings ------------------------------------------------------
# ("p", text) a paragraph; ("pre", text) preformatted; ("list", title, [items]);
# ("table", title, [headers], [[cells]]); ("link", label, url). Text is plain, never HTML.

Block = tuple


def _render_text(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "p":  # not wrapped: mail clients wrap, and a search finds a phrase whole
            out.append(block[1])
        elif kind == "pre":
            out.append(textwrap.indent(block[1], "    "))
        elif kind == "list":
            out.append(block[1] + "\n" + "\n".join(f"  - {item}" for item in block[2]))
        elif kind == "table":
            _, title, headers, rows = block
            if len(headers) == 2:  # a key and its value
                lines = [f"  {key}: {value}" for key, value in rows]
            else:
                lines = ["  " + "; ".join(f"{h}: {c}" for h, c in zip(headers, row, strict=True)) for row in rows]
            out.append(title + "\n" + "\n".join(lines))
        elif kind == "link":
            out.append(f"{block[1]}:\n  {block[2]}")
    return "\n\n".join(out) + "\n"


def _render_html(title: str, blocks: Sequence[Block]) -> str:
    esc = html.escape
    out = [f"<h2>{esc(title)}</h2>"]
    for block in blocks:
        kind = block[0]
        if kind == "p":
            out.append(f"<p>{esc(block[1])}</p>")
        elif kind == "pre":
            out.append(f"<pre style='white-space:pre-wrap'>{esc(block[1])}</pre>")
        elif kind == "list":
            items = "".join(f"<li>{esc(item)}</li>" for item in block[2])
            out.append(f"<p><b>{esc(block[1])}</b></p><ul>{items}</ul>")
        elif kind == "table":
            _, caption, headers, rows = block
            head = "".join(f"<th>{esc(h)}</th>" for h in headers)
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows)
            out.append(f"<p><b>{esc(caption)}</b></p><table border='1' cellpadding='4'><tr>{head}</tr>{body}</table>")
        elif kind == "link":
            out.append(f"<p><a href='{esc(block[2], quote=True)}'>{esc(block[1])}</a>: {esc(block[2])}</p>")
    return "\n".join(out)


def _email(subject: str, title: str, blocks: Sequence[Block]) -> Email:
    return Email(subject=subject, text=_render_text(blocks), html=_render_html(title, blocks))


# ---- sending ---------------------------------------------------------------------------------


def send_email(smtp_connection_id: str, recipients: Iterable[str], email: Email) -> None:
    """Send one email (text and HTML alternatives) through the Airflow SMTP connection.

    The provider's ``SmtpHook`` opens the connection (SSL/STARTTLS/login as the connection
    says); its ``send_email_smtp`` only builds HTML-only messages, so the message is built
    here and given to the hook's client.
    """
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    from airflow.providers.smtp.hooks.smtp import SmtpHook
    from airflow.sdk.configuration import conf

    to = list(recipients)
    with SmtpHook(smtp_conn_id=smtp_connection_id) as hook:
        sender = hook.from_email or conf.get("email", "from_email", fallback=None)
        if not sender:
            raise ValueError(
                f"Airflow connection {smtp_connection_id!r} has no from_email in its extras "
                "(and [email] from_email is not set): the email has no sender"
            )
        message = EmailMessage()
        message["Subject"] = email.subject
        message["From"] = sender
        message["To"] = ", ".join(to)
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        client = hook._smtp_client  # opened by the hook's __enter__ (get_conn)
        for attempt in range(hook.smtp_retry_limit + 1):
            try:
                client.send_message(message, from_addr=sender, to_addrs=to)
                break
            except Exception:
                if attempt == hook.smtp_retry_limit:
                    raise


def _send(config_name: str, what: str, recipients: Sequence[str], smtp_connection_id: str, email: Email) -> bool:
    if not recipients:
        log.warning("%s has no failure_emails configured: the %s was not sent (%s)", config_name, what, email.subject)
        return False
    send_email(smtp_connection_id, recipients, email)
    log.info("Sent the %s to %s: %s", what, ", ".join(recipients), email.subject)
    return True


# ---- the failure email -----------------------------------------------------------------------


def _first_line(reason: str, limit: int = 400) -> str:
    line = reason.strip().splitlines()[0] if reason.strip() else "no reason was recorded"
    return line if len(line) <= limit else line[:limit].rstrip() + " ..."


def _service(stage: str) -> str:
    if stage.startswith("extract_") or stage == "configuration_check":
        return "PowerSchool"
    if stage == "load":
        return "PowerSchool Learning"
    return "the staging database"


def _attempts_at(summary: RunSummary, stage: str) -> list[dict[str, Any]]:
    return [item for item in summary.failed_attempts if stage_name(item["stage"]) == stage]


def _clock(value: Any) -> str:
    return value.strftime("%H:%M UTC") if isinstance(value, datetime) else "?"


def attempts_sentence(summary: RunSummary, retries: int) -> str:
    """How many attempts Airflow made at the failed step, and why it stopped there."""
    stage = stage_name(summary.stage or "")
    attempts = _attempts_at(summary, stage)
    n = len(attempts)
    if n >= 2:
        return (
            f"Airflow made {n} attempts at this step (the first and {n - 1} "
            f"{'retry' if n == 2 else 'retries'}, from {_clock(attempts[0].get('started_at'))} to "
            f"{_clock(attempts[-1].get('finished_at') or attempts[-1].get('started_at'))}) before giving up."
        )
    if stage in ("validation_guard", "safety_guard", "configuration_check"):
        return "Airflow made 1 attempt at this step: it is a check, and a retry would find the same."
    if n == 1 and retries == 0:
        return "Airflow made 1 attempt at this step: the district's task_retries.retries is 0."
    if n == 1:
        return "Airflow made 1 attempt at this step and did not retry: a retry cannot fix this, a person has to."
    return "Airflow recorded no attempt of this step: its task stopped before it could report (see its log)."


def what_to_do(summary: RunSummary, dag_id: str, retries: int) -> str:
    """The first sentence: what a district admin can do about this failure."""
    stage = stage_name(summary.stage or "")
    reason = summary.error or ""
    if stage == "validation_guard":
        return (
            f"Correct the rejected rows in PowerSchool (the most common reasons are below; every one is in the "
            f"staged table rejected_rows), then trigger {dag_id} again: nothing was sent to Learning."
        )
    if stage == "approval":
        return (
            "Nothing was sent to Learning: the mass changes this run found were not approved (see the reason). "
            f"Trigger {dag_id} again to be asked about the changes as they are then."
        )
    if stage == "safety_guard":
        return (
            f"Check the changes below: if they are expected (for example at the end of a school year), trigger "
            f"{dag_id} again with approve_mass_changes=true; otherwise correct PowerSchool first. "
            "Nothing was sent to Learning."
        )
    if len(_attempts_at(summary, stage)) >= 2:
        service = _service(stage)
        return (
            f"{service[0].upper()}{service[1:]} kept failing, so check that it is up and reachable, then "
            f"trigger {dag_id} again (or let the next scheduled import try by itself)."
        )
    return f"Action needed before the next import can succeed: {_first_line(reason)}"


def _learning_state(stage: str) -> str:
    if stage == "load":
        return (
            "PowerSchool Learning may have received part of this run's changes before the failure; the next "
            "run sends the rest, without duplicating anything."
        )
    return "Nothing was changed in PowerSchool Learning: it keeps what the last successful import sent."


def failure_email(summary: RunSummary, config: DistrictConfig) -> Email:
    """The email for a failed import run."""
    stage = stage_name(summary.stage or "")
    in_words = describe_stage(summary.stage)
    dag_id = config.import_dag_id
    blocks: list[Block] = [
        ("p", what_to_do(summary, dag_id, config.task_retries.retries)),
        (
            "p",
            f"The SIS import of {summary.district_name} ({summary.district_id}), run {summary.run_id}, "
            f"{in_words} (step {summary.stage or 'unknown'}). The reason:",
        ),
        ("pre", summary.error or "no reason was recorded"),
        ("p", attempts_sentence(summary, config.task_retries.retries)),
        ("p", _learning_state(stage)),
    ]
    if summary.counts:
        blocks.append(
            (
                "table",
                "Counts so far",
                ["Table", "Counts"],
                [
                    [entity, ", ".join(f"{key} {count}" for key, count in values.items())]
                    for entity, values in sorted(summary.counts.items())
                ],
            )
        )
    if summary.top_rejections:
        blocks.append(
            (
                "list",
                "Most common rejection reasons (table rejected_rows)",
                [
                    f"{item['n']} {item['entity']} row(s), rule {item['rule']}: e.g. {item['example']}"
                    for item in summary.top_rejections
                ],
            )
        )
    if summary.warned:
        blocks.append(
            (
                "list",
                f"Warnings: {summary.warned} field(s) imported without their value (not rejections; "
                "never counted toward the thresholds; table validation_warnings)",
                [
                    f"{item['n']} {item['entity']} row(s), rule {item['rule']} ({item['field']}): "
                    f"e.g. {item['example']}"
                    for item in summary.top_warnings
                ],
            )
        )
    if summary.validation_docs:
        blocks.append(("p", f"Validation results (Data Docs): {summary.validation_docs}"))
    if summary.run_url:
        blocks.append(("link", "Open this run in Airflow", summary.run_url))
    subject = f"{SUBJECT_PREFIX} {summary.district_name}: {in_words}"
    return _email(subject, f"{summary.district_name} ({summary.district_id}): the SIS import {in_words}", blocks)


def send_failure_email(config: DistrictConfig, summary: RunSummary) -> bool:
    """Send the failure email; returns False (and logs) when no recipient is configured."""
    return _send(
        f"District {config.district_id}",
        "failure email",
        config.notifications.failure_emails,
        config.notifications.smtp_connection_id,
        failure_email(summary, config),
    )


# ---- the approval refused email ---------------------------------------------------------------


def approval_refused_email(config: DistrictConfig, summary: RunSummary, review: Any) -> Email:
    """A run the safety guard stopped was rejected, or nobody answered in time: nothing was loaded."""
    from sis_learning.approval import finding_rows

    dag_id = config.import_dag_id
    hours = f"{config.safety.approval_timeout_hours:g}"
    if review.status == "rejected":
        headline = f"mass changes rejected by {review.decided_by}; nothing was loaded"
        what = f"{review.decided_by} rejected them in the Airflow UI"
    else:
        headline = f"nobody approved the mass changes within {hours} hour(s); nothing was loaded"
        what = f"nobody approved or rejected them in the Airflow UI within {hours} hour(s)"
    blocks: list[Block] = [
        (
            "p",
            "Nothing was sent to PowerSchool Learning: it keeps what the last successful import sent. If these "
            "changes are expected (for example at the end of a school year), approve them when the next run asks "
            f"(it finds them again and waits), or trigger {dag_id} with approve_mass_changes=true; if not, correct "
            "PowerSchool first.",
        ),
        (
            "p",
            f"The SIS import of {config.name} ({config.district_id}), run {summary.run_id}, would have sent "
            f"{review.rows:,} change(s), and the safety guard stopped it for a person to decide: {what}.",
        ),
        (
            "table",
            "What the safety guard saw, per school (every row is in the staged table change_set)",
            ["School", "What", "Rows", "Of", "Share", "Examples"],
            [
                [row["school"], row["what"], row["rows"], row["of"], row["share"], row["examples"].replace("`", "")]
                for row in finding_rows(list(review.findings or []))
            ],
        ),
    ]
    if summary.run_url:
        blocks.append(("link", "Open this run in Airflow", summary.run_url))
    subject = f"{SUBJECT_PREFIX} {config.name}: {headline}"
    return _email(subject, f"{config.name} ({config.district_id}): {headline}", blocks)


def send_approval_refused_email(config: DistrictConfig, summary: RunSummary, review: Any) -> bool:
    return _send(
        f"District {config.district_id}",
        "approval refused email",
        config.notifications.failure_emails,
        config.notifications.smtp_connection_id,
        approval_refused_email(config, summary, review),
    )


# ---- the configuration error email -----------------------------------------------------------


def config_error_email(district_id: str, source_file: str, error: str) -> Email:
    """The email for a district file that cannot be used (no run can start)."""
    dag_url = f"{airflow_base_url(None)}/dags/sis_import__{district_id}"
    blocks: list[Block] = [
        (
            "p",
            f"Correct the district file {source_file}: this district's imports and grade push do not run until "
            f"it is fixed. {_first_line(error)}",
        ),
        ("p", "What is wrong:"),
        ("pre", error),
        (
            "p",
            "Other districts are not affected. You get this email once per distinct error; Airflow makes 1 "
            "attempt per scheduled run, since a retry cannot fix a file.",
        ),
        ("link", "The district's DAG in Airflow", dag_url),
    ]
    subject = f"{SUBJECT_PREFIX} {district_id}: the district configuration has an error; imports are stopped"
    return _email(subject, f"{district_id}: the district configuration cannot be used", blocks)


def send_config_error_email(
    recipients: tuple[str, ...], smtp_connection_id: str, district_id: str, source_file: str, error: str
) -> bool:
    return _send(
        source_file,
        "configuration error email",
        recipients,
        smtp_connection_id,
        config_error_email(district_id, source_file, error),
    )


# ---- the grade-push refusal email ------------------------------------------------------------

REFUSAL_ROWS = 500


def refusal_email(config: DistrictConfig, summary: PushSummary) -> Email:
    """What PowerTeacher refused or kept in one grade-push run (scores, assignments)."""
    scores = [item for item in summary.refusals if not item.get("kind")]
    kept = [item for item in summary.refusals if item.get("kind")]
    parts = []
    if scores:
        parts.append(f"PowerTeacher refused {len(scores)} score(s)")
    if kept:
        parts.append(f"{len(kept)} assignment change(s) not made")
    blocks: list[Block] = []
    if scores:
        blocks.append(
            (
                "p",
                f"Correct the cause PowerTeacher gives below for each of these {len(scores)} score(s) "
                "(in PowerTeacher, or the gradable in Learning), then enter the score again in Learning: "
                "it is pushed with its next change. Every other score of the run was written.",
            )
        )
        blocks.append(
            (
                "table",
                "Scores PowerTeacher refused (table grade_push_scores, status 'refused')",
                ["Class (section DCID)", "Gradable", "Student DCID", "Score", "PowerTeacher said"],
                [
                    [
                        item.get("class_id"),
                        item.get("title") or item.get("gradable_id"),
                        item.get("student_id"),
                        item.get("score"),
                        item.get("message"),
                    ]
                    for item in scores[:REFUSAL_ROWS]
                ],
            )
        )
        if len(scores) > REFUSAL_ROWS:
            blocks.append(
                ("p", f"... and {len(scores) - REFUSAL_ROWS} more (table grade_push_scores, status 'refused').")
            )
    if kept:
        blocks.append(
            (
                "p",
                "These gradables changed in Learning but their PowerTeacher assignment was left as it is; "
                "change it in PowerTeacher by hand if needed (table grade_push_assignments, column message).",
            )
        )
        blocks.append(
            (
                "table",
                "Assignment changes not made",
                ["Class (section DCID)", "Gradable", "What", "Why"],
                [
                    [
                        item.get("class_id"),
                        item.get("title") or item.get("gradable_id"),
                        item.get("kind"),
                        item.get("message"),
                    ]
                    for item in kept[:REFUSAL_ROWS]
                ],
            )
        )
    counts = {
        key: value
        for key, value in summary.as_dict().items()
        if isinstance(value, int) and value and key not in ("cursor_before", "cursor_after")
    }
    blocks.append(
        (
            "p",
            f"Grade push run {summary.run_id}: "
            + (
                ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in counts.items())
                or "nothing else happened"
            )
            + ".",
        )
    )
    blocks.append(("link", "Open this run in Airflow", run_url(config, config.grade_push_dag_id, summary.run_id)))
    subject = f"{SUBJECT_PREFIX} {config.name}: {', '.join(parts)} in grade push run {summary.run_id}"
    return _email(subject, f"{config.name} ({config.district_id}): grade push refusals", blocks)


def send_refusal_email(config: DistrictConfig, summary: PushSummary) -> bool:
    """Send the refusal email when the run had refusals; False when there were none or no recipient."""
    if not summary.refusals:
        return False
    return _send(
        f"District {config.district_id}",
        "grade push refusal email",
        config.notifications.failure_emails,
        config.notifications.smtp_connection_id,
        refusal_email(config, summary),
    )


# ---- the preview email -----------------------------------------------------------------------

PREVIEW_ACTIONS = ("create", "update", "deactivate", "remove", "unchanged")


def preview_email(config: DistrictConfig, preview: dict[str, Any], report_path: str, link: str | None) -> Email:
    """What a preview run found the next import would send (``preview.py``'s summary.json)."""
    blocks: list[Block] = [
        (
            "p",
            f"Run {preview.get('run_id')} was a preview: nothing was sent to PowerSchool Learning. If an import "
            f"ran now it would send {preview.get('rows', 0)} row(s):",
        ),
        (
            "table",
            "What the import would do, per entity",
            ["Entity", *(a.capitalize() for a in PREVIEW_ACTIONS)],
            [
                [entity, *(counts.get(action, 0) for action in PREVIEW_ACTIONS)]
                for entity, counts in (preview.get("totals") or {}).items()
            ],
        ),
    ]
    findings = preview.get("safety_findings") or []
    if findings:
        blocks.append(
            (
                "list",
                "The safety guard would stop this import until someone approves it (approve_mass_changes=true):",
                [
                    f"{item.get('entity')}: {item.get('rows')} of {item.get('previous_rows')} "
                    f"({item.get('kind', '').replace('_', ' ')}), "
                    f"e.g. {', '.join(map(str, item.get('examples') or []))}"
                    for item in findings
                ],
            )
        )
    blocks.append(("p", f"The full report, per school with examples and a CSV per entity: {report_path}"))
    if link:
        blocks.append(("link", "Open this run in Airflow", link))
    subject = f"{SUBJECT_PREFIX} {config.name}: preview of the next import (nothing was sent)"
    return _email(subject, f"{config.name} ({config.district_id}): what the next import would do", blocks)


def send_preview_email(config: DistrictConfig, preview: dict[str, Any], report_path: str, link: str | None) -> bool:
    return _send(
        f"District {config.district_id}",
        "preview email",
        config.notifications.failure_emails,
        config.notifications.smtp_connection_id,
        preview_email(config, preview, report_path, link),
    )
