"""Fixtures for the load tests: one reference Learning server (HTTPS) per module, a fresh domain per test.

The server is the project's reference Learning (``sandbox.learning.testing.running_learning``);
every test gets a domain of its own (its own token), so tests never see each other's users.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sandbox.learning.testing import running_learning
from sis_learning.hooks.learning import LearningHook

DOMAINS_PER_SERVER = 40
DEFAULT_PASSWORD = "Loadtest-Default-Pw-7731"


@dataclass
class LearningDomain:
    name: str
    token: str
    base_url: str
    ca_bundle: str

    def hook(self, **options) -> LearningHook:
        return LearningHook.from_settings(self.base_url, self.token, self.ca_bundle, **options)


@pytest.fixture(scope="module")
def learning_server():
    domains = {f"load{index:02d}": secrets.token_urlsafe(24) for index in range(DOMAINS_PER_SERVER)}
    with running_learning(domains=domains) as server:
        server.free_domains = list(domains)
        yield server


@pytest.fixture
def learning_domain(learning_server) -> LearningDomain:
    """A Learning domain no other test has touched."""
    name = learning_server.free_domains.pop(0)
    return LearningDomain(name, learning_server.tokens[name], learning_server.base_url, str(learning_server.ca_bundle))


@pytest.fixture
def sqlite_staging_engine(sqlite_url):
    """SQLite staging only: for tests whose subject does not depend on the database."""
    from sis_learning.staging.base import create_all, get_engine

    return create_all(get_engine(sqlite_url))


@pytest.fixture
def default_password(monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("LOADTEST_DEFAULT_PASSWORD", DEFAULT_PASSWORD)
    yield DEFAULT_PASSWORD
