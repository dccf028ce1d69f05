"""Run the reference Learning server from tests, demos and benchmarks: ``running_learning()``.

    with running_learning() as learning:
        demo = learning.client("demo")          # httpx.Client with the token and the CA
        demo.post("/api/v1/organizations/batch", json={"rows": [...]})
        learning.set_authentication("demo", "1001", "google")

The server runs in a subprocess (``python -m sandbox.learning``), exactly as a person
starts it, over HTTPS with the sandbox CA, on a free port; the context manager waits
until it answers and stops it on exit. Tokens reach the subprocess through its
environment, never its command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandbox.learning.__main__ import LISTENING_PREFIX
from sandbox.learning.domains import DOMAINS_ENV, new_token
from sandbox.processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LearningOptions:
    tls: bool = True
    tls_directory: Path | None = None  # default: the shared sandbox CA (.sandbox/tls)
    port: int = 0  # 0 = a free port chosen by the server
    startup_timeout: float = 30.0
    log_level: str = "warning"
    extra_environment: dict[str, str] = field(default_factory=dict)


class LearningError(RuntimeError):
    """A helper call the server refused; the message carries its status and answer."""


def _json(response: httpx.Response) -> Any:
    if response.is_error:
        raise LearningError(
            f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text}"
        )
    return response.json()


class LearningSandbox:
    """A running reference Learning server, with a client per domain and the admin/teacher helpers."""

    def __init__(
        self,
        base_url: str,
        tokens: dict[str, str],
        ca_bundle: Path | None,
        database_url: str,
        process: subprocess.Popen,
        log_path: Path,
    ) -> None:
        self.base_url = base_url
        self.tokens = dict(tokens)
        self.ca_bundle = ca_bundle
        self.database_url = database_url
        self.process = process
        self.log_path = log_path
        self._clients: dict[str, httpx.Client] = {}

    @property
    def verify(self) -> str | bool:
        """What to pass as ``verify=`` to an HTTP client: the CA bundle (or True for plain HTTP)."""
        return str(self.ca_bundle) if self.ca_bundle else True

    def client(self, domain: str | None = None, token: str | None = None) -> httpx.Client:
        """An HTTP client for ``domain`` (its token in every request), verifying the server's certificate.

        ``token`` overrides the domain's token (to test wrong tokens); ``client()`` with
        neither sends no token at all.
        """
        cache_key = f"{domain}|{token}"
        if cache_key not in self._clients:
            bearer = token if token is not None else (self.tokens[domain] if domain else None)
            headers = {"Accept": "application/json"}
            if bearer is not None:
                headers["Authorization"] = f"Bearer {bearer}"
            self._clients[cache_key] = httpx.Client(
                base_url=self.base_url, headers=headers, verify=self.verify, timeout=60
            )
        return self._clients[cache_key]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- import side (what the pipeline does, for setting up a test) ----------------------------

    def upsert(self, domain: str, entity: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return _json(self.client(domain).post(f"/api/v1/{entity}/batch", json={"rows": rows}))

    # --- admin side ----------------------------------------------------------------------------

    def set_authentication(self, domain: str, user: str, authentication_type: str) -> dict[str, Any]:
        """``user`` is ``"<user_type>:<external_id>"`` (``"S:600"``), as ``users()`` keys them."""
        user_type, external_id = user.split(":", 1)
        return _json(
            self.client(domain).put(
                f"/api/v1/admin/users/{user_type}/{external_id}/authentication",
                json={"authentication_type": authentication_type},
            )
        )

    def create_user_by_hand(self, domain: str, **user: Any) -> dict[str, Any]:
        """A user made in Learning before the integration (no Import ID, or ``external_id``: an old one)."""
        return _json(self.client(domain).post("/api/v1/admin/users", json=user))

    def admin_users(self, domain: str, without_import_id: bool = False) -> list[dict[str, Any]]:
        """Every user with ``learning_id`` (``GET /api/v1/admin/users``)."""
        rows, page = [], 1
        while True:
            body = _json(
                self.client(domain).get(
                    "/api/v1/admin/users",
                    params={"page": page, "page_size": 1000, "without_import_id": str(without_import_id).lower()},
                )
            )
            rows += body["rows"]
            if not body["has_more"]:
                return rows
            page += 1

    def settings(self, domain: str, **changes: Any) -> dict[str, Any]:
        """The domain settings; with keyword arguments, change those first (PUT) and return the result."""
        if changes:
            return _json(self.client(domain).put("/api/v1/domain/settings", json=changes))
        return _json(self.client(domain).get("/api/v1/domain/settings"))

    def notification_count(self, domain: str) -> int:
        return _json(self.client(domain).get("/api/v1/notifications/count"))["count"]

    def notify(self, domain: str, user: str, kind: str = "credentials") -> dict[str, Any]:
        """``user`` is ``"<user_type>:<external_id>"``."""
        user_type, external_id = user.split(":", 1)
        return _json(
            self.client(domain).post(
                f"/api/v1/admin/users/{user_type}/{external_id}/notifications", json={"kind": kind}
            )
        )

    def inject_faults(
        self,
        domain: str,
        count: int = 1,
        status: int = 503,
        *,
        after_apply: bool = False,
        retry_after: int | None = None,
    ) -> int:
        """Sandbox only: the domain's next ``count`` import writes answer ``status``.

        See sandbox/learning/faults.py.
        """
        body = {"count": count, "status": status, "after_apply": after_apply, "retry_after": retry_after}
        return _json(self.client(domain).put("/sandbox/faults", json=body))["remaining"]

    # --- teacher side --------------------------------------------------------------------------

    def create_gradable(
        self,
        domain: str,
        class_id: str,
        title: str,
        total_points: float = 100,
        *,
        description: str | None = None,
        due_date: str | None = None,
        type: str = "Assignment",
    ) -> dict[str, Any]:
        body = {
            "title": title,
            "total_points": total_points,
            "description": description,
            "due_date": due_date,
            "type": type,
        }
        return _json(self.client(domain).post(f"/api/v1/classes/{class_id}/gradables", json=body))

    def update_gradable(self, domain: str, gradable_id: int, **changes: Any) -> dict[str, Any]:
        return _json(self.client(domain).patch(f"/api/v1/gradables/{gradable_id}", json=changes))

    def delete_gradable(self, domain: str, gradable_id: int) -> dict[str, Any]:
        return _json(self.client(domain).delete(f"/api/v1/gradables/{gradable_id}"))

    def link_class(self, domain: str, class_id: str, imported_class_id: str | None) -> dict[str, Any]:
        if imported_class_id is None:
            return _json(self.client(domain).delete(f"/api/v1/classes/{class_id}/link"))
        return _json(
            self.client(domain).put(f"/api/v1/classes/{class_id}/link", json={"imported_class_id": imported_class_id})
        )

    def set_score(self, domain: str, gradable_id: int, student_id: str, score: str | None) -> dict[str, Any]:
        return _json(
            self.client(domain).put(f"/api/v1/gradables/{gradable_id}/scores/{student_id}", json={"score": score})
        )

    def changes(self, domain: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        return _json(self.client(domain).get("/api/v1/gradebook/changes", params={"after": after, "limit": limit}))

    # --- read back ----------------------------------------------------------------------------

    def read_all(self, domain: str, entity: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            body = _json(self.client(domain).get(f"/api/v1/{entity}", params={"page": page, "page_size": 1000}))
            rows.extend(body["rows"])
            if not body["has_more"]:
                return rows
            page += 1

    def read(self, domain: str, entity: str, key: str) -> dict[str, Any] | None:
        response = self.client(domain).get(f"/api/v1/{entity}/{key}")
        return None if response.status_code == 404 else _json(response)

    def users(self, domain: str) -> dict[str, dict[str, Any]]:
        """``"<user_type>:<external_id>"`` (``"S:600"``) -> user: a student and a teacher may share a number."""
        return {f"{row['user_type']}:{row['external_id']}": row for row in self.read_all(domain, "users")}

    def user(self, domain: str, user: str) -> dict[str, Any] | None:
        """``user`` is ``"<user_type>:<external_id>"``."""
        return self.read(domain, "users", user)

    def organizations(self, domain: str) -> dict[str, dict[str, Any]]:
        return {row["organization_id"]: row for row in self.read_all(domain, "organizations")}

    def classes(self, domain: str) -> dict[str, dict[str, Any]]:
        return {row["class_id"]: row for row in self.read_all(domain, "classes")}

    def user_levels(self, domain: str) -> dict[str, str]:
        return {row["external_id"]: row["level_id"] for row in self.read_all(domain, "user_levels")}

    def rosters(self, domain: str) -> dict[tuple[str, str], str]:
        """(class_id, "<user_type>:<user_id>") -> role."""
        return {
            (row["class_id"], f"{row['user_type']}:{row['user_id']}"): row["role"]
            for row in self.read_all(domain, "rosters")
        }

    def parent_links(self, domain: str) -> set[tuple[str, str]]:
        return {(row["parent_id"], row["child_id"]) for row in self.read_all(domain, "parent_links")}

    def close_clients(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _wait_for_url(process: subprocess.Popen, log_path: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines() if log_path.exists() else []:
            if line.startswith(LISTENING_PREFIX):
                return line[len(LISTENING_PREFIX) :].strip()
        if process.poll() is not None:
            raise RuntimeError(
                f"the Learning sandbox exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        time.sleep(0.05)
    raise RuntimeError(f"the Learning sandbox did not print its URL in time:\n{log_path.read_text(errors='replace')}")


def _wait_until_answering(
    process: subprocess.Popen, base_url: str, verify: str | bool, log_path: Path, deadline: float
) -> None:
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the Learning sandbox exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{base_url}/health", verify=verify, timeout=2).status_code == 200:
                return
        except httpx.HTTPError as error:
            last_error = error
        time.sleep(0.05)
    raise RuntimeError(
        f"the Learning sandbox did not answer in time ({last_error}):\n{log_path.read_text(errors='replace')}"
    )


@contextmanager
def running_learning(
    domains: dict[str, str] | None = None,
    database_url: str | None = None,
    options: LearningOptions | None = None,
) -> Iterator[LearningSandbox]:
    """Start the reference Learning server; yield it once it answers; stop it on exit.

    ``domains``: name -> token (default: ``demo`` and ``other`` with random tokens).
    ``database_url``: where it keeps its state (default: a fresh SQLite file, removed on exit);
    pass the same URL to a second ``running_learning`` to see the state survive a restart.
    """
    options = options or LearningOptions()
    domains = dict(domains) if domains else {"demo": new_token(), "other": new_token()}
    work_directory = Path(tempfile.mkdtemp(prefix="learning-sandbox-"))
    database_url = database_url or f"sqlite:///{work_directory / 'learning.sqlite'}"
    log_path = work_directory / "server.log"
    command = [
        sys.executable,
        "-m",
        "sandbox.learning",
        "--port",
        str(options.port),
        "--database",
        database_url,
        "--log-level",
        options.log_level,
    ]
    if not options.tls:
        command.append("--no-tls")
    if options.tls_directory is not None:
        command += ["--tls-dir", str(options.tls_directory)]
    environment = {
        **os.environ,
        **options.extra_environment,
        DOMAINS_ENV: ",".join(f"{name}:{token}" for name, token in domains.items()),
        "PYTHONUNBUFFERED": "1",
    }
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    sandbox = None
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + options.startup_timeout
        base_url = _wait_for_url(process, log_path, deadline)
        ca_bundle = None
        if options.tls:
            from sandbox import tls

            ca_bundle = tls.ensure_ca(options.tls_directory or tls.DEFAULT_TLS_DIR)
        verify = str(ca_bundle) if ca_bundle else True
        _wait_until_answering(process, base_url, verify, log_path, deadline)
        sandbox = LearningSandbox(base_url, domains, ca_bundle, database_url, process, log_path)
        yield sandbox
    finally:
        if sandbox is not None:
            sandbox.close_clients()
        stop_process(process)
        shutil.rmtree(work_directory, ignore_errors=True)
