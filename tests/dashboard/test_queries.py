"""The Districts pages' figures, on SQLite and PostgreSQL, against a staged history known in advance."""

from __future__ import annotations

import pytest

from sis_learning.dashboard import queries
from tests.dashboard.staged_history import NOW, write_history

CONFIGURED = {
    "east": {"name": "East District", "import_dag_id": "sis_import__east"},
    "north": {"name": "North District", "import_dag_id": "sis_import__north"},
}


@pytest.fixture
def history(staging_engine):
    write_history(staging_engine)
    return staging_engine


def test_overview_one_row_per_district_with_the_last_import(history):
    rows = {row.district_id: row for row in queries.districts_overview(history, CONFIGURED, now=NOW)}
    assert sorted(rows) == ["east", "north", "south"]  # configured, and found in staging

    east = rows["east"]
    assert east.name == "East District" and east.last_run is None
    assert east.learning == {"users": 0, "classes": 0, "rosters": 0, "parent_links": 0}

    north = rows["north"]
    assert north.name == "North District"
    run = north.last_run
    assert (run.run_id, run.status) == ("r3", "success")  # the newest import run, not the later grade push run
    assert run.started_at == NOW.replace(hour=9) and run.duration_seconds == 75
    assert north.learning == {"users": 5, "classes": 2, "rosters": 4, "parent_links": 1}  # active rows only
    assert run.changes == {"created": 3, "updated": 1, "deactivated": 1, "removed": 3}
    assert run.refused == 1
    assert north.rejected == 4 and north.warned == 2  # the last run's, not r2's
    assert north.waiting_run_id is None

    push = north.grade_push
    assert push.scores_pushed == 5  # the one pushed two days ago is outside the 24 hours
    assert push.latency_p50 == pytest.approx(3.0, abs=0.01)
    assert push.latency_p95 == pytest.approx(8.8, abs=0.01)  # 4 + (10 - 4) * 0.8, as percentile_cont
    assert push.scores_refused == 2

    south = rows["south"]
    assert south.name == "south" and south.import_dag_id == "sis_import__south"
    assert south.last_run.status == "running" and south.last_run.duration_seconds is None
    assert south.waiting_run_id == "s1"
    assert south.waiting_task_id == "load.approve_mass_changes_2"  # the task that asks (mass_change_reviews.task_id)
    assert south.learning["users"] == 3
    assert south.grade_push.scores_pushed == 0 and south.grade_push.latency_p50 is None


def test_district_detail_runs_reasons_schools(history):
    detail = queries.district_detail(history, "north", "North District", "sis_import__north", now=NOW)
    assert [run.run_id for run in detail.runs] == ["r3", "r2", "r1"]  # import runs only, newest first
    assert [run.transformed["users"] for run in detail.runs] == [12, 11, 10]
    assert detail.runs[1].stage == "safety_guard" and detail.runs[1].error.startswith("Safety stop")

    reasons = [(reason.kind, reason.entity, reason.rule, reason.rows) for reason in detail.reasons]
    assert reasons == [
        ("rejected", "students", "login_present", 3),
        ("warning", "students", "email_format", 2),
        ("rejected", "sections", "teacher_reference", 1),
    ]
    first = detail.reasons[0]
    assert first.example_source_id == "4000" and first.example_reason == "student 4000 has no username"
    assert detail.reasons[1].field == "email"

    schools = {school.organization_id: school for school in detail.schools}
    assert schools["100"].name == "Lincoln High" and schools["200"].name == "Adams Elementary"
    assert schools["100"].learning == {"users": 3, "classes": 2, "rosters": 4}
    assert schools["200"].learning == {"users": 2}
    assert schools["100"].changes == {"create": 2, "deactivate": 1, "remove": 3}  # the last run's, unchanged left out
    assert schools["200"].changes == {"update": 1}
    assert schools[None].learning == {"parent_links": 1}
    assert [school.organization_id for school in detail.schools] == ["200", "100", None]  # by name, no school last

    assert detail.district.rejected == 4 and detail.district.warned == 2
    assert detail.district.grade_push.scores_pushed == 5
    assert [result["entity"] for result in detail.validation_results] == ["students"]
    assert [(review["run_id"], review["status"]) for review in detail.reviews] == [("r2", "rejected")]


def test_reason_rows_page_through_one_rule(history):
    rows, total = queries.reason_rows(history, "north", "r3", "rejected", "students", "login_present", limit=2)
    assert total == 3 and [row["source_id"] for row in rows] == ["4000", "4001"]
    rows, _ = queries.reason_rows(history, "north", "r3", "rejected", "students", "login_present", limit=2, offset=2)
    assert [row["source_id"] for row in rows] == ["4002"]
    rows, total = queries.reason_rows(history, "north", "r3", "warning", "students", "email_format", "email")
    assert total == 2 and rows[0]["value"] == "not-an-address" and rows[0]["action"] == "cleared"


def test_empty_staging_database(sqlite_url):
    from sis_learning.staging.base import get_engine

    engine = get_engine(sqlite_url)  # no table at all: a dashboard opened before the first run
    rows = queries.districts_overview(engine, CONFIGURED, now=NOW)
    assert [row.district_id for row in rows] == ["east", "north"] and all(row.last_run is None for row in rows)
    detail = queries.district_detail(engine, "north", now=NOW)
    assert detail.runs == [] and detail.schools == [] and detail.reasons == []
    assert queries.reason_rows(engine, "north", "r3", "rejected", "students", "login_present") == ([], 0)


def test_a_staging_database_from_before_reviews_named_their_task(sqlite_url):
    """The pages only read: a mass_change_reviews table without task_id (the pipeline's next run adds it) still
    shows the waiting run, linked to the first approval task."""
    from sqlalchemy import text

    from sis_learning.staging.base import create_all, get_engine

    engine = create_all(get_engine(sqlite_url))
    write_history(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE mass_change_reviews DROP COLUMN task_id"))
    south = {row.district_id: row for row in queries.districts_overview(engine, CONFIGURED, now=NOW)}["south"]
    assert (south.waiting_run_id, south.waiting_task_id) == ("s1", None)
    detail = queries.district_detail(engine, "south", now=NOW)
    assert detail.district.waiting_run_id == "s1" and detail.reviews[0]["task_id"] is None
