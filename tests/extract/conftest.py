"""Fixtures for extract tests: the PowerSchool sandbox over HTTPS, a district config, hooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sis_learning.config import DistrictConfig
from sis_learning.hooks.http_client import RetryPolicy
from sis_learning.hooks.powerschool import PowerSchoolHook

# Quick retries: the fault tests inject many 5xx and must stay fast.
TEST_RETRIES = RetryPolicy(max_retries=8, base_delay_seconds=0.01, max_delay_seconds=0.1, max_total_wait_seconds=30)
START_YEAR = 2025  # the generator's import start year: 2023 and 2024 sections are older


@pytest.fixture(scope="session")
def powerschool() -> Iterator[Any]:
    """The tiny sandbox district, shared by the extract tests (each resets what it changes)."""
    from sandbox.powerschool.testing import running_powerschool

    with running_powerschool(dataset="tiny") as server:
        yield server


@pytest.fixture
def sandbox(powerschool):
    """The shared sandbox, with its options back to the defaults after the test."""
    from sandbox.powerschool.options import ServerOptions

    yield powerschool
    powerschool.configure(**ServerOptions().as_dict())


def make_config(**overrides: Any) -> DistrictConfig:
    settings: dict[str, Any] = {
        "district_id": "tiny",
        "name": "Tiny test district",
        "powerschool": {"connection_id": "powerschool_tiny", "max_concurrent_requests": 4},
        "learning": {"connection_id": "learning_tiny"},
        "schools": "all",
        "import_start_year": START_YEAR,
    }
    settings.update(overrides)
    return DistrictConfig.model_validate(settings)


def make_hook(server: Any, **options: Any) -> PowerSchoolHook:
    options.setdefault("retry_policy", TEST_RETRIES)
    options.setdefault("max_concurrent_requests", 4)
    return PowerSchoolHook.from_settings(
        server.base_url, server.client_id, server.client_secret, server.ca_bundle, **options
    )
