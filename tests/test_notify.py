"""The emails, sent through the Airflow SMTP provider to a real SMTP server (the sandbox's aiosmtpd)."""

from __future__ import annotations

import pytest

from sandbox.smtp import running_smtp
from sis_learning.config import load_district_by_id
from sis_learning.notify import config_error_email, failure_email, send_config_error_email, send_failure_email
from sis_learning.report import RunSummary, build_summary, describe_stage, format_text
from sis_learning.staging.base import create_all, get_engine
from sis_learning.staging.runs import ATTEMPT_FAILED, begin_attempt, end_attempt, record_stage, start_run

RUN_ID = "manual__2026-11-29T06:00:00+00:00"
RUN_PATH = "/dags/sis_import__demo/runs/manual__2026-11-29T06%3A00%3A00%2B00%3A00"


def _fail(engine, stage: str, reason: str, attempts: int = 1) -> None:
    for _ in range(attempts):
        attempt = begin_attempt(engine, "demo", RUN_ID, stage)
        end_attempt(engine, attempt, ATTEMPT_FAILED, reason)
    record_stage(engine, "demo", RUN_ID, stage, error=reason)


@pytest.fixture
def engine(sqlite_url):
    engine = create_all(get_engine(sqlite_url))
    start_run(engine, "demo", RUN_ID, dag_id="sis_import__demo")
    record_stage(
        engine,
        "demo",
        RUN_ID,
        "extract_schools",
        counts={"schools": {"extracted": 4}, "students": {"extracted": 512}},
        seconds=3.2,
    )
    return engine


@pytest.fixture
def smtp(monkeypatch):
    config = load_district_by_id("demo")
    with running_smtp() as server:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{config.notifications.smtp_connection_id.upper()}", server.airflow_connection_uri()
        )
        yield server


