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
