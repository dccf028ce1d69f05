"""What an operator reads in the task logs: one summary line per task, no noise.

A real DAG run (dag.test(): real Airflow tasks, in this process) of the demo district,
with every log record of the run captured: each step logs one human sentence with its
counts and where the details are; Great Expectations' import chatter ("Skipping
registering function ...") and our own dict dumps are gone, and no task has Airflow log
its return value ("Done. Returned value was: {...}", a dict of counts). A task process
(plugin loading, as the task runner does it, with the environment `make` gives every
command) prints no deprecation warning.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess

import pytest

from tests.e2e.conftest import REPO_ROOT, run_dag

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

DICT_DUMP = re.compile(r"\{'[a-z_]+': ")


def test_each_step_logs_one_summary_line_and_nothing_an_operator_cannot_use(import_dag, sandboxes, caplog):
    caplog.set_level(logging.INFO)  # the level a deployment runs at; loggers that ask for less keep it
    dag_run, _ = run_dag(import_dag)
    assert dag_run.state == "success"
    records = [record for record in caplog.records if record.levelno >= logging.INFO]
    messages = [record.getMessage() for record in records]
    ours = [
        message for record, message in zip(records, messages, strict=True) if record.name.startswith("sis_learning")
    ]

    assert not [m for m in messages if "Skipping registering function" in m]
    assert not [r.name for r in records if r.name.startswith("great_expectations") and r.levelno < logging.WARNING]
    assert not [m for m in ours if DICT_DUMP.search(m)], [m for m in ours if DICT_DUMP.search(m)][:3]
    assert not [m for m in messages if "deprecated" in m.lower()], [m for m in messages if "deprecated" in m.lower()]

    def one(pattern: str) -> str:
        found = [m for m in ours if re.search(pattern, m)]
        assert len(found) == 1, (pattern, found, ours)
        return found[0]

    students = one(r"^Read \d+ students from PowerSchool in \d+ request")
    assert "stg_students" in students and "extract_counts" in students
    validated = one(r"^Checked [\d,]+ rows: [\d,]+ passed, [\d,]+ rejected \(rejected_rows\)")
    assert "Data Docs: " in validated and "data_docs/index.html" in validated
    one(r"^Every entity is within its rejection threshold")
    one(r"^Built the rows Learning should hold: organizations \d+; users \d+")
    one(r"^Changes to send to Learning: organizations \d+ create")
    one(r"^No mass change and no Import ID change")
    one(r"^Sent [\d,]+ row\(s\) to Learning in \d+ request\(s\): organizations \d+ created")
    report = one(r"^District Demo Unified School District \(demo\), run .*: success")
    assert "Changes sent to Learning:" in report


def test_no_task_logs_its_return_value():
    """Airflow's operator logger is structlog's own (not captured above): held by the tasks' setting."""
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    assert not dagbag.import_errors, dagbag.import_errors
    tasks = [task for dag_id in ("sis_import__demo", "grade_push__demo") for task in dagbag.dags[dag_id].tasks]
    assert len(tasks) > 10
    # Only Python tasks log their return value (the setting is theirs); the approval tasks
    # (load.approve_mass_changes*, the provider's ApprovalOperator) log none.
    python_tasks = [task for task in tasks if hasattr(task, "show_return_value_in_logs")]
    assert len(python_tasks) > 10 and len(tasks) - len(python_tasks) == 3
    assert [task.task_id for task in python_tasks if task.show_return_value_in_logs] == []


def test_a_task_process_prints_no_deprecation_warning():
    """The task runner loads the plugins folder (plugins/.airflowignore) first: not a warning."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    load = "from airflow.sdk.plugins_manager import _get_plugins; print('plugin errors', _get_plugins()[1])"
    result = subprocess.run(
        ["bash", "-c", f'source scripts/airflow-env.sh && .venv/bin/python -c "{load}"'],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "plugin errors {}" in result.stdout
    output = result.stdout + result.stderr
    assert "deprecated" not in output.lower() and "Warning" not in output, output
