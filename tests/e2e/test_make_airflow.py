"""`make airflow` as the README says to run it: from a shell with no virtualenv activated.

Starts `make airflow` in its own session (as a terminal would run it), waits for the API
server's health endpoint, logs in with the password Airflow generated, lists both demo
DAGs through the REST API (unpaused); then the README's walk-through: triggers
sis_import__demo, waits for it to succeed, runs `make score` (a teacher's score in Learning)
and waits for it to report the score in PowerTeacher Pro (grade push's watcher in the
triggerer started grade_push__demo); then presses Ctrl-C (SIGINT to the foreground process
group) and checks that every process it started is gone, within a bounded time.

Its own AIRFLOW_HOME (a fresh metadata database, as on a fresh clone), port, staging
database and sandbox state: it does not touch the checkout's .airflow/ or var/.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 420  # migrate a fresh database, parse the DAGs, start four components (shared 2-core machine)
RUN_SECONDS = 600  # the demo district's import under the scheduler (about 2 minutes on the shared machine)
STOP_SECONDS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_processes(session_id: int) -> list[str]:
    """Processes of a session (pid and command), zombies excepted."""
    result = subprocess.run(["ps", "-s", str(session_id), "-o", "pid=,stat=,args="], capture_output=True, text=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip() and " Z" not in f" {line.split()[1]}"]


def get_json(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read() or b"{}")


def test_make_airflow_starts_lists_the_demo_dags_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "airflow-home"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "SIS_LEARNING_")) and key not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    # No virtualenv on PATH: exactly what a fresh shell has.
    venv_bin = str(REPO_ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(
        part
        for part in env.get("PATH", "").split(os.pathsep)
        if part and Path(part).resolve() != Path(venv_bin).resolve()
    )
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__API__PORT": str(port),
            "SIS_LEARNING_STAGING_URL": f"sqlite:///{tmp_path / 'staging.sqlite'}",
            "SIS_LEARNING_STANDALONE_DIR": str(tmp_path / "standalone"),
        }
    )
    output_path = tmp_path / "make-airflow.out"
    with output_path.open("wb") as output:
        make = subprocess.Popen(
            ["make", "airflow"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        healthy = False
        while time.monotonic() < deadline and make.poll() is None:
            try:
                status, health = get_json(f"{base_url}/api/v2/monitor/health")
                healthy = status == 200 and health.get("metadatabase", {}).get("status") == "healthy"
            except OSError:
                healthy = False
            if healthy:
                break
            time.sleep(2)
        assert healthy, f"the API server never became healthy:\n{output_path.read_text()[-4000:]}"

        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        _, answer = get_json(f"{base_url}/auth/token", body={"username": "admin", "password": passwords["admin"]})
        token = answer["access_token"]
        wanted = {"sis_import__demo", "grade_push__demo"}
        dags: dict[str, dict] = {}
        while time.monotonic() < deadline and not wanted <= set(dags):
            _, listing = get_json(f"{base_url}/api/v2/dags?limit=100", token)
            dags = {dag["dag_id"]: dag for dag in listing["dags"]}
            time.sleep(1)
        assert wanted <= set(dags), f"DAGs listed: {sorted(dags)}"
        assert not any(dags[dag_id]["is_paused"] for dag_id in wanted), {d: dags[d]["is_paused"] for d in wanted}

        # The banner: where the UI is, the login, where staging, emails and Data Docs are.
        banner_deadline = time.monotonic() + 30
        while "Data Docs:" not in output_path.read_text() and time.monotonic() < banner_deadline:
            time.sleep(0.5)
        printed = output_path.read_text()
        assert f"Airflow UI:     {base_url}" in printed
        assert f"admin / {passwords['admin']}" in printed
        for label in ("Staged tables:", "Emails:", "Data Docs:"):
            assert label in printed, printed[-3000:]
        assert "FileNotFoundError" not in (tmp_path / "standalone" / "airflow.log").read_text()

        # The README's walk-through: trigger the import, see it succeed, enter a score, see it in PowerTeacher.
        _, run = get_json(f"{base_url}/api/v2/dags/sis_import__demo/dagRuns", token, body={"logical_date": None})
        run_deadline = time.monotonic() + RUN_SECONDS
        state = run.get("state")
        while time.monotonic() < run_deadline and state not in ("success", "failed"):
            time.sleep(3)
            _, run = get_json(f"{base_url}/api/v2/dags/sis_import__demo/dagRuns/{run['dag_run_id']}", token)
            state = run["state"]
        assert state == "success", f"sis_import__demo ended {state}:\n{output_path.read_text()[-3000:]}"
        score = subprocess.run(
            ["make", "score", "SCORE=8"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert score.returncode == 0 and "PowerTeacher Pro has it after" in score.stdout, score.stdout + score.stderr
        print(score.stdout.strip().splitlines()[-1])
    finally:
        started_stop = time.monotonic()
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
        left: list[str] = []
        while time.monotonic() - started_stop < STOP_SECONDS:
            left = session_processes(make.pid)
            if not left:
                break
            time.sleep(1)
        stop_seconds = time.monotonic() - started_stop
        if left:  # do not leave them running for the next test
            for line in left:
                try:
                    os.kill(int(line.split()[0]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    assert not left, f"still running {STOP_SECONDS}s after Ctrl-C:\n" + "\n".join(left)
    print(f"stopped in {stop_seconds:.1f}s")
    assert "Stopped." in output_path.read_text()
