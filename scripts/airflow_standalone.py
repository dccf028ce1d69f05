"""`make airflow`: Airflow standalone from the repository, with the embedded default.

Starts the sandboxes (PowerSchool SIS simulator, reference Learning, SMTP catcher), gives
Airflow their connections as AIRFLOW_CONN_* variables, creates the pools, parses the DAGs
and unpauses the demo district's two DAGs (grade push is started by an asset whose
watcher the triggerer only runs for an unpaused DAG), then runs `airflow standalone`
(api-server with the UI, scheduler, dag-processor, triggerer). When the UI answers it
prints a banner: the address, the login (from Airflow's generated passwords file), and
where the staged tables, the emails and the Data Docs are.

Ctrl-C (or SIGTERM) stops everything it started: Airflow's components, the sandboxes.

`airflow standalone` starts its components as a bare `airflow` command, so the
virtualenv's bin folder goes first on PATH: it works without an activated virtualenv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

POOLS_FILE = REPO_ROOT / "docker" / "pools.json"  # one pools file for standalone, the Celery stack and compose
# The sandboxes' state (Learning's database, the mailbox); SIS_LEARNING_STANDALONE_DIR moves it (the test does).
STATE_DIR = Path(os.environ.get("SIS_LEARNING_STANDALONE_DIR") or REPO_ROOT / "var" / "standalone")
# What the demo's sandboxes look like to `make score` (scripts/teacher.py): local, generated values.
SANDBOXES_FILE = STATE_DIR / "sandboxes.json"
# Airflow's components print a line every few seconds: they go to a file, the terminal keeps the banner.
AIRFLOW_OUTPUT = STATE_DIR / "airflow.log"
DEMO_DAGS = ("sis_import__demo", "grade_push__demo")
STOP_SECONDS = 30


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop what was started."""


def venv_bin() -> Path:
    # Not resolved: a virtualenv's python is a symlink to the system interpreter.
    return Path(sys.executable).parent


def airflow(*args: str, env: dict[str, str], quiet: bool = True) -> None:
    result = subprocess.run(
        [str(venv_bin() / "airflow"), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if result.returncode != 0:
        if quiet:
            print(result.stdout, file=sys.stderr)
        raise SystemExit(f"`airflow {' '.join(args)}` failed (exit {result.returncode})")


def create_pools(env: dict[str, str]) -> None:
    airflow("pools", "import", str(POOLS_FILE), env=env)


def unpause_demo_dags(env: dict[str, str]) -> None:
    """Parse the DAG files into the metadata database, then unpause the demo district's DAGs."""
    airflow("dags", "reserialize", env=env)
    for dag_id in DEMO_DAGS:
        airflow("dags", "unpause", "-y", dag_id, env=env)


def staging_location(env: dict[str, str]) -> str:
    from sqlalchemy.engine import make_url

    url = env.get("SIS_LEARNING_STAGING_URL") or f"sqlite:///{REPO_ROOT / 'var' / 'staging.sqlite'}"
    return make_url(url).render_as_string(hide_password=True)


def wait_for_api(base_url: str, process: subprocess.Popen, timeout: float = 600) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base_url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def login(env: dict[str, str]) -> tuple[str, str]:
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    try:
        users = json.loads(passwords.read_text())
    except (OSError, ValueError):
        return "admin", f"(see {passwords})"
    user = "admin" if "admin" in users else next(iter(users), "admin")
    return user, str(users.get(user, f"(see {passwords})"))


def banner(env: dict[str, str], base_url: str, services) -> str:
    user, password = login(env)
    return "\n".join(
        [
            "",
            "=" * 78,
            f"  Airflow UI:     {base_url}",
            f"  Login:          {user} / {password}",
            f"                  (kept in {Path(env['AIRFLOW_HOME']) / 'simple_auth_manager_passwords.json.generated'})",
            f"  DAGs (unpaused): {', '.join(DEMO_DAGS)}: trigger sis_import__demo in the UI",
            f"  Staged tables:  {staging_location(env)}  (docs/staged-tables.md)",
            f"  Emails:         {STATE_DIR / 'mailbox'}  (one .eml file per message)",
            f"  Data Docs:      {REPO_ROOT / 'var' / 'validation' / 'demo'}/<run id>/data_docs/index.html",
            f"  Sandboxes:      PowerSchool {services.powerschool.base_url}, Learning {services.learning.base_url},",
            f"                  SMTP {services.smtp.host}:{services.smtp.port}",
            f"  Airflow output: {AIRFLOW_OUTPUT}  (tail -f it; task logs are in the UI)",
            "  Then:           make score  (enter a score in Learning, see it reach PowerTeacher)",
            "                  make explain ID=<number, login or email>  (why is someone not in Learning?)",
            "  Stop:           Ctrl-C (stops Airflow and the sandboxes)",
            "=" * 78,
            "",
        ]
    )


def write_sandboxes_file(services) -> None:
    """Where `make score` finds the running sandboxes (generated local credentials, owner-only file)."""
    powerschool, learning = services.powerschool, services.learning
    SANDBOXES_FILE.parent.mkdir(parents=True, exist_ok=True)
    SANDBOXES_FILE.touch(mode=0o600)
    SANDBOXES_FILE.chmod(0o600)
    SANDBOXES_FILE.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "district_id": "demo",
                "powerschool": {
                    "base_url": powerschool.base_url,
                    "client_id": powerschool.client_id,
                    "client_secret": powerschool.client_secret,
                    "admin_token": powerschool.admin_token,
                    "ca_bundle": str(powerschool.ca_bundle),
                    "dataset_path": str(powerschool.dataset_path),
                    "database_path": str(powerschool.database_path),
                },
                "learning": {
                    "base_url": learning.base_url,
                    "token": services.learning_token,
                    "ca_bundle": str(learning.ca_bundle) if learning.ca_bundle else None,
                    "database_url": learning.database_url,
                },
            },
            indent=2,
        )
    )


