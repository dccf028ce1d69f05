"""LearningHook against the reference Learning server over HTTPS (verified with the sandbox CA).

What the load and grade push rely on: per-row results in the order sent, keyed writes that
are safe to repeat, deactivation that never deletes, removals, read back, domain settings,
the gradebook change feed followed to its end, and clear errors for a wrong token, a TLS
problem, a plain-HTTP URL and a batch over Learning's limit.
"""

from __future__ import annotations

import json
import secrets

import pytest

from sandbox.learning.testing import running_learning
from sis_learning.hooks.http_client import ApiConfigurationError, AuthenticationError, TlsVerificationError
from sis_learning.hooks.learning import MAX_BATCH_ROWS, LearningHook

DOMAINS = [f"hook{index:02d}" for index in range(12)]


@pytest.fixture(scope="module")
def learning():
    with running_learning(domains={name: secrets.token_urlsafe(24) for name in DOMAINS}) as server:
        server.free_domains = list(DOMAINS)
        yield server


@pytest.fixture
def domain(learning) -> str:
    return learning.free_domains.pop(0)


@pytest.fixture
def hook(learning, domain) -> LearningHook:
    return LearningHook.from_settings(learning.base_url, learning.tokens[domain], learning.ca_bundle)


def seed_school(hook: LearningHook) -> None:
    hook.upsert("organizations", [{"organization_id": "100", "name": "North High"}])
    hook.upsert(
        "users",
        [
            {
                "external_id": "2001",
                "first_name": "Tess",
                "last_name": "Teacher",
                "login": "tteacher",
                "user_type": "T",
                "organization_id": "100",
                "enabled": True,
            },
            {
                "external_id": "3001",
                "first_name": "Sam",
                "last_name": "Student",
                "login": "sstudent",
                "user_type": "S",
                "organization_id": "100",
                "enabled": True,
            },
        ],
    )
    hook.upsert(
        "classes",
        [
            {
                "class_id": "5001",
                "name": "Algebra (1) - 1(A)",
                "code": "ALG",
                "year": "3500",
                "teacher_id": "2001",
                "organization_id": "100",
            }
        ],
    )


def test_upsert_answers_per_row_and_is_safe_to_repeat(hook):
    rows = [{"organization_id": "100", "name": "North High"}, {"organization_id": "101", "name": "South High"}]
    first = hook.upsert("organizations", rows)
    assert [(result["index"], result["key"], result["status"]) for result in first] == [
        (0, "100", "created"),
        (1, "101", "created"),
    ]
    assert [result["status"] for result in hook.upsert("organizations", rows)] == ["unchanged", "unchanged"]
    changed = hook.upsert("organizations", [{"organization_id": "101", "name": "South High School"}])
    assert changed[0]["status"] == "updated"
    assert hook.read("organizations", "101")["name"] == "South High School"
    assert hook.read("organizations", "999") is None


def test_a_refused_row_fails_alone_with_learnings_reason(hook):
    seed_school(hook)
    results = hook.upsert(
        "classes",
        [
            {
                "class_id": "5002",
                "name": "Biology (1) - 2(A)",
                "code": "BIO",
                "year": "3500",
                "teacher_id": "2999",
                "organization_id": "100",
            },
            {
                "class_id": "5003",
                "name": "Chemistry (1) - 3(A)",
                "code": "CHEM",
                "year": "3500",
                "teacher_id": "2001",
                "organization_id": "100",
            },
        ],
    )
    assert results[0]["status"] == "failed" and "teacher" in results[0]["reason"].lower()
    assert results[1]["status"] == "created"


def test_deactivate_disables_and_never_deletes(hook):
    seed_school(hook)
    assert hook.deactivate_users([{"user_type": "S", "external_id": "3001"}])[0]["status"] == "deactivated"
    assert hook.deactivate_users([{"user_type": "S", "external_id": "3001"}])[0]["status"] == "unchanged"
    user = hook.read("users", "S:3001")
    assert user is not None and user["enabled"] is False


def test_remove_rosters_and_links_by_key(hook):
    seed_school(hook)
    hook.upsert(
        "users",
        [
            {
                "external_id": "4001",
                "first_name": "Pat",
                "last_name": "Student",
                "login": "pparent",
                "user_type": "P",
                "organization_id": "100",
            }
        ],
    )
    hook.upsert("rosters", [{"class_id": "5001", "user_type": "S", "user_id": "3001", "role": "student"}])
    hook.upsert("parent_links", [{"parent_id": "4001", "child_id": "3001"}])

    removed = hook.remove(
        "rosters", [{"class_id": "5001", "user_type": "S", "user_id": "3001", "role": "ignored: keys only"}]
    )
    assert removed[0]["key"] == "5001:S:3001" and removed[0]["status"] == "removed"
    assert hook.remove("parent_links", [{"parent_id": "4001", "child_id": "3001"}])[0]["status"] == "removed"
    assert list(hook.read_all("rosters")) == [] and list(hook.read_all("parent_links")) == []
    with pytest.raises(ValueError, match="unknown Learning entity 'users'"):
        hook.remove("users", [{"external_id": "3001"}])


