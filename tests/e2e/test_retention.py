"""Retention after real imports: old runs' rows go, and the next incremental run still equals a full one.

The district keeps a run's detail rows for about a second (``retention.days``), so the report
task of every successful run prunes all the earlier ones it may. Four runs with SIS changes
between them: full, incremental (prunes the first, but not the raw records the incremental
chain rests on), full on demand (ends the chain: the earlier runs' raw records go), and
incremental again, whose base is the only run with its rows left. Learning must equal the
oracle after it, and the staged tables analysts read (the newest run) must be whole.
"""

from __future__ import annotations

import pytest

from scripts.demo_environment import apply_everyday_changes
from tests.e2e.compare import assert_learning_matches, failed_users
from tests.e2e.conftest import DISTRICT_ID, run_dag, staged_rows
from tests.e2e.oracle import expected_state

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

DETAIL = ("stg_students", "stg_section_enrollments", "learning_users", "learning_rosters", "validation_warnings")


def rows_by_run(staging_url: str, table: str, extra: str = "") -> dict[str, int]:
    rows = staged_rows(
        staging_url,
        f"SELECT run_id, COUNT(*) AS n FROM {table} WHERE district_id = :d {extra} GROUP BY run_id",
        d=DISTRICT_ID,
    )
    return {row["run_id"]: row["n"] for row in rows}


def pruned_marks(staging_url: str) -> dict[str, bool]:
    rows = staged_rows(
        staging_url,
        "SELECT run_id, detail_pruned_at FROM sync_runs WHERE district_id = :d AND kind = 'import'",
        d=DISTRICT_ID,
    )
    return {row["run_id"]: row["detail_pruned_at"] is not None for row in rows}


def test_each_successful_run_prunes_the_older_ones_and_the_next_incremental_run_is_still_right(
    import_dag, sandboxes, tmp_path
):
    from sis_learning import config as district_config

    yaml_path = district_config.DISTRICTS_DIR / f"{DISTRICT_ID}.yaml"
    yaml_path.write_text(yaml_path.read_text() + "retention:\n  days: 0.00001\n  changes_days: 400\n")
    url = sandboxes.staging_url

    first, _ = run_dag(import_dag)
    assert first.state == "success"
    apply_everyday_changes(sandboxes.powerschool, sandboxes.learning)
    second, _ = run_dag(import_dag)
    assert second.state == "success"

    # The second run's report pruned the first: its typed, Learning and warning rows and its
    # unchanged keys are gone; what it sent to Learning stays (changes_days); its raw records stay,
    # because the second run read incrementally and carried forward rows the first one read.
    for table in DETAIL:
        by_run = rows_by_run(url, table)
        assert first.run_id not in by_run, (table, by_run)
        assert by_run.get(second.run_id, 0) > 0 or table == "validation_warnings", (table, by_run)
    assert first.run_id not in rows_by_run(url, "change_set", "AND action = 'unchanged'")
    assert rows_by_run(url, "change_set", "AND action <> 'unchanged'")[first.run_id] > 0
    assert rows_by_run(url, "raw_records")[first.run_id] > 0
    assert pruned_marks(url) == {first.run_id: False, second.run_id: False}

    sandboxes.powerschool.rename("student", _a_student(url, second.run_id), last_name="Retained-Okoye")
    third, _ = run_dag(import_dag, full_refresh=True)
    assert third.state == "success"
    # A full read ends the chain: the first and second runs' raw records go, and both are marked.
    raw = rows_by_run(url, "raw_records")
    assert set(raw) == {third.run_id}, raw
    assert pruned_marks(url) == {first.run_id: True, second.run_id: True, third.run_id: False}

    apply_everyday_changes(sandboxes.powerschool, sandboxes.learning)
    fourth, _ = run_dag(import_dag)
    assert fourth.state == "success"
    modes = staged_rows(
        url,
        "SELECT DISTINCT mode FROM extract_reads WHERE district_id = :d AND run_id = :r AND entity = 'students'",
        d=DISTRICT_ID,
        r=fourth.run_id,
    )
    assert [row["mode"] for row in modes] == ["incremental"]
    failed = failed_users(url, fourth.run_id, sandboxes.powerschool.database_path)
    assert_learning_matches(
        expected_state(sandboxes.powerschool.database_path, failed_users=failed), sandboxes.learning_state()
    )
    # The newest run is whole (what analysts query); of the older runs only what they sent is left.
    for table in DETAIL[:4]:
        assert set(rows_by_run(url, table)) == {fourth.run_id}, table
    assert set(rows_by_run(url, "change_set", "AND action <> 'unchanged'")) >= {first.run_id, fourth.run_id}


def _a_student(staging_url: str, run_id: str) -> int:
    rows = staged_rows(
        staging_url,
        "SELECT MIN(CAST(student_id AS INTEGER)) AS dcid FROM stg_students WHERE district_id = :d AND run_id = :r",
        d=DISTRICT_ID,
        r=run_id,
    )
    return int(rows[0]["dcid"])