def parts(message) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    return tuple(
        message.get_body(preferencelist=(kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html")
    )


def test_a_step_that_failed_after_retries_is_named_in_words_with_its_attempts_and_a_link(engine, smtp, monkeypatch):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.demo-usd.org/")
    _fail(
        engine,
        "extract_students",
        "PowerSchool did not answer GET /ws/v1/school/3/student after 6 tries (HTTP 503)",
        attempts=3,
    )
    config = load_district_by_id("demo")
    assert send_failure_email(config, build_summary(engine, config, RUN_ID)) is True
    [message] = smtp.mailbox.wait_for(1)

    assert message["To"] == "sis-admin@demo-usd.org"
    assert message["Subject"] == (
        "[SIS -> Learning] Demo Unified School District: could not read students from PowerSchool"
    )
    text, html = parts(message)
    first_sentence = text.split("\n\n")[0].replace("\n", " ")
    assert first_sentence.startswith(
        "PowerSchool kept failing, so check that it is up and reachable, then trigger sis_import__demo again"
    ), first_sentence
    for body in (text, html):
        assert "Airflow made 3 attempts at this step (the first and 2 retries" in body.replace("\n", " ")
        assert "HTTP 503" in body and "Nothing was changed in PowerSchool Learning" in body.replace("\n", " ")
        assert "students" in body and "512" in body  # the counts so far
        assert f"https://airflow.demo-usd.org{RUN_PATH}" in body  # Airflow's [api] base_url
    assert "<" not in text


def test_a_check_that_stopped_the_run_says_what_to_correct_first(engine, smtp):
    _fail(
        engine,
        "validation_guard",
        "students: 9.1% of rows failed rule login_present (threshold 5.0%). Examples: student 4001: no username",
    )
    config = load_district_by_id("demo")
    config = config.model_copy(
        update={
            "notifications": config.notifications.model_copy(
                update={"airflow_base_url": "https://ops.example.org/airflow"}
            )
        }
    )
    send_failure_email(config, build_summary(engine, config, RUN_ID))
    [message] = smtp.mailbox.wait_for(1)
    assert message["Subject"].endswith("Demo Unified School District: stopped: too many rows failed validation")
    text, html = parts(message)
    assert text.startswith("Correct the rejected rows in PowerSchool")
    for body in (text, html):
        flat = body.replace("\n", " ")
        assert "login_present" in flat and "threshold 5.0%" in flat  # the reason in plain words
        assert "Airflow made 1 attempt at this step: it is a check" in flat
        assert f"https://ops.example.org/airflow{RUN_PATH}" in flat  # the district's own setting wins


def test_an_error_no_retry_can_fix_asks_for_action_and_says_airflow_did_not_retry(engine):
    reason = (
        "PowerSchool refused the credentials of Airflow connection 'powerschool_demo' (HTTP 401 on POST "
        "/oauth/access_token). Check the connection's login and password."
    )
    _fail(engine, "extract_schools", reason)
    config = load_district_by_id("demo")
    email = failure_email(build_summary(engine, config, RUN_ID), config)
    assert email.subject.endswith(": could not read schools from PowerSchool")
    assert email.text.replace("\n", " ").startswith(f"Action needed before the next import can succeed: {reason}")
    assert "Airflow made 1 attempt at this step and did not retry" in email.text.replace("\n", " ")


def test_no_recipients_means_no_email_and_no_error(engine):
    _fail(engine, "load", "Learning answered 500")
    config = load_district_by_id("demo")
    config = config.model_copy(update={"notifications": config.notifications.model_copy(update={"failure_emails": ()})})
    assert send_failure_email(config, build_summary(engine, config, RUN_ID)) is False


def test_email_escapes_html_from_data(engine):
    _fail(engine, "load", "<script>alert(1)</script>")
    config = load_district_by_id("demo")
    summary = build_summary(engine, config, RUN_ID)
    email = failure_email(summary, config)
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "<script>alert(1)</script>" in email.text  # plain text is not HTML
    assert "may have received part of this run's changes" in email.text.replace("\n", " ")
    assert "Failed at load (could not write the changes to PowerSchool Learning)" in format_text(summary)


def test_the_configuration_error_email_has_both_parts(smtp):
    error = "include/districts/x.yaml: invalid district configuration\n  - timezone: unknown time zone 'America/Chicgo'"
    assert (
        send_config_error_email(("sis-admin@demo-usd.org",), "smtp_sandbox", "x", "include/districts/x.yaml", error)
        is True
    )
    [message] = smtp.mailbox.wait_for(1)
    text, html = parts(message)
    assert text.startswith("Correct the district file include/districts/x.yaml")
    assert all("America/Chicgo" in body and "/dags/sis_import__x" in body for body in (text, html))
    assert config_error_email("x", "f.yaml", "e").subject.startswith("[SIS -> Learning] x:")


def test_every_stage_and_task_has_words():
    assert (
        describe_stage("extract_section_enrollments")
        == "could not read class rosters (section enrollments) from PowerSchool"
    )
    assert describe_stage("extract.extract_guardians") == "could not read parents (guardians) from PowerSchool"
    assert describe_stage("load.check_mass_changes") == "stopped before a mass change in Learning (needs approval)"
    assert describe_stage("load.load_learning") == "could not write the changes to PowerSchool Learning"
    assert describe_stage(None) == "failed at a step that was not recorded"


def test_warnings_are_counted_apart_from_rejections_in_the_report_and_the_email():
    summary = RunSummary(
        district_id="demo",
        district_name="Demo",
        run_id="r1",
        status="failed",
        stage="load",
        error="boom",
        warned=7,
        top_warnings=[
            {
                "entity": "students",
                "rule": "email_format",
                "field": "email",
                "n": 7,
                "example": "the email address 'none' is not a valid email address",
            }
        ],
    )
    text = format_text(summary)
    assert "Warnings (imported without the value; never counted toward thresholds): 7" in text
    assert "7 x students / email_format (email)" in text
    email = failure_email(summary, load_district_by_id("demo"))
    assert "Warnings: 7 field(s) imported without their value (not rejections" in email.html
    warning_block = email.text.split("Warnings: 7")[1].split("\n\n")[0]
    assert "rejection" not in warning_block.replace("not rejections", "")


def test_the_staged_warnings_reach_the_report_and_the_failure_email(staging_url, smtp):
    """What validate staged in validation_warnings is what the report and the email count,
    read from staging (SQLite and PostgreSQL), apart from the rejections."""
    from sis_learning.staging.base import bulk_insert
    from sis_learning.staging.quality import RejectedRow, ValidationWarning
    from sis_learning.staging.runs import utcnow

    engine = create_all(get_engine(staging_url))
    start_run(engine, "demo", RUN_ID, dag_id="sis_import__demo")
    _fail(engine, "load", "Learning did not answer")
    now = utcnow()
    common = {"district_id": "demo", "run_id": RUN_ID, "stage": "validate", "created_at": now}
    bulk_insert(
        engine,
        ValidationWarning,
        [
            {
                **common,
                "entity": "students",
                "source_id": str(300 + number),
                "rule": "email_format",
                "field": "email",
                "value": "n/a",
                "reason": "the email address 'n/a' is not a valid email address: imported without an email",
                "action": "cleared",
            }
            for number in range(3)
        ]
        + [
            {
                **common,
                "entity": "students",
                "source_id": "310",
                "rule": "grade_level_present",
                "field": "grade_level",
                "value": None,
                "reason": "the student has no grade level: imported without a user level",
                "action": "cleared",
            }
        ],
    )
    bulk_insert(
        engine,
        RejectedRow,
        [{**common, "entity": "staff", "source_id": "200", "rule": "username_missing", "reason": "no username"}],
    )
    config = load_district_by_id("demo")
    summary = build_summary(engine, config, RUN_ID)
    assert summary.warned == 4
    assert [(item["rule"], item["n"]) for item in summary.top_warnings] == [
        ("email_format", 3),
        ("grade_level_present", 1),
    ]
    assert [(item["rule"], item["n"]) for item in summary.top_rejections] == [("username_missing", 1)]
    text = format_text(summary)
    assert "Warnings (imported without the value; never counted toward thresholds): 4" in text
    assert "3 x students / email_format (email)" in text
    assert send_failure_email(config, summary) is True
    [message] = smtp.mailbox.wait_for(1)
    plain, _html = parts(message)
    assert "Warnings: 4 field(s) imported without their value" in plain
    engine.dispose()


def test_the_sandbox_mailbox_folder_exists_before_any_email(tmp_path):
    """`make airflow` prints the mailbox folder; after a run that succeeds (no email) it must still be there."""
    mailbox = tmp_path / "standalone" / "mailbox"
    with running_smtp(mailbox_dir=mailbox) as server:
        assert mailbox.is_dir() and not any(mailbox.iterdir())
        assert server.mailbox.messages == []
