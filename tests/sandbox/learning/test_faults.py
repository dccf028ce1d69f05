"""Sandbox fault injection: refused writes apply nothing, "lost answers" apply once and retry harmlessly."""

from __future__ import annotations

from tests.sandbox.learning.sample_rows import organization, user


def test_a_refused_write_applies_nothing_and_carries_retry_after(domain):
    domain.batch("organizations", [organization()])
    assert domain.inject_faults(count=2, status=503, retry_after=2) == 2
    for _ in range(2):
        response = domain.http.post("/api/v1/users/batch", json={"rows": [user("1")]})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.json()["message"] == "injected fault (sandbox): answering 503 before applying anything"
    assert domain.users() == {}
    assert domain.statuses("users", [user("1")]) == ["created"]  # the plan is used up


def test_a_lost_answer_applies_the_batch_once_and_the_retry_reports_unchanged(domain):
    domain.batch("organizations", [organization()])
    domain.inject_faults(count=1, status=502, after_apply=True)
    response = domain.http.post("/api/v1/users/batch", json={"rows": [user("1"), user("2")]})
    assert response.status_code == 502
    assert set(domain.users()) == {"S:1", "S:2"}
    assert domain.statuses("users", [user("1"), user("2")]) == ["unchanged", "unchanged"]


def test_faults_hit_only_the_armed_domain_and_can_be_disarmed(domain, other_domain):
    for each in (domain, other_domain):
        each.batch("organizations", [organization()])
    domain.inject_faults(count=5, status=429)
    assert other_domain.statuses("users", [user("1")]) == ["created"]
    assert (
        domain.http.post(
            "/api/v1/users/deactivate", json={"users": [{"user_type": "S", "external_id": "1"}]}
        ).status_code
        == 429
    )
    assert domain.inject_faults(count=0) == 0
    assert domain.statuses("users", [user("1")]) == ["created"]
    assert domain.http.get("/openapi.json").json()["paths"].get("/sandbox/faults") is None
