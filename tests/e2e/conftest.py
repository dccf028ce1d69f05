"""Fixtures for the end-to-end runs: the demo district's DAG against the three sandboxes.

Each test gets its own sandboxes (the tiny generated district in the PowerSchool
simulator over HTTPS, a fresh reference Learning server over HTTPS whose access log we
read to count requests, an SMTP catcher) and its own staging database (SQLite, or
PostgreSQL through ``staging_url``). The DAG is ``sis_import__demo`` from the shipped
``include/districts/demo.yaml``, loaded once through a DagBag as ``scripts/demo.py`` does,
and run with ``dag.test()``: real Airflow tasks, in this process.

The tasks read the district's settings from a copy of demo.yaml that differs in one
setting: the validation threshold is 100% instead of 5%. The tiny district holds every
edge case the import rules exist for (duplicate logins, sections led by an inactive
teacher, ...) in 60 students, so a few failing rows are far more than 5% of it; the
tests check those rows one by one instead (rejected_rows against the oracle).

Run them (a few minutes; every test is marked ``slow`` and kept on one xdist worker by
``xdist_group("e2e")``, since they share Airflow's metadata database and pay Airflow's
and Great Expectations' import cost once per process):

    source scripts/airflow-env.sh && .venv/bin/python -m pytest tests/e2e
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DISTRICT_ID = "demo"
DAG_ID = "sis_import__demo"

# uvicorn's access log line: 127.0.0.1:port - "POST /api/v1/users/batch HTTP/1.1" 200
ACCESS_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) (/api/v1/[^ ?"]*)[^"]*" (\d{3})')


@dataclass
class Sandboxes:
    """The running sandboxes of one test, and how the DAG reaches them."""

    powerschool: Any
    learning: Any
    smtp: Any
    learning_token: str
    learning_database_url: str
    staging_url: str
    stack: ExitStack
    monkeypatch: pytest.MonkeyPatch

    def point_connections(self) -> None:
        """(Re)write the AIRFLOW_CONN_* variables for the current servers."""
        from scripts.demo_environment import connection_env

        for name, value in connection_env(
            DISTRICT_ID, self.powerschool, self.learning, self.learning_token, self.smtp
        ).items():
            self.monkeypatch.setenv(name, value)

    # -- Learning, seen from outside the pipeline ------------------------------------------------
    def learning_state(self) -> dict[str, Any]:
        learning = self.learning
        return {
            "organizations": {key: row["name"] for key, row in learning.organizations(DISTRICT_ID).items()},
            "users": learning.users(DISTRICT_ID),
            "user_levels": learning.user_levels(DISTRICT_ID),
            "classes": learning.classes(DISTRICT_ID),
            "rosters": learning.rosters(DISTRICT_ID),
            "parent_links": learning.parent_links(DISTRICT_ID),
        }

    def learning_log_mark(self) -> int:
        return len(self.learning.log())

    def learning_requests(self, since: int = 0) -> list[tuple[str, str, int]]:
        """Requests the Learning server served since a log mark: (method, path, status), from its access log."""
        return [(m.group(1), m.group(2), int(m.group(3))) for m in ACCESS_LINE.finditer(self.learning.log()[since:])]

    def restart_learning(self) -> None:
        """Stop the Learning server and start a new one on the same database (new port)."""
        from sandbox.learning.testing import LearningOptions, running_learning

        old = self.learning
        # The context managers stop what they started; stop this one by hand, then start again.
        from sandbox.processes import stop_process

        old.close_clients()
        stop_process(old.process)
        self.learning = self.stack.enter_context(
            running_learning(
                domains={DISTRICT_ID: self.learning_token},
                database_url=self.learning_database_url,
                options=LearningOptions(log_level="debug"),
            )
        )
        self.point_connections()


@pytest.fixture(scope="session")
def import_dag():
    """sis_import__demo, parsed once (the shipped demo district YAML)."""
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "sis_import.py"))
    assert not dagbag.import_errors, dagbag.import_errors
    dag = dagbag.dags[DAG_ID]
    PARSED_PARAMS[dag.dag_id] = dag.params.dump()
    return dag


def write_district_yaml(directory: Path) -> Path:
    """The shipped demo.yaml with the validation threshold opened up (see the module docstring)."""
    text = (REPO_ROOT / "include" / "districts" / "demo.yaml").read_text()
    assert "validation_thresholds:\n  default: 0.05" in text, "demo.yaml changed: update the e2e district"
    text = text.replace("validation_thresholds:\n  default: 0.05", "validation_thresholds:\n  default: 1.0")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{DISTRICT_ID}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def dataset() -> str:
    """The simulator's district; a test needing a bigger one parametrizes ``dataset``."""
    return "tiny"


@pytest.fixture
def irregularities() -> bool | None:
    """Whether the district has the irregularities of real ones; None: the generator's default."""
    return None


@pytest.fixture
def sandboxes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    dataset: str,
    irregularities: bool | None,
) -> Iterator[Sandboxes]:
    """Fresh sandboxes and a fresh staging database for one test (``staging_url`` when parametrized)."""
    import sis_learning.config

    monkeypatch.setattr(sis_learning.config, "DISTRICTS_DIR", write_district_yaml(tmp_path / "districts").parent)
    from sandbox.learning.testing import LearningOptions, running_learning
    from sandbox.powerschool.testing import running_powerschool
    from sandbox.smtp import running_smtp

    staging = (
        request.getfixturevalue("staging_url")
        if "staging_url" in request.fixturenames
        else f"sqlite:///{tmp_path / 'staging.sqlite'}"
    )
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", staging)
    monkeypatch.setenv(f"{DISTRICT_ID.upper()}_DEFAULT_PASSWORD", secrets.token_urlsafe(12))
    learning_database_url = f"sqlite:///{tmp_path / 'learning.sqlite'}"
    token = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        powerschool = stack.enter_context(running_powerschool(dataset, irregularities=irregularities))
        learning = stack.enter_context(
            running_learning(
                domains={DISTRICT_ID: token},
                database_url=learning_database_url,
                options=LearningOptions(log_level="debug"),
            )
        )
        smtp = stack.enter_context(running_smtp(mailbox_dir=tmp_path / "mailbox"))
        boxes = Sandboxes(powerschool, learning, smtp, token, learning_database_url, staging, stack, monkeypatch)
        boxes.point_connections()
        yield boxes
    from sis_learning.staging import base

    engine = base._ENGINES.pop(staging, None)
    if engine is not None:
        engine.dispose()


# Each DAG's params as parsed. Under dag.test() a run's conf is resolved into the DAG's own Param
# objects (Airflow's ParamsDict.__setitem__), so it would stay for the next run in this process
# (an approve_mass_changes=true or preview=true leaking into a later test): every run gets every
# param, the parsed defaults overridden by what the test asks for.
PARSED_PARAMS: dict[str, dict[str, Any]] = {}


def run_dag(dag, **conf: Any):
    """One DAG run with dag.test(); returns (dag_run, seconds)."""
    started = time.monotonic()
    dag_run = dag.test(run_conf={**PARSED_PARAMS.get(dag.dag_id, {}), **conf} or None)
    return dag_run, time.monotonic() - started


def staged_rows(staging_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a query on the staging database (the analyst's view of a run)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(staging_url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()
