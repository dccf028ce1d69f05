"""Shared fixtures: staging databases (SQLite and real PostgreSQL) and the repo paths.

PostgreSQL: tests marked ``postgres`` (or using ``postgres_url``) get a fresh database on
the server named by ``SIS_LEARNING_TEST_POSTGRES`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). With no server they are
skipped with a reason, unless ``SIS_LEARNING_REQUIRE_POSTGRES=1`` (set by .ci/run),
which turns the skip into a failure.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT / "plugins", REPO_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

POSTGRES_ADMIN_URL = os.environ.get(
    "SIS_LEARNING_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("SIS_LEARNING_REQUIRE_POSTGRES") == "1"

_skipped_postgres: list[str] = []


def _postgres_unavailable_reason() -> str | None:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any connection failure means "no server here"
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(error).__name__}: {str(error).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    reason = _postgres_unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (SIS_LEARNING_REQUIRE_POSTGRES=1: PostgreSQL tests are required)")
        _skipped_postgres.append(reason)
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"sis_learning_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from sis_learning.staging import base

        for key in [key for key in base._ENGINES if name in key]:
            base._ENGINES.pop(key).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'staging.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def staging_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test once on SQLite and once on real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'staging.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def staging_engine(staging_url: str):
    from sis_learning.staging.base import create_all, get_engine

    return create_all(get_engine(staging_url))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _skipped_postgres:
        terminalreporter.write_line(
            f"NOTE: PostgreSQL tests were skipped: {_skipped_postgres[0]}", yellow=True, bold=True
        )


@pytest.fixture(autouse=True)
def _xdist_group_is_honoured(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup`` a grouped test must carry its ``@group`` suffix.

    Tests that share one resource (Airflow's metadata database for ``dag.test()``, the
    Celery stack) rely on xdist keeping their group on one worker. pytest-xdist does that
    by renaming the node id; a pytest release that ignores the rename (pytest 9 with xdist
    3.8 does) silently spreads the group over both workers, and they race. Fail loudly.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None or request.config.getoption("dist", None) != "loadgroup":
        return
    groups = [
        mark.args[0] if mark.args else mark.kwargs.get("name") for mark in request.node.iter_markers("xdist_group")
    ]
    if groups and "@" not in request.node.nodeid:
        pytest.fail(
            f"xdist_group {groups} is not honoured by this pytest/pytest-xdist pair: pin the versions of "
            "requirements-dev.txt",
            pytrace=False,
        )
