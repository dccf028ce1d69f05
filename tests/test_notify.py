"""The failure email, sent through the Airflow SMTP provider to a real SMTP server."""

from __future__ import annotations

import pytest

from sandbox.smtp import running_smtp
from sis_learning.config import load_district_by_id
from sis_learning.notify import compose_failure_email, send_failure_email
from sis_learning.report import build_summary, format_text
from sis_learning.staging.base import create_all, get_engine
from sis_learning.staging.runs import record_stage, start_run


@pytest.fixture
def failed_run(sqlite_url):
    engine = create_all(get_engine(sqlite_url))
    start_run(engine, "demo", "manual__2026-11-29T06:00:00+00:00", dag_id="sis_import__demo")
    record_stage(engine, "demo", "manual__2026-11-29T06:00:00+00:00", "extract_students",
                 counts={"schools": {"extracted": 4}, "students": {"extracted": 512}}, seconds=3.2)
    record_stage(engine, "demo", "manual__2026-11-29T06:00:00+00:00", "validation_guard",
                 error="students: 9.1% of rows failed rule login_present (threshold 5.0%). Examples: student 4001: no username")
    return engine


def test_failure_email_arrives_with_what_a_district_needs(failed_run, monkeypatch):
    config = load_district_by_id("demo")
    summary = build_summary(failed_run, config, "manual__2026-11-29T06:00:00+00:00")
    with running_smtp() as smtp:
        monkeypatch.setenv(f"AIRFLOW_CONN_{config.notifications.smtp_connection_id.upper()}", smtp.airflow_connection_uri())
        assert send_failure_email(config, summary) is True
        [message] = smtp.mailbox.wait_for(1)
    assert message["To"] == "sis-admin@demo-usd.org"
    assert "Demo Unified School District" in message["Subject"]
    assert "validation_guard" in message["Subject"]
    body = message.get_body(preferencelist=("html", "plain")).get_content()
    assert "login_present" in body and "threshold 5.0%" in body  # the reason in plain words
    assert "students" in body and "512" in body  # the counts so far
    assert "/dags/sis_import__demo/runs/manual__2026-11-29T06%3A00%3A00%2B00%3A00" in body  # link to the run


def test_no_recipients_means_no_email_and_no_error(failed_run, monkeypatch):
    config = load_district_by_id("demo")
    config = config.model_copy(update={"notifications": config.notifications.model_copy(update={"failure_emails": ()})})
    summary = build_summary(failed_run, config, "manual__2026-11-29T06:00:00+00:00")
    assert send_failure_email(config, summary) is False


def test_email_escapes_html_from_data(failed_run):
    config = load_district_by_id("demo")
    summary = build_summary(failed_run, config, "manual__2026-11-29T06:00:00+00:00")
    summary.error = "<script>alert(1)</script>"
    _, body = compose_failure_email(summary)
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert "Failed at validation_guard" in format_text(summary)


def test_warnings_are_counted_apart_from_rejections_in_the_report_and_the_email():
    from sis_learning.notify import compose_failure_email
    from sis_learning.report import RunSummary, format_text

    summary = RunSummary(district_id="demo", district_name="Demo", run_id="r1", status="failed", stage="load",
                         error="boom", warned=7,
                         top_warnings=[{"entity": "students", "rule": "email_format", "field": "email", "n": 7,
                                        "example": "the email address 'none' is not a valid email address"}])
    text = format_text(summary)
    assert "Warnings (imported without the value; never counted toward thresholds): 7" in text
    assert "7 x students / email_format (email)" in text
    _subject, body = compose_failure_email(summary)
    assert "<b>Warnings:</b> 7 field(s) imported without their value" in body
    assert "rejection" not in body.split("<b>Warnings:</b>")[1].split("</p>")[0].replace("not rejections", "")
