"""Start the PowerSchool SIS simulator from tests and scripts, and drive its admin API.

    from sandbox.powerschool.testing import running_powerschool

    with running_powerschool("tiny", options={"throttle_ms": 100}) as powerschool:
        client = httpx.Client(base_url=powerschool.base_url, verify=powerschool.ssl_context())
        ...
        powerschool.expire_tokens()
        powerschool.request_counts()

The server runs in its own process (``python -m sandbox.powerschool``), so it never shares
the GIL with the client under test; the context manager waits until it answers over HTTPS
and stops it on exit. Credentials are random per start and reach the server through its
environment, never its command line.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
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

from sandbox.powerschool import datasets, store
from sandbox.processes import stop_process

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class SandboxError(RuntimeError):
    """The simulator did not start, or an admin call failed; the message says why."""


@dataclass
class PowerSchoolSandbox:
    """A running simulator: where it is, how to authenticate, and its admin API."""

    base_url: str
    client_id: str
    ca_bundle: Path
    dataset_path: Path  # the generated/loaded dataset (never modified)
    database_path: Path  # the live working copy (admin changes and PowerTeacher writes land here)
    client_secret: str = field(repr=False)  # kept out of repr: a failing test's output never shows it
    admin_token: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _admin_client: httpx.Client | None = field(default=None, repr=False)

    # -- connection helpers ---------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """A verifying TLS context that trusts the sandbox CA (and nothing is ever unverified)."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def store(self) -> store.DatasetStore:
        """Read the live data (after admin changes) directly, for test oracles. Close it after use."""
        return store.DatasetStore(self.database_path)

    def _admin(
        self, method: str, name: str, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        if self._admin_client is None:
            self._admin_client = httpx.Client(
                base_url=self.base_url,
                verify=self.ssl_context(),
                timeout=60,
                headers={"X-Sandbox-Admin-Token": self.admin_token},
            )
        response = self._admin_client.request(method, f"/sandbox/admin/{name}", json=body, params=params)
        if response.status_code >= 400:
            raise SandboxError(f"admin {method} {name} failed: {response.status_code} {response.text}")
        return response.json()

    def close(self) -> None:
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None

    # -- server behaviour -----------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._admin("GET", "info")

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change options at runtime (faults, throttle, token lifetime, max page sizes, grants, ...)."""
        return self._admin("POST", "options", options)

    def expire_tokens(self) -> int:
        """Expire every issued access token now; the next API call gets a 401."""
        return self._admin("POST", "expire-tokens")["expired"]

    def issued_tokens(self) -> list[str]:
        """Every access token the server issued since it started (secrets a log must never show)."""
        return self._admin("GET", "tokens")["tokens"]

    def request_log(self, after: int = 0) -> list[dict[str, Any]]:
        """API requests served (method, path, query, status, client_id, fault), oldest first."""
        return self._admin("GET", "requests", params={"after": after})["requests"]

    def request_counts(self) -> dict[str, int]:
        """Requests served per "METHOD /path" (admin calls are not counted)."""
        return self._admin("GET", "requests", params={"after": 10**12})["counts"]

    def reset_request_log(self) -> None:
        self._admin("DELETE", "requests")

    # -- the district, between runs -----------------------------------------------------------
    def enroll_student(self, student_dcid: int, section_dcid: int, **dates: str) -> dict[str, Any]:
        """Add a CC row (dateenrolled/dateleft default to the section's term)."""
        return self._admin("POST", "enroll", {"student_dcid": student_dcid, "section_dcid": section_dcid, **dates})

    def drop_enrollment(self, student_dcid: int, section_dcid: int, dateleft: str | None = None) -> dict[str, Any]:
        """Drop as PowerSchool does: the CC row stays, its SectionID turns negative."""
        return self._admin(
            "POST", "drop", {"student_dcid": student_dcid, "section_dcid": section_dcid, "dateleft": dateleft}
        )

    def rename(self, entity: str, record_id: int, **changes: Any) -> dict[str, Any]:
        """Change columns of a student, teacher, guardian, school, course or section (by DCID / GuardianID)."""
        return self._admin("POST", "rename", {"entity": entity, "id": record_id, "changes": changes})

    def set_enroll_status(self, student_dcid: int, enroll_status: int, exitdate: str | None = None) -> dict[str, Any]:
        return self._admin(
            "POST",
            "student-status",
            {"student_dcid": student_dcid, "enroll_status": enroll_status, "exitdate": exitdate},
        )

    def deactivate_teacher(self, teacher_dcid: int) -> dict[str, Any]:
        return self._admin("POST", "deactivate-teacher", {"teacher_dcid": teacher_dcid})

    def add_section(
        self, school_dcid: int, course_number: str, term_id: int, teacher_dcid: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Add a section; returns {"section_id", "section_dcid"}. ``term_id`` is Terms.ID (e.g. 3500)."""
        return self._admin(
            "POST",
            "sections",
            {
                "school_dcid": school_dcid,
                "course_number": course_number,
                "term_id": term_id,
                "teacher_dcid": teacher_dcid,
                **extra,
            },
        )

    def add_student(self, school_dcid: int, first_name: str, last_name: str, **columns: Any) -> dict[str, Any]:
        """A new student (grade_level, student_web_id, email, enroll_status, ...); returns {"id", "dcid", ...}."""
        return self._admin(
            "POST",
            "students",
            {"school_dcid": school_dcid, "first_name": first_name, "last_name": last_name, **columns},
        )

    def add_teacher(self, school_dcid: int, first_name: str, last_name: str, **columns: Any) -> dict[str, Any]:
        """A new active teacher (teacherloginid, loginid, email_addr); returns {"id", "dcid", "users_dcid"}."""
        return self._admin(
            "POST",
            "teachers",
            {"school_dcid": school_dcid, "first_name": first_name, "last_name": last_name, **columns},
        )

    def rekey(self, entity: str, count: int) -> list[tuple[int, int]]:
        """Give the first ``count`` students/teachers new DCIDs (a mid-year import-ID change); [(old, new)]."""
        return [tuple(pair) for pair in self._admin("POST", "rekey", {"entity": entity, "count": count})["changed"]]

    # -- PowerTeacher Pro read-back -------------------------------------------------------------
    def assignments(self, section_dcid: int | None = None) -> list[dict[str, Any]]:
        """Assignments written through /ws/xte, with their sections and ``_assignmentscores``."""
        return self._admin("GET", "assignments", params={"section_dcid": section_dcid} if section_dcid else None)

    def set_gradebook_type(self, section_dcid: int, gradebooktype: int) -> dict[str, Any]:
        """Put a section on the legacy PowerTeacher Gradebook (1) or PowerTeacher Pro (2, the default)."""
        return self._admin("POST", "gradebook-type", {"section_dcid": section_dcid, "gradebooktype": gradebooktype})

    def add_teacher_category(
        self, users_dcid: int | None, name: str, categorytype: str = "user", isactive: bool = True
    ) -> int:
        return self._admin(
            "POST",
            "teacher-category",
            {"users_dcid": users_dcid, "name": name, "categorytype": categorytype, "isactive": isactive},
        )["id"]

    def ptg_assignments(self, section_dcid: int | None = None) -> list[dict[str, Any]]:
        """Assignments written through the legacy PowerTeacher Gradebook API, with their ``_assignment_scores``."""
        return self._admin("GET", "ptg-assignments", params={"section_dcid": section_dcid} if section_dcid else None)

    def scores(self, assignment_section_id: int | None = None, section_dcid: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if assignment_section_id is not None:
            params["assignmentsectionid"] = assignment_section_id
        if section_dcid is not None:
            params["section_dcid"] = section_dcid
        return self._admin("GET", "scores", params=params)


@contextmanager
def running_powerschool(
    dataset: str | Path = "tiny",
    *,
    seed: int = 1,
    options: dict[str, Any] | None = None,
    startup_timeout: float = 180.0,
    irregularities: bool | None = None,
) -> Iterator[PowerSchoolSandbox]:
    """Start the simulator on a free port of 127.0.0.1 and yield it; stop it on exit.

    ``dataset`` is a size (tiny, demo, S, M, L), a fixture .json or a dataset .sqlite. The
    dataset is generated (or loaded) here, once, and cached under .sandbox/datasets.
    ``irregularities``: a generated district with (True) or without (False) the
    irregularities of real districts; None = the generator's default.
    """
    dataset_path = datasets.resolve_dataset(dataset, seed=seed, irregularities=irregularities)
    with tempfile.TemporaryDirectory(prefix="powerschool-sandbox-test-") as scratch:
        ready_file = Path(scratch) / "ready.json"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPOSITORY_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "POWERSCHOOL_SANDBOX_CLIENT_SECRET": secrets.token_urlsafe(24),
            "POWERSCHOOL_SANDBOX_ADMIN_TOKEN": secrets.token_urlsafe(24),
        }
        environment.pop("POWERSCHOOL_SANDBOX_OPTIONS", None)
        command = [
            sys.executable,
            "-m",
            "sandbox.powerschool",
            "--dataset",
            str(dataset_path),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--ready-file",
            str(ready_file),
            "--quiet",
            "--exit-with-parent",
        ]
        if options:
            command += ["--options", json.dumps(options)]
        process = subprocess.Popen(command, cwd=REPOSITORY_ROOT, env=environment)
        sandbox: PowerSchoolSandbox | None = None
        try:
            deadline = time.monotonic() + startup_timeout
            while not ready_file.exists():
                if process.poll() is not None:
                    raise SandboxError(
                        f"the PowerSchool sandbox exited with code {process.returncode} "
                        f"before listening (see its stderr above); command: {' '.join(command)}"
                    )
                if time.monotonic() > deadline:
                    raise SandboxError(f"the PowerSchool sandbox did not start within {startup_timeout} s")
                time.sleep(0.02)
            details = json.loads(ready_file.read_text())
            sandbox = PowerSchoolSandbox(
                base_url=details["base_url"],
                client_id=details["client_id"],
                client_secret=details["client_secret"],
                ca_bundle=Path(details["ca_bundle"]),
                dataset_path=Path(details["dataset_path"]),
                database_path=Path(details["database_path"]),
                admin_token=details["admin_token"],
                process=process,
            )
            sandbox.info()  # answers over HTTPS: ready
            yield sandbox
        finally:
            if sandbox is not None:
                sandbox.close()
            stop_process(process)