def test_read_all_follows_pages(hook):
    rows = [{"organization_id": str(100 + index), "name": f"School {index}"} for index in range(25)]
    hook.upsert("organizations", rows)
    assert sorted(row["organization_id"] for row in hook.read_all("organizations", page_size=10)) == sorted(
        row["organization_id"] for row in rows
    )


def test_batches_over_learnings_limit_are_refused_before_sending(hook):
    too_many = [{"organization_id": str(index), "name": "x"} for index in range(MAX_BATCH_ROWS + 1)]
    with pytest.raises(ValueError, match="at most 1000 rows, got 1001"):
        hook.upsert("organizations", too_many)
    with pytest.raises(ValueError, match="at least one row"):
        hook.deactivate_users([])
    with pytest.raises(ValueError, match="unknown Learning entity 'courses'"):
        hook.upsert("courses", [{"id": "1"}])
    assert hook.stats.total_requests == 0
    assert len(hook.upsert("organizations", too_many[:MAX_BATCH_ROWS])) == MAX_BATCH_ROWS  # the limit itself is fine


def test_wrong_or_missing_token_is_a_clear_authentication_error(learning):
    wrong = LearningHook.from_settings(learning.base_url, "not-a-token", learning.ca_bundle)
    with pytest.raises(AuthenticationError, match="refused the token of Airflow connection 'learning_default'"):
        wrong.get_domain_settings()
    missing = LearningHook.from_settings(learning.base_url, None, learning.ca_bundle)
    with pytest.raises(AuthenticationError, match="has no password"):
        missing.get_domain_settings()


def test_tls_is_always_verified(learning, domain, tmp_path):
    without_ca = LearningHook.from_settings(learning.base_url, learning.tokens[domain])  # system trust store only
    with pytest.raises(TlsVerificationError, match="ca_bundle"):
        without_ca.get_domain_settings()
    plain_http = LearningHook.from_settings(
        learning.base_url.replace("https://", "http://"), learning.tokens[domain], learning.ca_bundle
    )
    with pytest.raises(ApiConfigurationError, match="over HTTPS"):
        plain_http.get_domain_settings()


def test_configured_by_an_airflow_connection(learning, domain, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_LEARNING_HOOKTEST",
        json.dumps(
            {
                "conn_type": "http",
                "host": learning.base_url,
                "password": learning.tokens[domain],
                "extra": {"ca_bundle": str(learning.ca_bundle)},
            }
        ),
    )
    hook = LearningHook("learning_hooktest")
    assert hook.get_domain_settings()["grade_push_organizations"] == []


def test_domain_settings_round_trip(hook):
    seed_school(hook)  # grade push can only be enabled for organizations Learning has
    settings = hook.put_domain_settings({"grade_push_organizations": ["100"], "autogenerate_usernames": True})
    assert settings["grade_push_organizations"] == ["100"]
    assert hook.get_domain_settings()["autogenerate_usernames"] is True


def test_gradebook_change_feed_is_followed_to_the_end(hook, learning, domain):
    seed_school(hook)
    hook.upsert(
        "users",
        [
            {
                "external_id": f"30{index:02d}",
                "first_name": "S",
                "last_name": f"N{index}",
                "login": f"s{index}",
                "user_type": "S",
                "organization_id": "100",
            }
            for index in range(2, 7)
        ],
    )
    hook.upsert(
        "rosters",
        [
            {"class_id": "5001", "user_type": "S", "user_id": f"30{index:02d}", "role": "student"}
            for index in range(1, 7)
        ],
    )
    gradable = learning.create_gradable(domain, "5001", "Quiz 1", 20)
    for index in range(1, 7):
        learning.set_score(domain, gradable["id"], f"30{index:02d}", str(10 + index))

    page = hook.gradebook_changes(after=0, limit=2)
    assert len(page["changes"]) == 2 and page["has_more"] is True
    changes = list(hook.iter_gradebook_changes(after=0, limit=2))
    assert changes[0]["event"] == "gradable_created"  # then one score_set entry per score
    assert [change["student_id"] for change in changes[1:]] == [f"30{index:02d}" for index in range(1, 7)]
    cursors = [change["cursor"] for change in changes]
    assert cursors == sorted(cursors) and len(set(cursors)) == 7
    assert changes[0]["gradable"]["title"] == "Quiz 1" and changes[0]["class_id"] == "5001"
    assert list(hook.iter_gradebook_changes(after=cursors[-1])) == []
    with pytest.raises(ValueError, match="limit must be at least 1"):
        hook.gradebook_changes(limit=0)
