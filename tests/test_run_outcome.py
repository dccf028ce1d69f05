"""A run's outcome is its final state; errors are typed once; no row values in errors.

The task bodies (``import_tasks.run_step``, ``start_run``, ``report``) are called as the
DAG's tasks call them, on a real staging database, outside a scheduler. The killed run
is a real process, SIGKILLed while its stage is running.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, text

from sandbox.smtp import running_smtp
from sis_learning import exceptions, import_tasks
from sis_learning.staging.base import create_all, get_engine
from sis_learning.staging.runs import get_run, run_attempts

REPO_ROOT = Path(__file__).resolve().parents[1]
DISTRICT = "demo"
DAG_ID = "sis_import__demo"


@pytest.fixture
def staging(staging_url, monkeypatch):
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", staging_url)
    engine = create_all(get_engine(staging_url))
    yield engine
    from sis_learning.staging import base

    base._ENGINES.pop(staging_url, None)
    engine.dispose()


@pytest.fixture
def smtp(monkeypatch):
    from sis_learning.config import load_district_by_id

    config = load_district_by_id(DISTRICT)
    with running_smtp() as server:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{config.notifications.smtp_connection_id.upper()}", server.airflow_connection_uri()
        )
        yield server


# ---- one exceptions module -------------------------------------------------------------------


def test_every_error_is_fatal_or_retryable_by_type_and_old_imports_still_work():
    classes = [
        cls
        for _, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == exceptions.__name__
    ]
    assert len(classes) >= 20
    for cls in classes:
        if cls in (exceptions.SisLearningError, exceptions.FatalError, exceptions.RetryableError, exceptions.ApiError):
            continue
        assert issubclass(cls, exceptions.FatalError) != issubclass(cls, exceptions.RetryableError), cls
        assert issubclass(cls, exceptions.FatalError) == issubclass(cls, AirflowFailException), cls
        assert cls.__doc__ and cls.__doc__.strip(), cls
    from sis_learning.config import DistrictConfigError
    from sis_learning.diff import MassChangeDetected
    from sis_learning.extract import UnknownSchoolError
    from sis_learning.hooks.http_client import ApiError, AuthenticationError
    from sis_learning.secrets import SecretReferenceError
    from sis_learning.validate import ValidationThresholdExceeded

    assert DistrictConfigError is exceptions.DistrictConfigError and ApiError is exceptions.ApiError
    assert AuthenticationError is exceptions.AuthenticationError
    for fatal in (SecretReferenceError, ValidationThresholdExceeded, MassChangeDetected, UnknownSchoolError):
        assert issubclass(fatal, exceptions.FatalError), fatal
    assert not hasattr(import_tasks, "FATAL_ERRORS"), "fatal errors are decided by type, not by a list of names"


def test_a_missing_secret_fails_the_task_at_once(staging, monkeypatch):
    """A missing default password: no retry can create the variable, so the task must not retry."""
    from sis_learning.secrets import resolve_secret

    monkeypatch.delenv("NO_SUCH_DEFAULT_PASSWORD", raising=False)
    run_id = "manual__secret"
    import_tasks.start_run(DISTRICT, run_id, DAG_ID)
    with pytest.raises(AirflowFailException) as raised:
        import_tasks.run_step(
            "load", DISTRICT, run_id, lambda engine, config: resolve_secret("env:NO_SUCH_DEFAULT_PASSWORD")
        )
    assert "NO_SUCH_DEFAULT_PASSWORD" in str(raised.value)


# ---- the run's outcome is its final state ----------------------------------------------------


def _fails_once():
    calls = {"n": 0}

    def work(engine, config):
        calls["n"] += 1
        if calls["n"] == 1:
            raise exceptions.ApiError(
                None,
                "PowerSchool Learning did not answer POST users/batch (ConnectionError)",
                "https://learning.invalid/api/v1/users/batch",
                method="POST",
            )
        return {"counts": {}}

    return work


def test_a_stage_that_succeeds_on_retry_makes_a_successful_run_without_email(staging, smtp):
    run_id = "manual__retry"
    import_tasks.start_run(DISTRICT, run_id, DAG_ID)
    work = _fails_once()
    with pytest.raises(exceptions.ApiError):
        import_tasks.run_step("load", DISTRICT, run_id, work)  # attempt 1: Airflow retries the task
    import_tasks.run_step("load", DISTRICT, run_id, work)  # attempt 2 succeeds
    result = import_tasks.report(DISTRICT, run_id, DAG_ID)
    assert result["status"] == "success"
    run = get_run(staging, DISTRICT, run_id)
    assert (run.status, run.error) == ("success", None)
    history = [(a.stage, a.attempt, a.status) for a in run_attempts(staging, DISTRICT, run_id) if a.stage == "load"]
    assert history == [("load", 1, "failed"), ("load", 2, "succeeded")]
    time.sleep(0.5)
    assert smtp.mailbox.messages == [], "a run that succeeded sends no failure email"


def test_the_failed_step_is_named_even_when_a_parallel_step_finishes_later(staging, smtp):
    run_id = "manual__parallel"
    import_tasks.start_run(DISTRICT, run_id, DAG_ID)

    def broken(engine, config):
        raise exceptions.ApiError(500, "PowerSchool answered 500 for /ws/v1/district/student", "https://ps/x")

    with pytest.raises(exceptions.ApiError):
        import_tasks.run_step("extract_students", DISTRICT, run_id, broken)
    import_tasks.run_step("extract_sections", DISTRICT, run_id, lambda engine, config: {"rows": 3})
    with pytest.raises(AirflowFailException) as raised:
        import_tasks.report(DISTRICT, run_id, DAG_ID)
    assert "Run failed at extract_students" in str(raised.value)
    [message] = smtp.mailbox.wait_for(1)
    assert "could not read students from PowerSchool" in message["Subject"]


KILLED_STAGE = """
import sys, time
from sis_learning import import_tasks
def work(engine, config):
    print("in load", flush=True)
    time.sleep(600)
