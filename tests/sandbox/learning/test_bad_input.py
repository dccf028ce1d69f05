"""Bad input gets a 4xx (or a failed row) with a clear message, and nothing is half-written.

Request-level mistakes (malformed JSON, a body without ``rows``, an unknown entity or
top-level field, too many rows) refuse the whole request. Row-level mistakes (a missing
field, an over-long value, an unknown field, a wrong type) fail that row, with the
field named; the batch's other rows are applied; a failed row changes nothing.
"""

from __future__ import annotations

import pytest

from sandbox.learning import limits
from tests.sandbox.learning.sample_rows import organization, user


def test_malformed_json_is_a_400_that_says_so(domain):
    response = domain.http.post(
        "/api/v1/users/batch", content=b'{"rows": [{"external_id": "1",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("malformed JSON body")


def test_a_body_that_is_not_json_is_a_415_and_no_body_is_a_422(domain):
    row = b'{"rows": [{"organization_id": "1", "name": "North"}]}'
    response = domain.http.post("/api/v1/organizations/batch", content=row, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["message"] == "send the body as JSON with Content-Type: application/json (got text/plain)"
    for empty in (b"", b"null"):
        response = domain.http.post(
            "/api/v1/organizations/batch", content=empty, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["message"] == "the request has no JSON body"
    assert domain.organizations() == {}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "rows: missing required field"),
        ({"rows": []}, "rows: List should have at least 1 item"),
        ({"rows": {"external_id": "1"}}, "rows: Input should be a valid list"),
        ({"rows": [{}], "mode": "replace"}, "mode: unknown field"),
        ([{"external_id": "1"}], "Input should be a valid dictionary"),
    ],
)
def test_a_body_that_breaks_the_envelope_is_a_422_naming_the_field(domain, body, expected):
    response = domain.http.post("/api/v1/users/batch", json=body)
    assert response.status_code == 422
    assert expected in response.json()["message"]


def test_an_unknown_entity_is_a_404_listing_the_entities(domain):
    for response in (
        domain.http.post("/api/v1/students/batch", json={"rows": [{"external_id": "1"}]}),
        domain.http.get("/api/v1/students"),
    ):
        assert response.status_code == 404
        assert response.json()["message"].startswith("unknown entity 'students': the entities are organizations, users")


def test_bad_rows_fail_alone_with_the_field_named_and_the_valid_rows_are_applied(domain):
    domain.batch("organizations", [organization()])
    rows = [
        user("1"),
        {key: value for key, value in user("2").items() if key != "first_name"},
        user("3", last_name="x" * (limits.NAME_LENGTH + 1)),
        user("4", frist_name="typo"),
        user("5", user_type="X"),
        user("6", email="not-an-email"),
        "not an object",
        user("8", login="l" * (limits.LOGIN_LENGTH + 1)),
        user("9", email="a" * 243 + "@example.org"),  # 255 characters
        user("10", last_name="y" * limits.NAME_LENGTH),  # exactly at the limit: fine
        user("1", first_name="Duplicate"),
    ]
    answer = domain.batch("users", rows)
    results = answer["results"]
    assert [r["status"] for r in results] == ["created"] + ["failed"] * 8 + ["created", "failed"]
    reasons = [r["reason"] for r in results]
    assert reasons[1] == "missing required field 'first_name'"
    assert reasons[2] == f"last_name: String should have at most {limits.NAME_LENGTH} characters"
    assert reasons[3] == "unknown field 'frist_name'"
    assert reasons[4].startswith("user_type: Input should be 'S', 'T' or 'P'")
    assert reasons[5].startswith("email: String should match pattern")
    assert reasons[6] == "a row must be a JSON object"
    assert reasons[7] == f"login: String should have at most {limits.LOGIN_LENGTH} characters"
    assert reasons[8] == f"email: String should have at most {limits.EMAIL_LENGTH} characters"
    assert reasons[10] == "users key S:1 appears twice in this batch (first at index 0); send each key once"
    assert [r["key"] for r in results[:4]] == ["S:1", "S:2", "S:3", "S:4"]
    assert answer["summary"] == {"total": 11, "created": 2, "failed": 9}
    assert set(domain.users()) == {"S:1", "S:10"}
    assert domain.user("S:1")["first_name"] == "Ana"


def test_a_failed_row_leaves_the_existing_object_exactly_as_it_was(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1", first_name="Ana", email="ana@example.org")])
    before = domain.user("S:1")
    # the new first name is fine, the last name is too long: nothing of the row is applied
    reasons = domain.reasons("users", [user("1", first_name="Anabel", last_name="z" * 500)])
    assert reasons[0].startswith("last_name: String should have at most")
    assert domain.user("S:1") == before


def test_a_rule_failure_also_applies_nothing_of_its_row(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1", login="ana"), user("2", login="bea", first_name="Bea")])
    before = domain.user("S:2")
    reasons = domain.reasons("users", [user("2", login="ana", first_name="Beatriz")])
    assert reasons == ["login 'ana' is already used by user S:1 in this domain (logins are unique)"]
    assert domain.user("S:2") == before


def test_bad_single_object_bodies_are_422_with_the_field_named(domain):
    domain.batch("organizations", [organization()])
    cases = [
        (
            "put",
            "/api/v1/domain/settings",
            {"grade_push_organisations": ["10"]},
            "grade_push_organisations: unknown field",
        ),
        ("put", "/api/v1/domain/settings", {"autogenerate_usernames": "maybe"}, "autogenerate_usernames"),
        ("post", "/api/v1/users/deactivate", {"users": []}, "users: List should have at least 1 item"),
        ("post", "/api/v1/rosters/remove", {}, "rows: missing required field"),
    ]
    for method, path, body, expected in cases:
        response = getattr(domain.http, method)(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert expected in response.json()["message"], (path, response.text)


def test_paging_parameters_are_checked(domain):
    response = domain.http.get("/api/v1/users", params={"page": 0})
    assert response.status_code == 422
    assert "page" in response.json()["message"]
    response = domain.http.get("/api/v1/users", params={"page_size": limits.MAX_PAGE_SIZE + 1})
    assert response.status_code == 422


def test_too_many_ids_to_deactivate_is_a_413(domain):
    response = domain.http.post(
        "/api/v1/users/deactivate", json={"users": [{"user_type": "S", "external_id": str(n)} for n in range(1001)]}
    )
    assert response.status_code == 413
    assert "at most 1000 rows" in response.json()["message"]


def test_an_unknown_path_or_method_says_where_the_contract_is(domain):
    response = domain.http.get("/api/v2/users")
    assert response.status_code == 404
    assert "openapi.json" in response.json()["message"]
    assert domain.http.delete("/api/v1/users/batch").status_code == 405
