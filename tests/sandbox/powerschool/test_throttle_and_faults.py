"""The per-client throttle (429 + Retry-After) and fault injection: latency, 5xx, resets, slowness."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.sandbox.powerschool.conftest import ApiClient


def test_everything_is_off_by_default(api):
    statuses = [api.get("/ws/v1/metadata").status_code for _ in range(20)]
    assert statuses == [200] * 20


def test_throttle_refuses_requests_that_come_too_fast(api, powerschool):
    api.token()
    powerschool.configure(throttle_ms=400)
    assert api.get("/ws/v1/metadata").status_code == 200
    refused = api.get("/ws/v1/metadata")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "too many requests, wait 1 seconds" in refused.json()["message"]
    time.sleep(0.45)
    assert api.get("/ws/v1/metadata").status_code == 200


def test_throttle_lets_a_patient_client_through(api, powerschool):
    api.token()
    powerschool.configure(throttle_ms=100)
    statuses = []
    for _ in range(5):
        statuses.append(api.get("/ws/v1/metadata").status_code)
        time.sleep(0.12)
    assert statuses == [200] * 5


def test_error_rate_one_answers_every_configured_status(api, powerschool):
    api.token()
    powerschool.configure(error_rate=1.0)
    statuses = {api.get("/ws/v1/metadata").status_code for _ in range(30)}
    assert statuses == {500, 502, 503}
    powerschool.configure(error_statuses=[503])
    assert {api.get("/ws/v1/metadata").status_code for _ in range(5)} == {503}
    log = powerschool.request_log()
    assert log[-1]["fault"] == "error" and log[-1]["status"] == 503


def test_error_rate_is_a_share_and_seeded(api, powerschool):
    api.token()

    def run():
        powerschool.configure(error_rate=0.3, fault_seed=7)
        return [api.get("/ws/v1/metadata").status_code for _ in range(100)]

    first = run()
    powerschool.configure(fault_seed=0)
    second = run()
    assert first == second
    failures = sum(status != 200 for status in first)
    assert 15 <= failures <= 45


def test_faults_spare_the_token_endpoint_by_default(api, powerschool):
    powerschool.configure(error_rate=1.0)
    assert api.token_response().status_code == 200


def test_connection_reset(api, powerschool):
    api.token()
    powerschool.configure(reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        api.get("/ws/v1/metadata")
    powerschool.configure(reset_rate=0.0)
    assert api.get("/ws/v1/metadata").status_code == 200


def test_slow_response_beats_a_client_timeout(powerschool):
    client = ApiClient(powerschool, timeout=0.5)
    try:
        client.token()
        powerschool.configure(slow_rate=1.0, slow_ms=1500)
        with pytest.raises(httpx.ReadTimeout):
            client.get("/ws/v1/metadata")
    finally:
        client.close()
        powerschool.configure(slow_rate=0.0)


def test_fixed_latency_is_added(api, powerschool):
    api.token()
    powerschool.configure(latency_ms=150)
    started = time.perf_counter()
    assert api.get("/ws/v1/metadata").status_code == 200
    assert time.perf_counter() - started >= 0.15


def test_bad_options_are_refused_with_the_option_name(powerschool):
    from sandbox.powerschool.testing import SandboxError

    with pytest.raises(SandboxError, match="unknown option"):
        powerschool.configure(eror_rate=0.5)
    with pytest.raises(SandboxError, match="error_rate"):
        powerschool.configure(error_rate=2)
    with pytest.raises(SandboxError, match="max_page_sizes"):
        powerschool.configure(max_page_sizes={"students": 10})


def test_request_counts(api, powerschool):
    powerschool.reset_request_log()
    api.token()
    for _ in range(3):
        api.get("/ws/v1/district/school")
    counts = powerschool.request_counts()
    assert counts == {"POST /oauth/access_token": 1, "GET /ws/v1/district/school": 3}


def test_admin_api_needs_its_token(powerschool):
    response = httpx.get(f"{powerschool.base_url}/sandbox/admin/info", verify=powerschool.ssl_context())
    assert response.status_code == 403


def test_throttle_variants_without_retry_after_or_with_another_status(api, powerschool):
    api.token()
    powerschool.configure(throttle_ms=400, throttle_retry_after=False, throttle_status=503)
    assert api.get("/ws/v1/metadata").status_code == 200
    refused = api.get("/ws/v1/metadata")
    assert refused.status_code == 503
    assert "Retry-After" not in refused.headers
    assert "wait 1 seconds" in refused.json()["message"]


def test_field_grants_name_real_tables_and_columns(powerschool):
    from sandbox.powerschool.testing import SandboxError

    with pytest.raises(SandboxError, match="unknown table 'Students'"):
        powerschool.configure(field_grants={"Students": ["dcid"]})
    with pytest.raises(SandboxError, match="unknown column"):
        powerschool.configure(field_grants={"students": ["dcid", "shoe_size"]})


def test_the_client_secret_stays_out_of_repr(powerschool):
    assert powerschool.client_secret not in repr(powerschool)
    assert powerschool.admin_token not in repr(powerschool)


def test_truncated_answer(api, powerschool):
    api.token()
    powerschool.configure(truncate_rate=1.0)
    with pytest.raises(httpx.TransportError):
        api.get("/ws/v1/district/student", pagesize=100)
    assert powerschool.request_log()[-1]["fault"] == "truncated"