import_tasks.run_step("load", "demo", sys.argv[1], work)
"""


def test_a_killed_run_is_marked_abandoned_by_the_next_run_which_says_so(staging, staging_url):
    killed_run, next_run = "scheduled__killed", "scheduled__next"
    import_tasks.start_run(DISTRICT, killed_run, DAG_ID)
    import_tasks.run_step("extract_schools", DISTRICT, killed_run, lambda engine, config: {"rows": 4})
    env = {**os.environ, "SIS_LEARNING_STAGING_URL": staging_url, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}"}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_STAGE, killed_run], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "in load"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert get_run(staging, DISTRICT, killed_run).status == "running"  # nobody reported

    started = import_tasks.start_run(DISTRICT, next_run, DAG_ID)
    assert started["abandoned_runs"] == 1
    killed = get_run(staging, DISTRICT, killed_run)
    assert (killed.status, killed.stage) == ("abandoned", "load")
    assert next_run in killed.error and "load" in killed.error
    assert [(a.stage, a.status) for a in run_attempts(staging, DISTRICT, killed_run)] == [
        ("configuration_check", "succeeded"),
        ("extract_schools", "succeeded"),
        ("load", "killed"),
    ]

    import_tasks.run_step("load", DISTRICT, next_run, lambda engine, config: {"counts": {}})
    assert import_tasks.report(DISTRICT, next_run, DAG_ID)["status"] == "success"
    from sis_learning.config import load_district_by_id
    from sis_learning.report import build_summary, format_text

    text_report = format_text(build_summary(staging, load_district_by_id(DISTRICT), next_run, DAG_ID))
    assert f"previous run {killed_run} was abandoned in load" in text_report


# ---- no personal data in errors --------------------------------------------------------------

PEOPLE = [(f"Person{n} Surname{n}", f"person{n}@students.demo-usd.org") for n in range(12)]


def test_a_database_error_names_table_constraint_and_count_but_no_row_values(staging, smtp, caplog):
    run_id = "manual__integrity"
    table = Table(
        "stg_people_probe",
        MetaData(),
        Column("id", Integer, nullable=False),
        Column("name", String(80)),
        Column("email", String(120)),
    )
    table.create(staging, checkfirst=True)
    import_tasks.start_run(DISTRICT, run_id, DAG_ID)

    def work(engine, config):
        rows = [{"id": n if n != 5 else None, "name": name, "email": email} for n, (name, email) in enumerate(PEOPLE)]
        with engine.begin() as connection:
            connection.execute(insert(table), rows)

    with caplog.at_level(logging.INFO), pytest.raises(exceptions.StagingDataError) as raised:
        import_tasks.run_step("extract_students", DISTRICT, run_id, work)
    message = str(raised.value)
    assert "stg_people_probe" in message and "NOT NULL" in message and "12 row(s)" in message, message
    assert "extract_students" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__

    with pytest.raises(AirflowFailException):
        import_tasks.report(DISTRICT, run_id, DAG_ID)
    [email] = smtp.mailbox.wait_for(1)
    body = email.get_body(preferencelist=("html", "plain")).get_content()
    with staging.connect() as connection:
        stored = " ".join(
            str(v)
            for row in connection.execute(
                text("SELECT error FROM sync_runs UNION ALL SELECT error FROM sync_run_attempts")
            )
            for v in row
        )
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for name, address in PEOPLE:
        for where, content in (("error", message), ("email", body), ("sync_runs", stored), ("log", logged)):
            assert name not in content and address not in content, f"{where} carries a row value"
    assert "could not read students from PowerSchool" in email["Subject"]
