"""The failure email: one message per failed run to the district's contacts.

It says the district, the step that failed, the reason in plain words, the counts so
far, the most common rejection reasons and a link to the run in the Airflow UI. Sent
through the Airflow SMTP provider with the district's SMTP connection. No secret ever
goes into it: reasons come from our own exception messages, which never carry one.
"""

from __future__ import annotations

import html
import logging

from sis_learning.config import DistrictConfig
from sis_learning.report import RunSummary

log = logging.getLogger(__name__)


def compose_failure_email(summary: RunSummary) -> tuple[str, str]:
    """Subject and HTML body for a failed run."""
    subject = f"[SIS -> Learning] {summary.district_name}: import failed at {summary.stage or 'an unknown step'}"
    esc = html.escape
    parts = [
        f"<h2>{esc(summary.district_name)} ({esc(summary.district_id)}): the SIS import failed</h2>",
        f"<p><b>Run:</b> {esc(summary.run_id)}<br><b>Failed step:</b> {esc(summary.stage or 'unknown')}</p>",
        f"<p><b>What happened:</b></p><pre style='white-space:pre-wrap'>{esc(summary.error or 'no reason was recorded')}</pre>",
        "<p>Nothing after the failed step was written to PowerSchool Learning.</p>",
    ]
    if summary.counts:
        rows = "".join(
            f"<tr><td>{esc(entity)}</td><td>{esc(', '.join(f'{stage}: {count}' for stage, count in values.items()))}</td></tr>"
            for entity, values in sorted(summary.counts.items())
        )
        parts.append(f"<p><b>Counts so far:</b></p><table border='1' cellpadding='4'>{rows}</table>")
    if summary.top_rejections:
        items = "".join(
            f"<li>{item['n']} {esc(item['entity'])} row(s), rule <code>{esc(item['rule'])}</code>: e.g. {esc(str(item['example']))}</li>"
            for item in summary.top_rejections
        )
        parts.append(f"<p><b>Most common rejection reasons:</b></p><ul>{items}</ul>")
    if summary.warned:
        items = "".join(
            f"<li>{item['n']} {esc(item['entity'])} row(s), rule <code>{esc(item['rule'])}</code> "
            f"({esc(item['field'])}): e.g. {esc(str(item['example']))}</li>"
            for item in summary.top_warnings
        )
        parts.append(f"<p><b>Warnings:</b> {summary.warned} field(s) imported without their value "
                     f"(not rejections; never counted toward the thresholds)</p><ul>{items}</ul>")
    if summary.validation_docs:
        parts.append(f"<p><b>Validation results:</b> {esc(summary.validation_docs)}</p>")
    if summary.run_url:
        parts.append(f"<p><a href='{esc(summary.run_url)}'>Open this run in Airflow</a>: {esc(summary.run_url)}</p>")
    return subject, "\n".join(parts)


def send_failure_email(config: DistrictConfig, summary: RunSummary) -> bool:
    """Send the failure email; returns False (and logs) when no recipient is configured."""
    recipients = list(config.notifications.failure_emails)
    if not recipients:
        log.warning("District %s has no failure_emails configured: no email sent", config.district_id)
        return False
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    subject, body = compose_failure_email(summary)
    with SmtpHook(smtp_conn_id=config.notifications.smtp_connection_id) as hook:
        hook.send_email_smtp(to=recipients, subject=subject, html_content=body)
    log.info("Failure email for run %s sent to %d recipient(s)", summary.run_id, len(recipients))
    return True


def compose_config_error_email(district_id: str, source_file: str, error: str) -> tuple[str, str]:
    """Subject and HTML body for a district file that cannot be used (no run can start)."""
    esc = html.escape
    subject = f"[SIS -> Learning] {district_id}: the district configuration has an error; imports are stopped"
    body = "\n".join([
        f"<h2>{esc(district_id)}: the district configuration cannot be used</h2>",
        f"<p><b>File:</b> {esc(source_file)}</p>",
        f"<p><b>What is wrong:</b></p><pre style='white-space:pre-wrap'>{esc(error)}</pre>",
        "<p>This district's imports and grade push do not run until the file is fixed; other districts "
        "are not affected. You get this email once per distinct error.</p>",
    ])
    return subject, body


def send_config_error_email(recipients: tuple[str, ...], smtp_connection_id: str, district_id: str,
                            source_file: str, error: str) -> bool:
    if not recipients:
        log.warning("%s: no failure_emails could be read from the file: no email sent", source_file)
        return False
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    subject, body = compose_config_error_email(district_id, source_file, error)
    with SmtpHook(smtp_conn_id=smtp_connection_id) as hook:
        hook.send_email_smtp(to=list(recipients), subject=subject, html_content=body)
    log.info("Configuration error email for %s sent to %d recipient(s)", source_file, len(recipients))
    return True
