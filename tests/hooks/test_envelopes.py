"""A 200 whose body is not the envelope the API documents is an error, never an empty listing.

A scripted HTTPS server answers 200 with what a proxy, a maintenance page or a
misrouted request might send: an empty body, ``{"message": ...}``, an HTML page,
another resource's envelope. Each must raise UnexpectedResponseError naming the URL
and what came back (PowerSchool listings and counts, Learning pages and batch answers).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from sis_learning.exceptions import LearningResponseError, UnexpectedResponseError
from sis_learning.hooks.http_client import RetryPolicy
from sis_learning.hooks.learning import LearningHook
from sis_learning.hooks.powerschool import PowerSchoolHook
from tests.hooks.scripted_server import Answer, scripted_server

FAST = RetryPolicy(max_retries=0, base_delay_seconds=0.01, max_delay_seconds=0.01)
HTML = "<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>"
BAD_BODIES = {
    "empty": (None, "empty body"),
    "message": ({"message": "No data found"}, "saying 'No data found'"),
    "html": (HTML, "HTML page"),
    "another resource": ({"sections": {"section": [{"id": 1}]}}, "keys sections"),
}


def _powerschool_script(bad_body):
    def script(seen, _number):
        path = urlsplit(seen.path).path
        if path == "/oauth/access_token":
            return Answer(200, {"access_token": "t", "expires_in": 3600})
        if path == "/ws/v1/metadata":
            return Answer(200, {"metadata": {"student_max_page_size": 100, "schema_table_query_max_page_size": 100}})
        return Answer(200, bad_body)

    return script


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_powerschool_listing_page_that_is_not_its_envelope_fails_naming_url_and_body(tmp_path, kind):
    body, described = BAD_BODIES[kind]
    with scripted_server(_powerschool_script(body), tmp_path) as server:
        hook = PowerSchoolHook.from_settings(server.base_url, "id", "secret", server.ca_bundle, retry_policy=FAST)
        listing = hook.v1_listing(
            "school 7", "/ws/v1/school/7/student", wrapper="students", item="student", resource="student"
        )
        with pytest.raises(UnexpectedResponseError) as raised:
            hook.read_page(listing, 1)
    message = str(raised.value)
    assert f"{server.base_url}/ws/v1/school/7/student" in message, message
    assert described in message and "students" in message, message


@pytest.mark.parametrize("kind", ["empty", "message", "html"])
def test_a_count_or_table_page_that_is_not_its_envelope_fails(tmp_path, kind):
    body, described = BAD_BODIES[kind]
    with scripted_server(_powerschool_script(body), tmp_path) as server:
        hook = PowerSchoolHook.from_settings(server.base_url, "id", "secret", server.ca_bundle, retry_policy=FAST)
        listing = hook.table_listing("district", "cc", ["dcid", "studentid"])
        with pytest.raises(UnexpectedResponseError, match=described):
            hook.read_page(listing, 1)
        with pytest.raises(UnexpectedResponseError, match="/ws/schema/table/cc/count"):
            hook.read_count(listing)


def test_documented_empty_pages_still_read_as_no_rows(tmp_path):
    for body in ({"students": None}, {"students": ""}, {"students": {}}, {"students": {"student": []}}):
        with scripted_server(_powerschool_script(body), tmp_path) as server:
            hook = PowerSchoolHook.from_settings(server.base_url, "id", "secret", server.ca_bundle, retry_policy=FAST)
            listing = hook.v1_listing(
                "school 7", "/ws/v1/school/7/student", wrapper="students", item="student", resource="student"
            )
            assert hook.read_page(listing, 1) == []


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_a_learning_page_or_batch_answer_that_is_not_its_envelope_fails(tmp_path, kind):
    body, described = BAD_BODIES[kind]
    with scripted_server(lambda seen, number: Answer(200, body), tmp_path) as server:
        hook = LearningHook.from_settings(server.base_url, "token", server.ca_bundle, retry_policy=FAST)
        with pytest.raises(UnexpectedResponseError) as raised:
            hook.read_page("users")
        assert f"{server.base_url}/api/v1/users" in str(raised.value) and described in str(raised.value)
        with pytest.raises((UnexpectedResponseError, LearningResponseError)) as raised:
            hook.upsert("organizations", [{"organization_id": "1", "name": "A school"}])
        assert "/api/v1/organizations/batch" in str(raised.value)
        if kind != "html" and kind != "empty":
            assert described in str(raised.value)
