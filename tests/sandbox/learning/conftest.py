"""Fixtures for the reference Learning server: one real server per database backend, a fresh domain per test.

Starting a server takes about a second, so each backend (SQLite, PostgreSQL) gets one
server per test session with many domains, and every test takes domains nobody else
used: tests stay isolated (a domain sees only its own rows) and the suite stays fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.learning.domains import new_token
from sandbox.learning.testing import LearningSandbox, running_learning

DOMAINS_PER_SERVER = 120


@pytest.fixture(scope="session")
def learning_postgres_database(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL database for the session's server (tests/conftest.py's postgres_url is per test)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"learning_sandbox_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class ServerUnderTest:
    def __init__(self, sandbox: LearningSandbox, backend: str) -> None:
        self.sandbox = sandbox
        self.backend = backend
        self._unused = iter(sorted(sandbox.tokens))

    def fresh_domain(self) -> str:
        try:
            return next(self._unused)
        except StopIteration:
            raise RuntimeError(f"raise DOMAINS_PER_SERVER ({DOMAINS_PER_SERVER}): every domain is used") from None


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def learning_server(request: pytest.FixtureRequest) -> Iterator[ServerUnderTest]:
    """A running server (HTTPS, real database), once on SQLite and once on PostgreSQL."""
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("learning_postgres_database")
    domains = {f"d{number:03d}": new_token() for number in range(DOMAINS_PER_SERVER)}
    with running_learning(domains, database_url) as sandbox:
        yield ServerUnderTest(sandbox, request.param)


class DomainUnderTest:
    """One fresh domain of a running server, with short calls for tests."""

    def __init__(self, sandbox: LearningSandbox, name: str) -> None:
        self.sandbox = sandbox
        self.name = name
        self.http = sandbox.client(name)

    def batch(self, entity: str, rows: list[Any]) -> dict[str, Any]:
        response = self.http.post(f"/api/v1/{entity}/batch", json={"rows": rows})
        assert response.status_code == 200, response.text
        return response.json()

    def statuses(self, entity: str, rows: list[Any]) -> list[str]:
        return [result["status"] for result in self.batch(entity, rows)["results"]]

    def reasons(self, entity: str, rows: list[Any]) -> list[str | None]:
        return [result["reason"] for result in self.batch(entity, rows)["results"]]

    def __getattr__(self, name: str) -> Any:
        """sandbox helpers with this domain filled in: domain.users(), domain.set_score(...)."""
        helper = getattr(self.sandbox, name)
        return lambda *args, **kwargs: helper(self.name, *args, **kwargs)


@pytest.fixture
def domain(learning_server: ServerUnderTest) -> DomainUnderTest:
    return DomainUnderTest(learning_server.sandbox, learning_server.fresh_domain())


@pytest.fixture
def other_domain(learning_server: ServerUnderTest) -> DomainUnderTest:
    return DomainUnderTest(learning_server.sandbox, learning_server.fresh_domain())
