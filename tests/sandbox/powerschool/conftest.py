"""Fixtures for the PowerSchool simulator's tests: a running server and an API client for it.

``powerschool`` is one tiny-district server per test session, read-only by convention;
its options are reset to the defaults after every test. Tests that change data start their
own server with ``running_powerschool``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.powerschool.options import ServerOptions
from sandbox.powerschool.testing import PowerSchoolSandbox, running_powerschool


class ApiClient:
    """A minimal, verifying PowerSchool API client for the tests (the pipeline has its own)."""

    def __init__(self, sandbox: PowerSchoolSandbox, timeout: float = 30.0):
        self.sandbox = sandbox
        self.http = httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context(), timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    def token_response(self, **kwargs: Any) -> httpx.Response:
        return self.http.post(
            "/oauth/access_token",
            auth=(self.sandbox.client_id, self.sandbox.client_secret),
            data={"grant_type": "client_credentials"},
            headers={"Accept": "application/json"},
            **kwargs,
        )

    def token(self) -> str:
        if self._token is None:
            response = self.token_response()
            assert response.status_code == 200, response.text
            self._token = response.json()["access_token"]
        return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.headers())

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def post(self, path: str, body: Any, **params: Any) -> httpx.Response:
        return self.http.post(path, params=params, json=body, headers=self.headers())

    def put(self, path: str, body: Any, **params: Any) -> httpx.Response:
        return self.http.put(path, params=params, json=body, headers=self.headers())


def as_list(value: Any) -> list[Any]:
    """Undo quirks 1 and 4 the way a client must: object -> [object], empty shapes -> []."""
    if value in (None, "", [], {}):
        return []
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="session")
def powerschool() -> Iterator[PowerSchoolSandbox]:
    with running_powerschool("tiny") as sandbox:
        yield sandbox


@pytest.fixture
def api(powerschool: PowerSchoolSandbox) -> Iterator[ApiClient]:
    client = ApiClient(powerschool)
    yield client
    client.close()
    powerschool.configure(**ServerOptions().as_dict())


@pytest.fixture
def oracle(powerschool: PowerSchoolSandbox):
    with powerschool.store() as store:
        yield store


@pytest.fixture(scope="module")
def writable_sandbox() -> Iterator[PowerSchoolSandbox]:
    """A tiny-district server of its own, for tests that change data (one per test module)."""
    with running_powerschool("tiny") as sandbox:
        yield sandbox


@pytest.fixture
def powerschool_writable(writable_sandbox: PowerSchoolSandbox):
    client = ApiClient(writable_sandbox)
    with writable_sandbox.store() as store:
        yield writable_sandbox, client, store
    client.close()
    writable_sandbox.configure(**ServerOptions().as_dict())