def stop_group(process: subprocess.Popen) -> None:
    """Stop airflow standalone and everything it started (its own process group)."""
    if process.poll() is None:
        # SIGINT is what standalone handles: it terminates its components and waits for them.
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # components standalone left behind (task runners, a stuck component)
        except ProcessLookupError:
            break
        time.sleep(2 if sig == signal.SIGTERM else 0)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _raise_stop(signum, frame) -> None:
    raise Stop(signal.Signals(signum).name)


def main() -> int:
    from scripts.demo_environment import demo_services

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    env = dict(os.environ)
    # standalone runs its components as `airflow ...` found on PATH.
    env["PATH"] = os.pathsep.join([str(venv_bin()), env.get("PATH", "")])
    port = env.setdefault("AIRFLOW__API__PORT", "8080")
    base_url = f"http://localhost:{port}"
    # The link in failure emails, for districts that do not set notifications.airflow_base_url.
    env.setdefault("AIRFLOW__API__BASE_URL", base_url)
    standalone: subprocess.Popen | None = None
    try:
        print("Starting the sandboxes (PowerSchool SIS simulator, reference Learning, SMTP catcher) ...", flush=True)
        with demo_services(state_dir=STATE_DIR) as services:
            env.update(services.env)
            write_sandboxes_file(services)
            try:
                print(
                    f"Preparing Airflow: metadata database, pools, the DAGs (unpausing {', '.join(DEMO_DAGS)}) ...",
                    flush=True,
                )
                airflow("db", "migrate", env=env)
                create_pools(env)
                unpause_demo_dags(env)
                print("Starting airflow standalone (api-server, scheduler, dag-processor, triggerer) ...", flush=True)
                # Its own process group: on stop, everything it started goes with it.
                with AIRFLOW_OUTPUT.open("wb") as output:
                    standalone = subprocess.Popen(
                        [str(venv_bin() / "airflow"), "standalone"],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        process_group=0,
                    )
                if wait_for_api(base_url, standalone):
                    print(banner(env, base_url, services), flush=True)
                else:
                    tail = AIRFLOW_OUTPUT.read_text(errors="replace").splitlines()[-40:]
                    print("\n".join(tail), file=sys.stderr)
                    print(
                        f"The Airflow API server did not answer at {base_url}: the last lines of {AIRFLOW_OUTPUT} "
                        "are above",
                        file=sys.stderr,
                        flush=True,
                    )
                    return 1
                standalone.wait()
                print(f"airflow standalone exited (code {standalone.returncode}): see {AIRFLOW_OUTPUT}", flush=True)
                return standalone.returncode or 0
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C does not interrupt the stop
                print("\nStopping Airflow and the sandboxes ...", flush=True)
                if standalone is not None:
                    stop_group(standalone)
                SANDBOXES_FILE.unlink(missing_ok=True)
    except Stop:
        print("Stopped.", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
