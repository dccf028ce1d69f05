"""The distributed path without Docker: Airflow with the CeleryExecutor, from the virtualenv.

It starts what docker-compose.yaml starts, as plain processes on this machine: the
api-server, scheduler, dag-processor, triggerer and N Celery workers (``worker1@<host>``,
``worker2@<host>``, ...), against the local PostgreSQL (one database for Airflow's
metadata and the Celery result backend, another for the staged tables) and Redis (the
broker). It creates the pools from ``docker/pools.json`` (the same file the compose
stack's airflow-init imports), triggers DAG runs through the REST API, waits for them,
reports which worker ran each task instance (the ``hostname`` column of
``task_instance`` in the metadata DB), and stops every process it started.

Usage (the environment comes from scripts/airflow-env.sh, as for every script here):

    .venv/bin/python scripts/celery_stack.py run --dag sis_import__demo --dag grade_push__demo
    .venv/bin/python scripts/celery_stack.py up          # keep it running; Ctrl-C stops it

Why some settings look unusual:
- Two workers on one machine share its host name, and a task instance records the host
  name of the worker that ran it. Each worker therefore gets ``hostname_callable`` =
  :func:`worker_hostname`, which answers ``worker1.<fqdn>``: what two machines (or two
  containers) would record. On real hosts nothing of this is needed.
- Every stack gets its own Celery queue, its own ports and its own databases, so two
  engineers (or a test and a developer) can run stacks side by side on the same Redis
  and PostgreSQL without one stack's worker taking the other's tasks.
- Workers run with ``--skip-serve-logs``: they share the log folder with the api-server
  here, so the log server (and its fixed port 8793) would only get in the way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
POOLS_FILE = REPO_ROOT / "docker" / "pools.json"
DEFAULT_POSTGRES = os.environ.get(
    "SIS_LEARNING_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
# Marks every process of one stack, so stop() can find stragglers (a task's own
# subprocesses) by their environment and end them by pid, never by name.
STACK_MARKER = "SIS_LEARNING_CELERY_STACK_ID"
WORKER_NAME_ENV = "SIS_LEARNING_CELERY_WORKER_NAME"
FINISHED_STATES = {"success", "failed"}


def worker_hostname() -> str:
    """``hostname_callable`` for workers sharing one machine: ``worker1.<fqdn>``.

    Imported by Airflow in the worker (``AIRFLOW__CORE__HOSTNAME_CALLABLE``); it is what
    the task instance records as its host, and what the execution API checks heartbeats
    against, so it must be stable for the life of the worker.
    """
    name = os.environ.get(WORKER_NAME_ENV)
    fqdn = socket.getfqdn()
    return f"{name}.{fqdn}" if name else fqdn


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def airflow_environment(overrides: dict[str, str]) -> dict[str, str]:
    """The environment scripts/airflow-env.sh makes, given ``overrides`` going in.

    Sourcing the one script (rather than copying its settings) keeps a single definition
    of how Airflow runs from this repository.
    """
    env = {**os.environ, **overrides}
    output = subprocess.run(
        ["bash", "-c", 'source "$1" && env -0', "airflow-env", str(REPO_ROOT / "scripts" / "airflow-env.sh")],
        env=env,
        check=True,
        capture_output=True,
    ).stdout
    return dict(item.split("=", 1) for item in output.decode().split("\0") if "=" in item)


def _database_url(admin_url: str, database: str, driver: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(admin_url).set(database=database, drivername=driver)
    return url.render_as_string(hide_password=False)


@dataclass
class StackSettings:
    name: str = "sis_learning"
    workers: int = 2
    concurrency: int = 4
    postgres_admin_url: str = DEFAULT_POSTGRES
    broker_url: str = DEFAULT_BROKER
    airflow_home: Path | None = None
    dags_folder: Path | None = None
    districts_dir: Path | None = None
    parallelism: int = 32
    extra_env: dict[str, str] = field(default_factory=dict)
    fresh: bool = False

    @property
    def metadata_database(self) -> str:
        return f"{self.name}_airflow"

    @property
    def staging_database(self) -> str:
        return f"{self.name}_staging"


@dataclass
class Component:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    ready_text: str | None = None
    process: subprocess.Popen | None = None


class CeleryStack:
    """One Airflow deployment with the CeleryExecutor; use as a context manager."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.stack_id = uuid.uuid4().hex[:10]
        self.home = Path(settings.airflow_home or REPO_ROOT / ".airflow" / f"celery-{settings.name}")
        self.log_dir = self.home / "stack-logs"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.queue = f"{settings.name}_{self.stack_id}"
        # Airflow's metadata through psycopg2 (as docker-compose.yaml); staging through psycopg 3.
        self.metadata_url = _database_url(
            settings.postgres_admin_url, settings.metadata_database, "postgresql+psycopg2"
        )
        self.staging_url = _database_url(settings.postgres_admin_url, settings.staging_database, "postgresql+psycopg")
        self.username = "admin"
        self.password = secrets.token_urlsafe(12)
        self.components: list[Component] = []
        self._token: str | None = None
        self.env: dict[str, str] = {}

    # ------------------------------------------------------------------ set-up
    def _base_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = airflow_environment(
            {
                "AIRFLOW_HOME": str(self.home),
                "SIS_LEARNING_METADATA_URL": self.metadata_url,
                **self.settings.extra_env,
            }
        )
        passwords_file = self.home / "simple_auth_manager_passwords.json"
        env.update(
            {
                STACK_MARKER: self.stack_id,
                "SIS_LEARNING_STAGING_URL": self.staging_url,
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.settings.parallelism),
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                # Shared by every component: the api-server signs task tokens with it and the
                # workers' task supervisors present them to the execution API.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
                "AIRFLOW__CELERY__BROKER_URL": self.settings.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.settings.concurrency),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                # INFO at least, whatever the caller's environment says: a worker is known to be
                # ready by Celery's INFO line "... ready." in its log.
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            }
        )
        if self.settings.dags_folder:
            env["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(self.settings.dags_folder).resolve())
        if self.settings.districts_dir:
            env["SIS_LEARNING_DISTRICTS_DIR"] = str(Path(self.settings.districts_dir).resolve())
        passwords_file.parent.mkdir(parents=True, exist_ok=True)
        passwords_file.write_text(json.dumps({self.username: self.password}))
        passwords_file.chmod(0o600)
        return env

    def create_databases(self) -> None:
        """Metadata and staging databases, kept apart as in the compose stack."""
        from sqlalchemy import create_engine, text

        admin = create_engine(self.settings.postgres_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                for database in (self.settings.metadata_database, self.settings.staging_database):
                    if self.settings.fresh:
                        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
                    exists = connection.execute(
                        text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
                    ).scalar()
                    if not exists:
                        connection.execute(text(f'CREATE DATABASE "{database}"'))
        finally:
            admin.dispose()

    def drop_databases(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.settings.postgres_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                for database in (self.settings.metadata_database, self.settings.staging_database):
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        finally:
            admin.dispose()

    def airflow(self, *arguments: str, timeout: float = 300) -> str:
        """Run one Airflow CLI command with the stack's environment; fail loudly."""
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), *arguments],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
        )
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(arguments)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout

    def check_celery_executor(self) -> None:
        """Fail with the fix, not with a worker's traceback, when the lock cannot load Celery.

        apache-airflow-providers-celery 3.26.0 imports ``retry`` from
        ``celery.backends.database``, which celery 5.7 removed; celery 5.6.3 has it.
        """
        probe = subprocess.run(
            [sys.executable, "-c", "import airflow.providers.celery.executors.celery_executor"],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            last = probe.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise RuntimeError(
                "the CeleryExecutor cannot be imported with the installed packages: "
                f"{last[0]} (with apache-airflow-providers-celery 3.26.0, pin celery==5.6.3)"
            )

    def initialise(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = self._base_env()
        self.check_celery_executor()
        self.create_databases()
        self.airflow("db", "migrate")
        self.airflow("pools", "import", str(POOLS_FILE))

    # ------------------------------------------------------------------ processes
    def _component(
        self, name: str, arguments: list[str], ready_text: str | None = None, extra_env: dict[str, str] | None = None
    ) -> Component:
        return Component(
            name=name,
            command=[str(VENV_BIN / "airflow"), *arguments],
            env={**self.env, **(extra_env or {})},
            log_path=self.log_dir / f"{name}.log",
            ready_text=ready_text,
        )

    def plan(self) -> list[Component]:
        components = [
            self._component("api-server", ["api-server", "--port", str(self.api_port)]),
            self._component("scheduler", ["scheduler"]),
            self._component("dag-processor", ["dag-processor"]),
            self._component("triggerer", ["triggerer"]),
        ]
        for number in range(1, self.settings.workers + 1):
            name = f"worker{number}"
            components.append(
                self._component(
                    name,
                    [
                        "celery",
                        "worker",
                        "-H",
                        f"{name}@%h",
                        "-c",
                        str(self.settings.concurrency),
                        "-q",
                        self.queue,
                        "--skip-serve-logs",
                    ],
                    ready_text=" ready.",
                    extra_env={
                        WORKER_NAME_ENV: name,
                        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "scripts.celery_stack.worker_hostname",
                    },
                )
            )
        return components

    def start(self) -> None:
        self.components = self.plan()
        for component in self.components:
            log = component.log_path.open("ab")
            # A session of its own: stop() signals the whole process group at once.
            component.process = subprocess.Popen(
                component.command,
                env=component.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
            log.close()
        self.wait_until_ready()

    def _check_alive(self) -> None:
        for component in self.components:
            if component.process and component.process.poll() is not None:
                tail = component.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"{component.name} exited with {component.process.returncode}; its log ends:\n{tail}"
                )

    def wait_until_ready(self, timeout: float = 600) -> None:
        # Generous: on a loaded 2-core machine a Celery worker alone has taken 4 minutes to boot.
        import requests

        deadline = time.monotonic() + timeout
        pending = {component.name for component in self.components}
        while pending:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout:.0f}s: {sorted(pending)} (logs in {self.log_dir})")
            for component in self.components:
                if component.name not in pending:
                    continue
                if component.name == "api-server":
                    with contextlib.suppress(requests.RequestException):
                        if requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=2).ok:
                            pending.discard(component.name)
                elif component.ready_text is None or component.ready_text in component.log_path.read_text(
                    errors="replace"
                ):
                    pending.discard(component.name)
            time.sleep(1)

    def stop(self, grace: float = 30) -> None:
        """SIGTERM every process group (warm shutdown for Celery), then SIGKILL what is left."""
        running = [c.process for c in self.components if c.process and c.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in running:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Anything still carrying this stack's marker (a task's subprocess that left the
        # process group) is ours: end it by pid.
        for pid in self.leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.forget_queue()

    def forget_queue(self) -> None:
        """Delete this stack's queue and kombu bindings from Redis (the name is unique to it)."""
        import redis

        client = redis.Redis.from_url(self.settings.broker_url)
        try:
            keys = list(client.scan_iter(match=f"*{self.queue}*"))
            if keys:
                client.delete(*keys)
        except redis.RedisError:
            pass  # the broker is gone already: nothing left to tidy
        finally:
            client.close()

    def leftover_pids(self) -> list[int]:
        marker = f"{STACK_MARKER}={self.stack_id}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
        return found

    def __enter__(self) -> CeleryStack:
        try:
            self.initialise()
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ REST API
    def _headers(self) -> dict[str, str]:
        import requests

        if self._token is None:
            response = requests.post(
                f"{self.api_url}/auth/token", json={"username": self.username, "password": self.password}, timeout=30
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, **kwargs: object) -> dict:
        """One call to the REST API (/api/v2), as the stack's admin user; raises on an error status."""
        import requests

        response = requests.request(
            method, f"{self.api_url}/api/v2{path}", headers=self._headers(), timeout=60, **kwargs
        )
        if not response.ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:2000]}")
        return response.json()

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 300) -> None:
        """Until the dag-processor has parsed and serialized every DAG asked for."""
        import requests

        deadline = time.monotonic() + timeout
        missing = set(dag_ids)
        while missing:
            self._check_alive()
            for dag_id in sorted(missing):
                with contextlib.suppress(RuntimeError, requests.RequestException):
                    self.api("GET", f"/dags/{dag_id}/details")
                    missing.discard(dag_id)
            if missing and time.monotonic() > deadline:
                errors = self.api("GET", "/importErrors").get("import_errors", [])
                raise TimeoutError(f"DAGs not parsed after {timeout:.0f}s: {sorted(missing)}; import errors: {errors}")
            if missing:
                time.sleep(2)

    def start_runs(self, dag_ids: Iterable[str], timeout: float = 120) -> dict[str, str]:
        """Unpause the DAGs together; ``{dag_id: id of the run each one starts}``.

        A district DAG (CronTriggerTimetable, catchup off) whose latest 06:00/18:00 slot
        has passed gets that scheduled run from the scheduler as soon as it is unpaused,
        exactly as in production; that run is the one to wait for (with max_active_runs=1
        a manual run would only queue behind it). Any other DAG is triggered through the
        REST API. All DAGs are unpaused before any run is looked for, so many districts
        start at once, as they do at 06:00.
        """
        import pendulum

        due = {}
        for dag_id in dag_ids:
            run_after = self.api("GET", f"/dags/{dag_id}").get("next_dagrun_run_after")
            due[dag_id] = run_after is not None and pendulum.parse(run_after) <= pendulum.now("UTC")
        for dag_id in due:
            self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        runs = {}
        for dag_id, is_due in due.items():
            if not is_due:
                runs[dag_id] = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})[
                    "dag_run_id"
                ]
        deadline = time.monotonic() + timeout
        while len(runs) < len(due):
            for dag_id in [dag_id for dag_id in due if dag_id not in runs]:
                scheduled = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"run_type": "scheduled"})["dag_runs"]
                if scheduled:
                    runs[dag_id] = scheduled[0]["dag_run_id"]
            if len(runs) < len(due):
                if time.monotonic() > deadline:
                    missing = sorted(set(due) - set(runs))
                    raise TimeoutError(
                        f"unpaused, but the scheduler made no scheduled run within {timeout:.0f}s: {missing}"
                    )
                time.sleep(1)
        return runs

    def wait_for_runs(self, runs: dict[str, str], timeout: float = 900) -> dict[str, str]:
        """``{dag_id: run_id}`` -> ``{dag_id: final state}``, polling the REST API."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while len(states) < len(runs):
            self._check_alive()
            for dag_id, run_id in runs.items():
                if dag_id not in states:
                    state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
                    if state in FINISHED_STATES:
                        states[dag_id] = state
            if len(states) < len(runs):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"runs not finished after {timeout:.0f}s: {sorted(set(runs) - set(states))}")
                time.sleep(2)
        return states

    # ------------------------------------------------------------------ report
    def task_hosts(self, runs: dict[str, str]) -> list[dict]:
        """Every task instance of the runs, with the host that ran it, from the metadata DB."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.metadata_url)
        rows = []
        try:
            with engine.connect() as connection:
                for dag_id, run_id in runs.items():
                    rows += [
                        dict(row._mapping)
                        for row in connection.execute(
                            text(
                                "SELECT dag_id, run_id, task_id, map_index, state, hostname, try_number, pool, queue,"
                                " start_date, end_date FROM task_instance WHERE dag_id = :dag_id AND run_id = :run_id"
                                " ORDER BY start_date NULLS LAST, task_id, map_index"
                            ),
                            {"dag_id": dag_id, "run_id": run_id},
                        )
                    ]
        finally:
            engine.dispose()
        return rows

    def worker_of(self, hostname: str | None) -> str:
        """``worker1.<fqdn>`` -> ``worker1`` (any other host name is returned whole)."""
        if not hostname:
            return "(not run)"
        name = hostname.split(".", 1)[0]
        return name if name.startswith("worker") else hostname


