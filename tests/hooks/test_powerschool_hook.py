"""PowerSchoolHook against the PowerSchool sandbox over HTTPS (and a scripted server for 401 loops).

OAuth (cached, shared across threads, renewed after expiry), metadata page sizes,
every empty-page shape the sandbox produces, single-object pages, concurrency bounds,
and the admin-facing messages of fatal answers.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest

from sandbox.powerschool.options import EMPTY_PAGE_STYLES, ServerOptions
from sis_learning.hooks.http_client import AuthenticationError, NotFoundError, PermissionDeniedError, RetryPolicy
from sis_learning.hooks.powerschool import PageSizeTooSmallError, PowerSchoolHook
from tests.hooks.scripted_server import Answer, scripted_server

FAST = RetryPolicy(max_retries=6, base_delay_seconds=0.01, max_delay_seconds=0.05)


@pytest.fixture(scope="module")
def powerschool():
    from sandbox.powerschool.testing import running_powerschool

    with running_powerschool(dataset="tiny") as server:
        yield server


@pytest.fixture
def sandbox(powerschool):
    yield powerschool
    powerschool.configure(**ServerOptions().as_dict())


def hook_for(server, **options) -> PowerSchoolHook:
    options.setdefault("retry_policy", FAST)
    return PowerSchoolHook.from_settings(
        server.base_url, server.client_id, server.client_secret, server.ca_bundle, **options
    )


def first_school(hook) -> str:
    return str(hook.district_schools()[0]["id"])


def test_token_is_fetched_once_and_shared_by_threads(sandbox):
    hook = hook_for(sandbox, max_concurrent_requests=4)
    school = first_school(hook)
    threads = [
        threading.Thread(target=hook.request_json, args=("GET", f"/ws/v1/school/{school}/student/count"))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert hook.tokens_issued == 1
    assert hook.stats.requests["POST /oauth/access_token"] == 1


def test_expired_token_is_dropped_and_the_request_retried_once(sandbox):
    hook = hook_for(sandbox)
    school = first_school(hook)
    sandbox.expire_tokens()
    count = hook.request_json("GET", f"/ws/v1/school/{school}/student/count")
    assert count["resource"]["count"] > 0
    assert hook.tokens_issued == 2
    assert hook.stats.requests["GET /ws/v1/school/{id}/student/count"] == 2  # the 401, then the retry


def test_short_lived_tokens_are_renewed_before_they_expire(sandbox):
    sandbox.configure(token_lifetime_seconds=1)
    sandbox.expire_tokens()  # the server hands out the same token until it expires: start afresh
    hook = hook_for(sandbox)
    school = first_school(hook)
    time.sleep(1.1)
    hook.request_json("GET", f"/ws/v1/school/{school}/student/count")
    assert hook.tokens_issued == 2


def test_wrong_client_secret_names_the_plugin_settings_and_hides_the_secret(sandbox):
    hook = PowerSchoolHook.from_settings(
        sandbox.base_url, sandbox.client_id, "not-the-secret-123", sandbox.ca_bundle, retry_policy=FAST
    )
    with pytest.raises(AuthenticationError) as raised:
        hook.district_schools()
    message = str(raised.value)
    assert "Client ID" in message and "Data Provider Configuration" in message
    assert "not-the-secret-123" not in message and sandbox.client_secret not in message


def test_connection_test_reports_success_or_what_to_fix(sandbox):
    ok, message = hook_for(sandbox).test_connection()
    assert ok and "accepted the plugin's credentials" in message
    ok, message = PowerSchoolHook.from_settings(
        sandbox.base_url, sandbox.client_id, "wrong-secret-xyz", sandbox.ca_bundle, retry_policy=FAST
    ).test_connection()
    assert not ok and "Data Provider Configuration" in message and "wrong-secret-xyz" not in message


def test_401_with_a_fresh_token_is_fatal_not_a_loop(tmp_path):
    def script(seen, _number):
        if urlsplit(seen.path).path == "/oauth/access_token":
            return Answer(200, {"access_token": "fresh-token-value", "expires_in": "3600"})
        return Answer(401, {"message": "invalid token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    with scripted_server(script, tmp_path) as server:
        hook = PowerSchoolHook.from_settings(server.base_url, "id", "secret", server.ca_bundle, retry_policy=FAST)
        with pytest.raises(AuthenticationError, match="freshly issued access token") as raised:
            hook.request("GET", "/ws/v1/district/school")
    assert "fresh-token-value" not in str(raised.value)
    assert [urlsplit(seen.path).path for seen in server.seen] == [
        "/oauth/access_token",
        "/ws/v1/district/school",
        "/oauth/access_token",
        "/ws/v1/district/school",
    ]


def test_403_tells_the_admin_to_grant_access(tmp_path):
    def script(seen, _number):
        if urlsplit(seen.path).path == "/oauth/access_token":
            return Answer(200, {"access_token": "t", "expires_in": 3600})
        return Answer(403, {"message": "Insufficient permission"})

    with scripted_server(script, tmp_path) as server:
        hook = PowerSchoolHook.from_settings(server.base_url, "id", "secret", server.ca_bundle, retry_policy=FAST)
        with pytest.raises(PermissionDeniedError, match="grant the plugin access"):
            hook.request("GET", "/ws/v1/school/5/staff")
    assert len(server.seen) == 2  # no retry of a 403


def test_page_sizes_come_from_metadata_and_under_100_is_fatal(sandbox):
    sandbox.configure(max_page_sizes={"student": 500})
    assert hook_for(sandbox).max_page_size("student") == 500
    assert hook_for(sandbox).max_page_size("schema_table_query") == 1000
    sandbox.configure(max_page_sizes={"student": 60})
    with pytest.raises(PageSizeTooSmallError, match="Data Configuration"):
        hook_for(sandbox).max_page_size("student")


@pytest.mark.parametrize("style", EMPTY_PAGE_STYLES)
def test_every_empty_page_shape_reads_as_no_rows(sandbox, style):
    sandbox.configure(empty_page_style=style)
    hook = hook_for(sandbox)
    school = first_school(hook)
    nobody = hook.v1_listing(
        school,
        f"/ws/v1/school/{school}/student",
        wrapper="students",
        item="student",
        resource="student",
        params={"q": "name.last_name==Nobody-By-This-Name"},
    )
    assert list(hook.read_all(nobody)) == []
    assert nobody.reported_count == 0 and nobody.pages == 1 and not nobody.mismatch


def test_single_record_page_and_numeric_ids(sandbox):
    hook = hook_for(sandbox)
    school = first_school(hook)
    everyone = list(
        hook.read_all(
            hook.v1_listing(
                school, f"/ws/v1/school/{school}/student", wrapper="students", item="student", resource="student"
            )
        )
    )
    one_id = everyone[0]["id"]
    assert isinstance(one_id, int)  # the server's quirk 3: a digit-only id arrives as a number
    only = hook.v1_listing(
        school,
        f"/ws/v1/school/{school}/student",
        wrapper="students",
        item="student",
        resource="student",
        params={"q": f"id=={one_id}"},
    )
    assert [row["id"] for row in hook.read_all(only)] == [one_id]


def test_unknown_school_is_named(sandbox):
    hook = hook_for(sandbox)
    listing = hook.v1_listing(
        "987654", "/ws/v1/school/987654/student", wrapper="students", item="student", resource="student"
    )
    with pytest.raises(NotFoundError, match="no school with id 987654"):
        list(hook.read_all(listing))


def test_pages_are_fetched_concurrently_within_the_bound(sandbox):
    sandbox.configure(latency_ms=60, max_page_sizes={"schema_table_query": 100})
    hook = hook_for(sandbox, max_concurrent_requests=3)
    hook.limiter.peak_in_flight = 0  # the limiter is per host and process: forget earlier tests
    cc = hook.table_listing("district", "cc", ("id", "dcid", "studentid", "sectionid"))
    rows = list(hook.read_all(cc))
    assert len(rows) == cc.reported_count == len({row["dcid"] for row in rows}) > 200
    assert cc.pages == -(-cc.reported_count // 100)  # exactly the pages the count calls for
    assert hook.limiter.peak_in_flight == 3
    assert all(isinstance(value, str) for row in rows for value in row.values())  # quirk 5
