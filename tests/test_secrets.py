"""The default password reference resolves from env, Airflow Variables and connections, and never leaks."""

from __future__ import annotations

import json

import pytest

from sis_learning.secrets import SecretReferenceError, resolve_secret


def test_env_reference_resolves(monkeypatch):
    monkeypatch.setenv("LOADTEST_SECRET_ENV", "Welcome-2025!")
    assert resolve_secret("env:LOADTEST_SECRET_ENV") == "Welcome-2025!"


def test_variable_reference_resolves_from_airflow(monkeypatch):
    # AIRFLOW_VAR_<NAME> is Airflow's own environment-variable secrets backend.
    monkeypatch.setenv("AIRFLOW_VAR_LOADTEST_PASSWORD", "from-a-variable")
    assert resolve_secret("variable:LOADTEST_PASSWORD") == "from-a-variable"


def test_connection_reference_resolves_to_the_connection_password(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_LOADTEST_PASSWORD_CONN", json.dumps({"conn_type": "generic", "password": "conn-pw"})
    )
    assert resolve_secret("connection:LOADTEST_PASSWORD_CONN") == "conn-pw"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("env:LOADTEST_NOT_SET_ANYWHERE", "environment variable LOADTEST_NOT_SET_ANYWHERE is not set"),
        ("variable:LOADTEST_NO_SUCH_VARIABLE", "Airflow Variable 'LOADTEST_NO_SUCH_VARIABLE' not found"),
        ("connection:loadtest_no_such_connection", "Airflow connection 'loadtest_no_such_connection' not found"),
        ("plain-password", "is not a secret reference"),
        ("vault:thing", "is not a secret reference"),
    ],
)
def test_unresolvable_reference_names_the_reference_and_the_fix(reference, expected, monkeypatch):
    monkeypatch.delenv("LOADTEST_NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(SecretReferenceError, match=expected):
        resolve_secret(reference)


def test_connection_without_password_is_an_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LOADTEST_EMPTY", json.dumps({"conn_type": "generic", "login": "someone"}))
    with pytest.raises(SecretReferenceError, match="has no password set"):
        resolve_secret("connection:LOADTEST_EMPTY")


def test_resolved_secret_is_masked_by_airflows_log_masker(monkeypatch):
    monkeypatch.setenv("LOADTEST_MASKED", "Mask-Me-Please-91")
    value = resolve_secret("env:LOADTEST_MASKED")
    from airflow.sdk.log import _secrets_masker

    assert "Mask-Me-Please-91" not in _secrets_masker().redact(f"password is {value}")
