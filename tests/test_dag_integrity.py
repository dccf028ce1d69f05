"""DAG integrity: every DAG imports, parses fast, and carries what operators rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO_ROOT / "dags"

HEAVY_MODULES = ("pandas", "great_expectations", "sqlalchemy.orm", "sis_learning.extract", "sis_learning.validate")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return (
        DagBag(dag_folder=str(DAGS_DIR), include_examples=False)
        if "include_examples" in DagBag.__init__.__code__.co_varnames
        else DagBag(dag_folder=str(DAGS_DIR))
    )


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "sis_import__demo" in dagbag.dags


def test_every_dag_has_the_operational_settings(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.owner and dag.owner != "airflow", dag_id
        assert dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag_id
        # Imports run one at a time; grade push runs may overlap (its ledger lease keeps writes one at a time).
        assert dag.max_active_runs == (8 if dag_id.startswith("grade_push__") else 1), dag_id
        assert dag.catchup is False, dag_id
        for task in dag.tasks:
            if task.task_id.endswith(("report", "check_thresholds", "check_mass_changes")):
                assert task.retries == 0, f"{dag_id}.{task.task_id}: a guard or the report must not retry"
                continue
            assert task.retries >= 2, f"{dag_id}.{task.task_id}"
            assert task.retry_exponential_backoff, f"{dag_id}.{task.task_id}"


def test_import_dag_shape(dagbag):
    dag = dagbag.dags["sis_import__demo"]
    groups = {task.task_id.split(".")[0] for task in dag.tasks if "." in task.task_id}
    assert {"extract", "validate", "transform", "load", "report"} <= groups
    extract = {t.task_id for t in dag.tasks if t.task_id.startswith("extract.")}
    for entity in (
        "schools",
        "terms",
        "courses",
        "sections",
        "staff",
        "students",
        "section_enrollments",
        "section_teachers",
        "guardians",
    ):
        assert f"extract.extract_{entity}" in extract
    report = dag.get_task("report.report")
    assert report.trigger_rule == "all_done"
    assert "approve_mass_changes" in dag.params


def test_a_stopped_run_waits_in_a_human_in_the_loop_approval(dagbag):
    from datetime import timedelta

    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from sis_learning.approval_operator import APPROVAL_TASK_IDS

    dag = dagbag.dags["sis_import__demo"]
    asks = [dag.get_task(f"load.{task_id}") for task_id in APPROVAL_TASK_IDS]
    upstream = "load.check_mass_changes"
    for ask in asks:
        assert isinstance(ask, ApprovalOperator)
        assert ask.response_timeout == timedelta(hours=24)  # demo.yaml leaves safety.approval_timeout_hours at 24
        assert ask.upstream_task_ids == {upstream}
        assert not ask.fail_on_reject and not ask.ignore_downstream_trigger_rules  # the report still runs
        upstream = ask.task_id
    assert asks[-1].downstream_task_ids == {"load.load_learning"}
    assert [ask.last_ask for ask in asks] == [False, False, True]


def test_the_approval_deadline_is_the_district_setting(tmp_path, monkeypatch):
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag

    text = (REPO_ROOT / "include" / "districts" / "demo.yaml").read_text()
    (tmp_path / "demo.yaml").write_text(text.replace("safety:\n", "safety:\n  approval_timeout_hours: 2.5\n"))
    import sis_learning.config

    monkeypatch.setattr(sis_learning.config, "DISTRICTS_DIR", tmp_path)
    bag = DagBag(dag_folder=str(DAGS_DIR / "sis_import.py"))
    assert bag.import_errors == {}
    dag = bag.dags["sis_import__demo"]
    assert dag.get_task("load.approve_mass_changes").response_timeout == timedelta(hours=2.5)
    assert "at most\n   2.5 h" in dag.doc_md


def test_schedule_is_06_and_18_local_across_daylight_saving(dagbag):
    from zoneinfo import ZoneInfo

    dag = dagbag.dags["sis_import__demo"]
    zone = ZoneInfo("America/Chicago")
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable as CoreCron

    timetable = CoreCron("0 6,18 * * *", timezone="America/Chicago")
    assert str(dag.timetable.expression) == "0 6,18 * * *"
    # Walk across the November 2026 fall-back change: every run stays at 06:00/18:00 local.
    last = DataInterval.exact(datetime(2026, 10, 31, 18, 0, tzinfo=zone))
    seen = []
    for _ in range(6):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last, restriction=TimeRestriction(None, None, True)
        )
        local = info.run_after.in_timezone("America/Chicago")
        seen.append((local.day, local.hour))
        last = info.data_interval
    assert seen == [(1, 6), (1, 18), (2, 6), (2, 18), (3, 6), (3, 18)]


def _parse_in_fresh_process(districts_dir: Path | None = None) -> dict:
    code = f"""
