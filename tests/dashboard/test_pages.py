"""The pages render every figure of a known staged history (FastAPI's test client; the sign-in and the
auth manager's answer are stood in for here: tests/e2e/test_dashboard_browser.py checks them in Airflow)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from sis_learning.dashboard import app as dashboard
from sis_learning.staging.runs import SyncRun, utcnow
from tests.dashboard.staged_history import running_run, write_history


@pytest.fixture
def client(staging_engine, monkeypatch):
    write_history(staging_engine, now=utcnow())  # the pages read the real clock
    monkeypatch.setattr(dashboard, "staging_engine", lambda: staging_engine)
    monkeypatch.setattr(
        dashboard, "readable_dag_ids", lambda user, dag_ids: {d for d in dag_ids if d != "sis_import__east"}
    )
    monkeypatch.setattr(
        dashboard,
        "require_district",
        lambda user, district_id: {"name": district_id, "import_dag_id": f"sis_import__{district_id}"},
    )
    monkeypatch.setattr(
        dashboard, "configured_districts", lambda: {"east": {"name": "East", "import_dag_id": "sis_import__east"}}
    )
    # Airflow's word on each approval task: parked (answerable) unless a test sets client.airflow_says[task_id]
    # to what a person can do there (tests/e2e/test_approval.py reads the real states).
    airflow_says: dict[str, str] = {}
    monkeypatch.setattr(
        dashboard,
        "approval_states",
        lambda tasks: {task: airflow_says.get(task[2], dashboard.ANSWERABLE) for task in tasks},
    )
    app = dashboard.create_app()
    app.dependency_overrides[dashboard.signed_in_user] = lambda: "someone"
    test_client = TestClient(app, root_path="/sis-learning")
    test_client.airflow_says = airflow_says
    return test_client


def test_overview_lists_only_readable_districts(client):
    page = client.get("/districts")
    assert page.status_code == 200
    assert 'data-district="north"' in page.text and 'data-district="south"' in page.text
    assert 'data-district="east"' not in page.text  # the user may not read sis_import__east
    assert 'href="/dags/sis_import__north/runs/r3"' in page.text
    assert "/dags/sis_import__south/runs/s1/tasks/load.approve_mass_changes_2/required_actions" in page.text


def test_a_waiting_run_links_to_the_task_that_asks(client):
    page = client.get("/districts/south")
    assert page.status_code == 200
    assert 'id="waiting-approval"' in page.text
    assert "/dags/sis_import__south/runs/s1/tasks/load.approve_mass_changes_2/required_actions" in page.text


APPROVAL_LINK = "/dags/sis_import__south/runs/s1/tasks/load.approve_mass_changes_2/required_actions"


def test_no_approval_link_until_airflow_parks_the_task(client):
    """Staging records the ask a moment before Airflow parks the task; its page loaded then keeps Approve and
    Reject disabled, so the pages say "asking" and reload until Airflow has the task in awaiting_input."""
    client.airflow_says["load.approve_mass_changes_2"] = dashboard.ASKING
    for path in ("/districts", "/districts/south"):
        page = client.get(path)
        assert page.status_code == 200
        assert APPROVAL_LINK not in page.text
        assert "asking" in page.text
        assert '<meta http-equiv="refresh" content="5">' in page.text
    assert 'id="asking-approval"' in client.get("/districts/south").text
    client.airflow_says["load.approve_mass_changes_2"] = dashboard.ANSWERABLE
    for path in ("/districts", "/districts/south"):
        page = client.get(path)
        assert APPROVAL_LINK in page.text and 'http-equiv="refresh"' not in page.text


def test_a_review_whose_task_ended_is_not_offered(client):
    """A run failed or marked while it waited: staging still says waiting, but nobody can answer in Airflow."""
    client.airflow_says["load.approve_mass_changes_2"] = dashboard.NOT_WAITING
    overview = client.get("/districts").text
    assert APPROVAL_LINK not in overview and "not waiting" in overview
    assert 'href="/dags/sis_import__south/runs/s1"' in overview
    district = client.get("/districts/south").text
    assert APPROVAL_LINK not in district and 'id="stale-approval"' in district and "Trigger the DAG again" in district
    assert 'http-equiv="refresh"' not in district


def test_a_page_showing_a_run_still_going_reloads_itself_slowly(client, staging_engine):
    """A person who opened the pages before a run stopped for approval (or ended) sees it without reloading;
    a page with nothing going does not reload (south's run is parked on a person: nothing changes there)."""
    slow = f'<meta http-equiv="refresh" content="{dashboard.RUNNING_REFRESH_SECONDS}">'
    assert 'http-equiv="refresh"' not in client.get("/districts").text
    assert 'http-equiv="refresh"' not in client.get("/districts/north").text
    with staging_engine.begin() as connection:
        connection.execute(insert(SyncRun.__table__).values(**running_run("north", "r4", "extract", utcnow())))
    for path in ("/districts", "/districts/north"):
        page = client.get(path).text
        assert slow in page and f"reloads itself every {dashboard.RUNNING_REFRESH_SECONDS} s" in page
    assert 'http-equiv="refresh"' not in client.get("/districts/south").text
    # A task asking outranks it: the overview reloads every 5 s while south's approval is on its way.
    client.airflow_says["load.approve_mass_changes_2"] = dashboard.ASKING
    assert '<meta http-equiv="refresh" content="5">' in client.get("/districts").text


@pytest.mark.parametrize(
    ("airflow_state", "unchanged_seconds", "offered"),
    [
        ("awaiting_input", 600, dashboard.ANSWERABLE),
        ("awaiting_input", None, dashboard.ANSWERABLE),
        ("deferred", 600, dashboard.ANSWERABLE),
        # Parked a moment ago: Airflow 3.3.2 can lose an answer given before its scheduler handled the exit.
        ("awaiting_input", 0.3, dashboard.ASKING),
        ("awaiting_input", dashboard.SETTLE_SECONDS - 1, dashboard.ASKING),
        ("running", 600, dashboard.ASKING),
        ("queued", 1, dashboard.ASKING),
        ("up_for_retry", 1, dashboard.ASKING),
        ("None", 1, dashboard.ASKING),
        ("success", 1, dashboard.NOT_WAITING),
        ("failed", 600, dashboard.NOT_WAITING),
        ("skipped", 1, dashboard.NOT_WAITING),
        (None, None, dashboard.NOT_WAITING),
    ],
)
def test_what_a_person_can_do_by_airflow_state(airflow_state, unchanged_seconds, offered):
    assert dashboard.what_a_person_can_do(airflow_state, unchanged_seconds) == offered


def test_district_page_reasons_link_to_their_rows(client):
    page = client.get("/districts/north")
    assert page.status_code == 200
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg"') == 2
    assert "Lincoln High" in page.text and "Adams Elementary" in page.text
    assert (
        "/sis-learning/districts/north/rows?run_id=r3&amp;kind=rejected&amp;entity=students&amp;rule=login_present"
        in page.text
    )
    rows = client.get(
        "/districts/north/rows",
        params={"run_id": "r3", "kind": "rejected", "entity": "students", "rule": "login_present"},
    )
    assert rows.status_code == 200 and rows.text.count("has no username") == 3
    assert (
        client.get(
            "/districts/north/rows", params={"run_id": "r3", "kind": "nope", "entity": "x", "rule": "y"}
        ).status_code
        == 404
    )


def test_data_docs_only_from_the_runs_folder(client, staging_engine, tmp_path):
    from sqlalchemy import text

    docs = tmp_path / "north-r3"
    (docs / "data_docs").mkdir(parents=True)
    (docs / "data_docs" / "index.html").write_text("<html>expectations</html>")
    (tmp_path / "secret.txt").write_text("no")
    with staging_engine.begin() as connection:
        connection.execute(text("UPDATE sync_runs SET validation_docs = :p WHERE run_id = 'r3'"), {"p": str(docs)})
    assert client.get("/districts/north/runs/r3/data-docs/index.html").text == "<html>expectations</html>"
    assert client.get("/districts/north/runs/r3/data-docs/..%2F..%2Fsecret.txt").status_code == 404
    assert client.get("/districts/north/runs/r1/data-docs/index.html").status_code == 404
