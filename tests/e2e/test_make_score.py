"""`make score`: a teacher's score entered in Learning reaches PowerTeacher, and the script says so.

After a real import of the demo district (dag.test()), the sandboxes are described in a
sandboxes.json written by `make airflow`'s own writer; scripts/teacher.py (what `make
score` runs) enters a score in Learning's gradebook and waits; grade push runs (its task
body, as the DAG's run triggered by the watcher does); the script sees the score in
PowerTeacher Pro and exits 0. Without a running `make airflow` it says what to start.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import REPO_ROOT, run_dag

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_a_score_entered_by_make_score_reaches_powerteacher(import_dag, sandboxes, tmp_path, monkeypatch):
    from scripts import airflow_standalone
    from sis_learning.grade_push_tasks import push_grades

    dag_run, _ = run_dag(import_dag)
    assert dag_run.state == "success"
    monkeypatch.setattr(airflow_standalone, "SANDBOXES_FILE", tmp_path / "sandboxes.json")
    airflow_standalone.write_sandboxes_file(sandboxes)
    env = {**os.environ, "SIS_LEARNING_SANDBOXES_FILE": str(tmp_path / "sandboxes.json")}
    teacher = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "teacher.py"), "--score", "7", "--wait", "60"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        entered = teacher.stdout.readline()
        assert entered.startswith("Entered 7 for student"), entered
        pushed = push_grades("demo", "manual__after_make_score")
        assert pushed["scores_pushed"] == 1, pushed
        rest = teacher.stdout.read()
        assert teacher.wait(timeout=60) == 0, entered + rest
    finally:
        if teacher.poll() is None:
            teacher.kill()
    assert "PowerTeacher Pro has it after" in rest and ": 7." in rest, rest


def test_make_score_without_make_airflow_says_what_to_start(tmp_path):
    env = {**os.environ, "SIS_LEARNING_SANDBOXES_FILE": str(tmp_path / "none.json")}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "teacher.py")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "start it, trigger sis_import__demo once" in result.stdout
