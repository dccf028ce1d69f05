"""The HTTP client layer over real TLS: verification, retries, backoff, throttle, concurrency."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sis_learning.hooks.http_client import (
    ApiConfigurationError,
    ApiError,
    ApiHttpHook,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RetriesExhaustedError,
    RetryPolicy,
    TlsVerificationError,
    ValidationFailedError,
    parse_retry_after,
    parse_wait_hint,
    path_kind,
    redact_url,
)
from tests.hooks.scripted_server import Answer, scripted_server

FAST_RETRIES = RetryPolicy(max_retries=4, base_delay_seconds=0.01, max_delay_seconds=0.05, max_total_wait_seconds=10)
SECRET = "s3cret-password-value"


@pytest.fixture(scope="module")
def tls_directory(tmp_path_factory):
    return tmp_path_factory.mktemp("tls")


def make_hook(server, **options) -> ApiHttpHook:
    options.setdefault("retry_policy", FAST_RETRIES)
    return ApiHttpHook.from_settings(server.base_url, "client", SECRET, server.ca_bundle, **options)


def sequence(*answers: Answer):
    """A script that plays the answers in order, then repeats the last one."""

    def script(_seen, number):
        return answers[min(number, len(answers)) - 1]

    return script


def test_get_returns_response_and_counts_requests_by_path_kind(tls_directory):
    with scripted_server(sequence(Answer(200, {"ok": True})), tls_directory) as server:
        hook = make_hook(server)
        assert hook.request_json("GET", "/ws/v1/school/12/student", params={"page": 1}) == {"ok": True}
        hook.request("GET", "/ws/v1/school/13/student")
    assert hook.stats.requests == {"GET /ws/v1/school/{id}/student": 2}
    assert server.seen[0].path == "/ws/v1/school/12/student?page=1"
    assert server.seen[0].headers["Accept"] == "application/json"


def test_untrusted_certificate_fails_fast_with_advice(tls_directory, tmp_path):
    with scripted_server(sequence(Answer(200, {})), tls_directory) as server:
        other_ca = ApiHttpHook.from_settings(server.base_url, ca_bundle=None, retry_policy=FAST_RETRIES)
        with pytest.raises(TlsVerificationError, match="ca_bundle"):
            other_ca.request("GET", "/x")
        from sandbox.tls import ensure_ca

        wrong_bundle = ensure_ca(tmp_path / "another-ca")
        with pytest.raises(TlsVerificationError):
            ApiHttpHook.from_settings(server.base_url, ca_bundle=wrong_bundle, retry_policy=FAST_RETRIES).request(
                "GET", "/x"
            )
    assert server.seen == []  # the handshake failed: nothing was ever sent, nothing retried


@pytest.mark.parametrize(
    ("base_url", "extra", "message"),
    [
        ("http://127.0.0.1:1", {}, "HTTPS"),
        ("https://127.0.0.1:1", {"verify": False}, "cannot be turned off"),
        ("https://127.0.0.1:1", {"ca_bundle": "/no/such/ca.pem"}, "does not exist"),
    ],
)
def test_unsafe_or_broken_connections_are_refused(base_url, extra, message):
    connection = ApiHttpHook.connection_from_settings(base_url, "client", SECRET, extra=extra)
    hook = ApiHttpHook(connection=connection)
    with pytest.raises(ApiConfigurationError, match=message):
        hook.request("GET", "/x")


def test_connection_from_environment_variable(tls_directory, monkeypatch):
    with scripted_server(sequence(Answer(200, {"n": 1})), tls_directory) as server:
        host, port = server.base_url.removeprefix("https://").split(":")
        monkeypatch.setenv(
            "AIRFLOW_CONN_SCRIPTED_API",
            json.dumps(
                {
                    "conn_type": "http",
                    "host": host,
                    "schema": "https",
                    "port": int(port),
                    "login": "client",
                    "password": SECRET,
                    "extra": {"ca_bundle": server.ca_bundle},
                }
            ),
        )
        hook = ApiHttpHook(http_conn_id="scripted_api", retry_policy=FAST_RETRIES)
        assert hook.request_json("GET", "/ping") == {"n": 1}
        assert hook.base_url == server.base_url


def test_transient_errors_are_retried_until_success(tls_directory):
    answers = sequence(Answer(503), Answer(502), Answer(500), Answer(504), Answer(200, {"done": 1}))
    with scripted_server(answers, tls_directory) as server:
        hook = make_hook(server)
        assert hook.request_json("GET", "/data") == {"done": 1}
    assert len(server.seen) == 5
    assert hook.stats.retries["GET /data"] == 4


def test_retry_budget_exhausted_raises_transient_error(tls_directory):
    with scripted_server(sequence(Answer(500, {"message": "boom"})), tls_directory) as server:
        hook = make_hook(server)
        with pytest.raises(RetriesExhaustedError, match="5 attempts") as raised:
            hook.request("GET", "/data")
    assert len(server.seen) == FAST_RETRIES.max_retries + 1
    assert raised.value.status == 500
    assert SECRET not in str(raised.value)


def test_total_wait_budget_bounds_retries(tls_directory):
    policy = RetryPolicy(max_retries=50, base_delay_seconds=0.01, max_delay_seconds=0.01, max_total_wait_seconds=0.3)
    with scripted_server(
        sequence(Answer(429, {"message": "too many requests, wait 1 seconds"})), tls_directory
    ) as server:
        started = time.monotonic()
        with pytest.raises(RetriesExhaustedError):
            make_hook(server, retry_policy=policy).request("GET", "/data")
    # the wait hint (1 s) exceeds the 0.3 s budget: give up at once instead of sleeping past it
    assert time.monotonic() - started < 0.9
    assert len(server.seen) == 1


def test_throttle_honours_retry_after_seconds(tls_directory):
    answers = sequence(Answer(429, {"message": "too many requests"}, {"Retry-After": "1"}), Answer(200, {}))
    with scripted_server(answers, tls_directory) as server:
        hook = make_hook(server)
        started = time.monotonic()
        hook.request("GET", "/data")
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0
    assert hook.stats.throttled == 1


def test_throttle_honours_powerschool_wait_message(tls_directory):
    answers = sequence(Answer(429, {"message": "Too many requests, wait 1 seconds"}), Answer(200, {}))
    with scripted_server(answers, tls_directory) as server:
        hook = make_hook(server)
        started = time.monotonic()
        hook.request("GET", "/data")
    assert time.monotonic() - started >= 1.0


def test_throttle_pauses_every_thread_of_the_host(tls_directory):
    # One thread is throttled with a 1 s hint; requests started by other threads during the
    # pause must wait too instead of hammering the server.
    throttled_once = threading.Event()

    def script(seen, _number):
        if seen.path == "/first" and not throttled_once.is_set():
            throttled_once.set()
            return Answer(429, {}, {"Retry-After": "1"})
        return Answer(200, {})

    with scripted_server(script, tls_directory) as server:
        hook = make_hook(server, max_concurrent_requests=4)
        first = threading.Thread(target=hook.request, args=("GET", "/first"))
        first.start()
        throttled_once.wait(5)
        time.sleep(0.1)
        started = time.monotonic()
        hook.request("GET", "/second")
        waited = time.monotonic() - started
        first.join()
    assert waited >= 0.7


def test_connection_reset_and_timeout_are_retried(tls_directory):
    answers = sequence(Answer(reset_connection=True), Answer(delay_seconds=1.0), Answer(200, {"ok": 1}))
    with scripted_server(answers, tls_directory) as server:
        hook = make_hook(server, timeout_seconds=0.3)
        assert hook.request_json("GET", "/data") == {"ok": 1}
    assert len(server.seen) == 3


def test_connection_broken_mid_body_is_retried(tls_directory):
    body = {"rows": list(range(2000))}
    answers = sequence(Answer(200, body, truncate_body=True), Answer(200, body))
    with scripted_server(answers, tls_directory) as server:
        assert make_hook(server).request_json("GET", "/data") == body
    assert len(server.seen) == 2


def test_non_idempotent_request_is_not_repeated_after_a_server_error(tls_directory):
    with (
        scripted_server(sequence(Answer(500, {"message": "oops"}), Answer(201, {})), tls_directory) as server,
        pytest.raises(ApiError, match="HTTP 500"),
    ):
        make_hook(server).request("POST", "/create", json={"a": 1}, expected=(201,), idempotent=False)
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (401, {"message": "bad token"}, AuthenticationError),
        (403, {"message": "no permission"}, PermissionDeniedError),
        (404, {"message": "not found"}, NotFoundError),
        (409, {"message": "conflict"}, ValidationFailedError),
        (
            400,
            {
                "message": "Validation Failed",
                "errors": [{"resource": "cc", "field": "sectionid", "code": "No access to the field"}],
            },
            ValidationFailedError,
        ),
        (415, {"message": "unsupported media"}, ApiError),
    ],
)
def test_fatal_answers_raise_at_once_without_secrets(tls_directory, status, body, error_class):
    with (
        scripted_server(sequence(Answer(status, body)), tls_directory) as server,
        pytest.raises(error_class) as raised,
    ):
        make_hook(server).request("GET", "/ws/v1/thing/5", params={"access_token": "tok-123"})
    assert len(server.seen) == 1
    text = str(raised.value) + raised.value.url
    assert SECRET not in text and "tok-123" not in text
    assert raised.value.status == status
    assert body["message"] in str(raised.value)


def test_concurrency_is_bounded_per_host(tls_directory):
    with scripted_server(sequence(Answer(200, {}, delay_seconds=0.15)), tls_directory) as server:
        hook = make_hook(server, max_concurrent_requests=3)
        threads = [threading.Thread(target=hook.request, args=("GET", f"/item/{n}")) for n in range(9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert server.peak_in_flight == 3
    assert hook.stats.requests["GET /item/{id}"] == 9


def test_parsers():
    assert parse_retry_after("7") == 7.0
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    assert 8 <= parse_retry_after(in_ten) <= 10
    assert parse_retry_after("soon") is None
    assert parse_wait_hint("too many requests, wait 3 seconds") == 3.0
    assert parse_wait_hint("slow down") is None
    assert path_kind("/ws/v1/section/-45/section_enrollment/") == "/ws/v1/section/{id}/section_enrollment"
    assert "abc" not in redact_url("https://h/x?access_token=abc&page=2")
    assert "page=2" in redact_url("https://h/x?access_token=abc&page=2")


def test_after_a_throttle_requests_are_spaced_instead_of_stampeding(tls_directory):
    # A server with PowerSchool's "minimum time between requests" (40 ms); four threads.
    last_accepted = [0.0]
    lock = threading.Lock()

    def script(_seen, _number):
        with lock:
            now = time.monotonic()
            if now - last_accepted[0] < 0.04:
                return Answer(429, {"message": "too many requests, wait 1 seconds"}, {"Retry-After": "1"})
            last_accepted[0] = now
        return Answer(200, {})

    with scripted_server(script, tls_directory) as server:
        hook = make_hook(
            server,
            max_concurrent_requests=4,
            retry_policy=RetryPolicy(max_retries=10, base_delay_seconds=0.01, max_total_wait_seconds=30),
        )
        started = time.monotonic()
        threads = [threading.Thread(target=hook.request, args=("GET", f"/spaced/{n}")) for n in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert hook.stats.requests["GET /spaced/{id}"] == len(server.seen)
    successes = len(server.seen) - hook.stats.throttled
    assert successes == 24
    # without spacing every pause ends in a new stampede; with it, a few refusals at most
    assert hook.stats.throttled <= 6
    assert elapsed < 10  # a few 1 s pauses, then requests about 50 ms apart
    assert 0 < hook.limiter.spacing_seconds <= 0.2