import json, sys, time
import airflow.sdk  # the framework's own import time is not the DAG file's
before = set(sys.modules)
start = time.process_time()  # CPU time: wall time measures the busy machine, not the parse
import runpy
namespace = runpy.run_path({str(DAGS_DIR / "sis_import.py")!r})
elapsed = time.process_time() - start
dags = [value for value in namespace.values() if type(value).__name__ == "DAG"]
broken = [dag for dag in dags if "configuration-error" in dag.tags]
heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules and m not in before]
print(json.dumps({{"seconds": elapsed, "heavy": heavy, "dags": len(dags), "broken": len(broken)}}))
"""
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}"}
    if districts_dir:
        env["SIS_LEARNING_DISTRICTS_DIR"] = str(districts_dir)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_file_parses_fast_and_without_heavy_imports():
    result = _parse_in_fresh_process()
    assert result["heavy"] == [], f"the DAG file imported heavy modules at parse time: {result['heavy']}"
    assert result["seconds"] < 2.0, f"parse took {result['seconds']:.2f}s of CPU"


def test_dag_file_with_many_districts_parses_under_two_seconds(tmp_path):
    demo = (REPO_ROOT / "include" / "districts" / "demo.yaml").read_text()
    for index in range(20):  # each district with its own connections (sharing one is a configuration error)
        (tmp_path / f"district_{index:03d}.yaml").write_text(
            demo.replace("powerschool_demo", f"powerschool_{index}").replace("learning_demo", f"learning_{index}")
        )
    result = _parse_in_fresh_process(tmp_path)
    assert result["dags"] == 20 and result["broken"] == 0, result
    assert result["seconds"] < 2.0, f"20 districts took {result['seconds']:.2f}s of CPU to parse"


def test_dag_files_do_no_io_at_module_level():
    """DAG files must not open connections, Variables or the network at parse time."""
    forbidden = ("BaseHook.get_connection", "Variable.get", "requests.", "create_engine", "open(")
    for path in DAGS_DIR.glob("*.py"):
        text = path.read_text()
        for needle in forbidden:
            assert needle not in text, f"{path.name} contains {needle!r}"


def test_retry_delay_grows(dagbag):
    task = dagbag.dags["sis_import__demo"].get_task("extract.extract_students")
    assert task.retry_delay == timedelta(seconds=30)
    assert task.max_retry_delay is not None


def test_airflow_does_not_load_the_package_files_as_plugins():
    """Airflow imports every .py under plugins/ as a top-level module named after the file;
    plugins/.airflowignore keeps the package out, or sis_learning/secrets.py would replace the
    standard library's ``secrets`` (and every model module would be executed twice)."""
    from airflow._shared.module_loading import find_path_from_directory

    loaded = [
        path
        for path in find_path_from_directory(str(REPO_ROOT / "plugins"), ".airflowignore", "glob")
        if path.endswith(".py")
    ]
    assert not [path for path in loaded if "/sis_learning/" in path]
