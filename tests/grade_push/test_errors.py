"""A database error in grade push is told by table, constraint and count, never by the rows (issue 14)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from sis_learning.exceptions import StagingDataError


def test_a_bulk_insert_driver_error_in_the_ledger_is_summarised_without_row_values(world_on_both, caplog):
    """The ledger's bulk upsert of pushed scores fails in the driver (a real constraint of the
    staging database refuses the batch): the run fails with the table, the constraint and the
    row count, and no student id or score reaches the raised error, ``sync_runs`` or the log."""
    world = world_on_both
    section = world.pool.take(1)[0]
    world.import_sections([section])
    scores = {"81.125", "92.375"}
    for title, value in zip(("Driver error A", "Driver error B"), sorted(scores), strict=True):
        gradable = world.gradable(section, title, 100)
        for student in section.students:
            world.score(gradable, student, value)
    # A real constraint the pushed rows break: one ledger row per student (the two gradables share
    # students), so the driver refuses the page's bulk INSERT ... ON CONFLICT into grade_push_scores.
    with world.engine.begin() as connection:
        connection.execute(
            text("CREATE UNIQUE INDEX uq_test_one_score_per_student ON grade_push_scores (district_id, student_id)")
        )
    caplog.set_level(logging.INFO)
    with pytest.raises(StagingDataError) as raised:
        world.push("run_db_error")
    message = str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # the driver's error is not chained
    assert message.startswith("grade push: the staging database refused")
    assert "grade_push_scores" in message and "UNIQUE constraint" in message
    assert f"{2 * len(section.students)} row(s)" in message
    with world.engine.connect() as connection:
        stored = connection.execute(text("SELECT status, error FROM sync_runs WHERE run_id = 'run_db_error'")).one()
    assert stored.status == "failed" and stored.error == message
    leaked = [value for value in (*scores, *section.students) if value in message or value in caplog.text]
    assert leaked == [], f"row values in the error or the log: {leaked}"
    assert "INSERT INTO" not in caplog.text and "parameters" not in message
