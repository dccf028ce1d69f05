"""Bearer tokens per domain, isolation between districts, HTTPS, and the domain settings.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.learning.sample_rows import learning_class, organization, seed_school, user

PROTECTED = [
    ("get", "/api/v1/users", None),
    ("post", "/api/v1/users/batch", {"rows": [{"external_id": "1"}]}),
    ("post", "/api/v1/users/deactivate", {"users": [{"user_type": "S", "external_id": "1"}]}),
    ("get", "/api/v1/domain/settings", None),
    ("get", "/api/v1/gradebook/changes", None),
    ("get", "/api/v1/notifications/count", None),
    ("put", "/api/v1/admin/users/S/1/authentication", {"authentication_type": "google"}),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_no_token_or_a_wrong_token_is_a_401(learning_server, method, path, body):
    sandbox = learning_server.sandbox
    for client, expected in (
        (sandbox.client(), "missing bearer token"),
        (sandbox.client(token="not-a-token-of-this-server"), "invalid token"),
    ):
        response = getattr(client, method)(path, **({"json": body} if body is not None else {}))
        assert response.status_code == 401
        assert response.json()["message"].startswith(expected)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_health_needs_no_token(learning_server):
    assert learning_server.sandbox.client().get("/health").json() == {"status": "ok"}


def test_one_districts_token_never_reads_or_writes_another_districts_data(domain, other_domain):
    seed_school(domain, students=1)
    assert other_domain.users() == {}
    assert other_domain.read("users", "600") is None
    assert other_domain.read("classes", "700") is None
    # writing with the same keys creates the other district's own objects, and touches nothing of the first
    other_domain.batch("organizations", [organization()])
    assert other_domain.reasons("classes", [learning_class("700", "500")]) == [
        "teacher T:500 does not exist in this domain"
    ]
    assert other_domain.reasons("rosters", [{"class_id": "700", "user_type": "S", "user_id": "600"}]) == [
        "class 700 does not exist in this domain"
    ]
    assert other_domain.statuses("users", [user("600", first_name="Other")]) == ["created"]
    assert domain.user("S:600")["first_name"] == "Ana"
    # a login is unique within a domain, not across domains
    assert other_domain.statuses("users", [user("601", login="teacher500")]) == ["created"]
    # admin calls and removals stay in their own domain too
    assert (
        other_domain.http.put(
            "/api/v1/admin/users/500/authentication", json={"authentication_type": "google"}
        ).status_code
        == 404
    )
    teacher = {"user_type": "T", "external_id": "500"}
    answer = other_domain.http.post("/api/v1/users/deactivate", json={"users": [teacher]}).json()
    assert answer["results"][0]["status"] == "failed"
    removed = other_domain.http.post(
        "/api/v1/rosters/remove", json={"rows": [{"class_id": "700", "user_type": "S", "user_id": "600"}]}
    ).json()
    assert removed["results"][0]["status"] == "unchanged"
    assert domain.rosters()[("700", "S:600")] == "student"
    assert domain.user("T:500")["enabled"] is True and domain.user("T:500")["authentication_type"] == "password"


def test_the_server_speaks_https_with_a_certificate_from_the_sandbox_ca(learning_server):
    sandbox = learning_server.sandbox
    assert sandbox.base_url.startswith("https://127.0.0.1:")
    assert sandbox.ca_bundle is not None and sandbox.ca_bundle.exists()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{sandbox.base_url}/health")  # the system trust store does not know the sandbox CA
    assert httpx.get(f"{sandbox.base_url}/health", verify=str(sandbox.ca_bundle)).status_code == 200


def test_domain_settings_start_off_and_a_put_changes_only_what_it_sends(domain):
    assert domain.settings() == {
        "grade_push_organizations": [],
        "autogenerate_usernames": False,
        "imported_passwords_temporary": False,
        "ignore_parents": False,
        "powerschool_host": None,
    }
    domain.batch("organizations", [organization("10"), organization("11", "South")])
    domain.settings(grade_push_organizations=["11", "10", "11"], powerschool_host="district.powerschool.com")
    changed = domain.settings(autogenerate_usernames=True)
    assert changed["grade_push_organizations"] == ["10", "11"]
    assert changed["powerschool_host"] == "district.powerschool.com"
    assert changed["autogenerate_usernames"] is True
    assert domain.settings() == changed


def test_grade_push_can_only_be_enabled_for_organizations_the_domain_has(domain, other_domain):
    domain.batch("organizations", [organization("10")])
    response = domain.http.put("/api/v1/domain/settings", json={"grade_push_organizations": ["10", "99"]})
    assert response.status_code == 422
    assert response.json()["message"] == (
        "grade push cannot be enabled for organizations that do not exist in this domain: 99 (run an import first)"
    )
    assert domain.settings()["grade_push_organizations"] == []
    # another district's organization does not count
    assert (
        other_domain.http.put("/api/v1/domain/settings", json={"grade_push_organizations": ["10"]}).status_code == 422
    )
    domain.settings(grade_push_organizations=["10"])
    assert other_domain.settings()["grade_push_organizations"] == []
