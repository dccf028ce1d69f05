"""The server as a process: state survives a restart, the OpenAPI document, the command line, secrets.

Restarts run on SQLite and on PostgreSQL (``postgres_url`` from tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.learning.domains import new_token
from sandbox.learning.testing import running_learning
from tests.sandbox.learning.conftest import DomainUnderTest
from tests.sandbox.learning.sample_rows import seed_school, user

REPO_ROOT = Path(__file__).resolve().parents[3]
OPENAPI_PATH = REPO_ROOT / "docs" / "learning-openapi.json"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'learning.sqlite'}"
    return request.getfixturevalue("postgres_url")


def test_state_survives_a_restart(server_database_url):
    tokens = {"demo": new_token()}
    with running_learning(tokens, server_database_url) as first:
        demo = DomainUnderTest(first, "demo")
        seed_school(demo, students=2)
        demo.batch("users", [user("900", "P", login="p900", password="Default-Pass-1", password_temporary=True)])
        demo.set_authentication("S:600", "google")
        demo.settings(grade_push_organizations=["10"], autogenerate_usernames=True)
        gradable = demo.create_gradable("700", "Quiz", 10)
        demo.set_score(gradable["id"], "600", "9")
        before = {
            "users": demo.users(),
            "classes": demo.classes(),
            "rosters": demo.rosters(),
            "settings": demo.settings(),
            "changes": demo.changes(),
        }
    with running_learning(tokens, server_database_url) as second:
        demo = DomainUnderTest(second, "demo")
        after = {
            "users": demo.users(),
            "classes": demo.classes(),
            "rosters": demo.rosters(),
            "settings": demo.settings(),
            "changes": demo.changes(),
        }
        assert after == before
        assert after["users"]["S:600"]["authentication_type"] == "google"
        # the admin's choice still holds against an import after the restart
        assert demo.batch("users", [user("600", authentication_type="password")])["results"][0]["status"] == "unchanged"
        # the change feed carries on after the last cursor, with the score's next version
        changed = demo.set_score(gradable["id"], "600", "10")
        [latest] = demo.changes(after=before["changes"]["next_cursor"])["changes"]
        assert latest["cursor"] > before["changes"]["next_cursor"]
        assert latest["version"] == changed["version"] == 2


def test_the_served_openapi_document_is_the_committed_one(learning_server):
    served = learning_server.sandbox.client().get("/openapi.json").json()
    committed = json.loads(OPENAPI_PATH.read_text())
    assert served == committed, (
        "docs/learning-openapi.json is stale: regenerate it with "
        "`python -m sandbox.learning --write-openapi docs/learning-openapi.json`"
    )


def test_the_openapi_document_holds_every_path_of_the_contract():
    paths = json.loads(OPENAPI_PATH.read_text())["paths"]
    entities = ["organizations", "users", "user_levels", "classes", "rosters", "parent_links"]
    expected = {
        *(f"/api/v1/{entity}/batch" for entity in entities),
        *(f"/api/v1/{entity}" for entity in entities),
        *(f"/api/v1/{entity}/{{key}}" for entity in entities),
        "/api/v1/users/deactivate",
        "/api/v1/rosters/remove",
        "/api/v1/parent_links/remove",
        "/api/v1/domain/settings",
        "/api/v1/admin/users/{user_type}/{external_id}/authentication",
        "/api/v1/admin/users",
        "/api/v1/admin/users/{learning_id}/import-id",
        "/api/v1/classes/{class_id}/gradables",
        "/api/v1/gradables/{gradable_id}/scores/{student_external_id}",
        "/api/v1/notifications/count",
        "/api/v1/gradebook/changes",
    }
    assert expected <= set(paths), sorted(expected - set(paths))
    assert set(paths["/api/v1/domain/settings"]) == {"get", "put"}
    user_row = paths["/api/v1/users/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert user_row["$ref"].endswith("/UsersBatch")


def _run_cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox.learning", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("demo", "expected NAME:TOKEN"),
        ("demo:short", "at least 16 characters"),
        ("Demo District:0123456789abcdef0", "use lower-case letters"),
    ],
)
def test_the_command_line_refuses_a_bad_domain_with_a_clear_message(spec, expected):
    finished = _run_cli("--domain", spec, "--port", "0")
    assert finished.returncode == 2
    assert expected in finished.stderr
    assert "0123456789abcdef0" not in finished.stderr  # not even a bad token is echoed


def test_the_command_line_refuses_two_domains_with_one_token():
    token = new_token()
    finished = _run_cli("--domain", f"a:{token}", "--domain", f"b:{token}", "--port", "0")
    assert finished.returncode == 2
    assert "every domain needs its own token" in finished.stderr


def test_tokens_and_passwords_never_reach_the_output_or_the_database(tmp_path):
    database = tmp_path / "learning.sqlite"
    tokens = {"demo": new_token()}
    with running_learning(tokens, f"sqlite:///{database}") as sandbox:
        demo = DomainUnderTest(sandbox, "demo")
        demo.batch("organizations", [{"organization_id": "10", "name": "North"}])
        demo.batch("users", [user("1", password="Plain-Text-Secret-42")])
        sandbox.client(token="wrong-token-value-123456").get("/api/v1/users")
        output = sandbox.log()
        assert "Learning sandbox listening on https://127.0.0.1:" in output
        assert "domains: demo" in output
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("learning.sqlite*"))
    for secret in (tokens["demo"], "Plain-Text-Secret-42"):
        assert secret not in output
        assert secret.encode() not in stored


def test_the_measurement_script_reports_rows_per_second_for_each_pass():
    from sandbox.learning.measure_upsert import measure

    figures = measure(None, batches=1, batch_size=50)
    assert set(figures) == {
        f"{phase}_{unit}"
        for phase in ("create", "unchanged", "update")
        for unit in ("rows_per_second", "seconds_per_batch")
    }
    assert all(value > 0 for value in figures.values())