def format_report(stack: CeleryStack, runs: dict[str, str], states: dict[str, str], seconds: float) -> str:
    lines = [f"{len(runs)} run(s) finished in {seconds:.1f}s on {stack.settings.workers} Celery workers"]
    per_worker: dict[str, int] = {}
    for row in stack.task_hosts(runs):
        worker = stack.worker_of(row["hostname"])
        per_worker[worker] = per_worker.get(worker, 0) + 1
        index = "" if row["map_index"] < 0 else f"[{row['map_index']}]"
        lines.append(f"  {row['dag_id']:<28} {row['task_id'] + index:<44} {row['state'] or '-':<10} {worker}")
    for dag_id, state in states.items():
        lines.append(f"run {dag_id} {runs[dag_id]}: {state}")
    lines.append("task instances per worker: " + ", ".join(f"{w}={n}" for w, n in sorted(per_worker.items())))
    return "\n".join(lines)


@contextlib.contextmanager
def running_stack(settings: StackSettings, drop_databases: bool = False) -> Iterator[CeleryStack]:
    stack = CeleryStack(settings)
    try:
        with stack:
            yield stack
    finally:
        if drop_databases:
            stack.drop_databases()


@contextlib.contextmanager
def demo_sandboxes(settings: StackSettings, **options: object) -> Iterator[object]:
    """The demo's sandboxes (scripts/demo_environment.py) with their connections in the stack's env.

    Their state lives under the stack's Airflow home, apart from `make demo`'s var/demo.
    """
    for path in (str(REPO_ROOT / "plugins"), str(REPO_ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    from scripts.demo_environment import demo_services

    home = Path(settings.airflow_home or REPO_ROOT / ".airflow" / f"celery-{settings.name}")
    with demo_services(state_dir=home / "demo-state", **options) as services:
        settings.extra_env = {**settings.extra_env, **services.env}
        yield services


def run_dags(stack: CeleryStack, dag_ids: list[str], timeout: float) -> tuple[dict[str, str], dict[str, str], float]:
    """Trigger the DAGs together and wait for all: ``(runs, states, seconds)``."""
    stack.wait_for_dags(dag_ids)
    started = time.monotonic()
    runs = stack.start_runs(dag_ids)
    states = stack.wait_for_runs(runs, timeout=timeout)
    return runs, states, time.monotonic() - started


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run", "up"], help="run: trigger DAGs, wait, report, stop; up: keep running")
    parser.add_argument("--dag", action="append", default=[], help="DAG id to trigger (repeatable)")
    parser.add_argument(
        "--name", default="sis_learning", help="prefix of the databases (<name>_airflow, <name>_staging)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--dags-folder", type=Path)
    parser.add_argument("--districts-dir", type=Path, help="a folder of district YAMLs (SIS_LEARNING_DISTRICTS_DIR)")
    parser.add_argument("--broker", default=DEFAULT_BROKER)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL of the PostgreSQL server")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the databases first")
    parser.add_argument("--drop-databases", action="store_true", help="drop the databases at the end")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for the runs")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the sandboxes with the demo district's connections (scripts/demo_environment.py)",
    )
    return parser


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    # Unwind like Ctrl-C so the context managers stop every process and sandbox.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "run" and not args.dag:
        _parser().error("run needs at least one --dag (for example --dag sis_import__demo)")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    settings = StackSettings(
        name=args.name,
        workers=args.workers,
        concurrency=args.concurrency,
        postgres_admin_url=args.postgres,
        broker_url=args.broker,
        dags_folder=args.dags_folder,
        districts_dir=args.districts_dir,
        fresh=args.fresh,
    )
    with contextlib.ExitStack() as cleanup:
        if args.demo:
            services = cleanup.enter_context(demo_sandboxes(settings))
            print(
                f"sandboxes: SIS {services.powerschool.base_url}, Learning {services.learning.base_url}, "
                f"SMTP {services.smtp.host}:{services.smtp.port}",
                flush=True,
            )
        stack = cleanup.enter_context(running_stack(settings, drop_databases=args.drop_databases))
        print(
            f"stack up: {stack.api_url} (user {stack.username}, password {stack.password}); logs in {stack.log_dir}",
            flush=True,
        )
        if args.action == "up":
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    stack._check_alive()
                    time.sleep(5)
            return 0
        runs, states, seconds = run_dags(stack, args.dag, args.timeout)
        print(format_report(stack, runs, states, seconds), flush=True)
        return 0 if all(state == "success" for state in states.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
