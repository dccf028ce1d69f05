"""The load reads a phase's pending rows page by page without reading the rest of the change set.

On PostgreSQL the planner may read ``... WHERE entity = ... ORDER BY id LIMIT 1000`` along
the primary key, expecting the rows it wants to be dense there. For the last page of a
phase, where fewer rows than the limit are left, it then went on through every later row
of the change set (at L, 969,518 to 988,361 rows filtered out for the users' last page:
0.4 to 0.9 s), and so did a ``max(id)`` of the action's rows. The load now asks for a
range of the index's whole key, which only ``ix_change_set_run_action`` can give.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from sis_learning.load import Phase, _pending_pages
from sis_learning.staging.base import bulk_insert, create_all, get_engine
from sis_learning.staging.changes import ChangeSet

DISTRICT, RUN = "pages", "run_1"
PAGE = 1000
USERS, ROSTER_ROWS = 30_500, 60_000  # the sizes at which the planner chose the primary key here


def _change_rows(entity: str, key: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "district_id": DISTRICT,
            "run_id": RUN,
            "entity": entity,
            "key": key.format(number),
            "organization_id": "1",
            "action": "create",
            "status": "pending",
            "content_hash": "0" * 64,
            "payload": f'{{"n": {number}}}',
        }
        for number in range(count)
    ]


def _rows_filtered_out(plan: dict[str, Any]) -> int:
    return plan.get("Rows Removed by Filter", 0) + sum(_rows_filtered_out(child) for child in plan.get("Plans", ()))


@pytest.mark.postgres
def test_the_last_page_of_a_phase_reads_no_rows_of_later_entities(postgres_url):
    engine = create_all(get_engine(postgres_url))
    try:
        # The diff wrote the users' rows, then the roster rows after them; the load analysed
        # the change set (every row pending), then sends the users page by page.
        bulk_insert(engine, ChangeSet, _change_rows("users", "S:{}", USERS))
        bulk_insert(engine, ChangeSet, _change_rows("rosters", "c:S:{}", ROSTER_ROWS))
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE change_set")
            first_users = connection.execute(text("SELECT min(id) FROM change_set WHERE entity = 'users'")).scalar_one()

        # Each page read is explained (EXPLAIN ANALYZE, on a connection of its own) as it is made.
        explainer = create_engine(postgres_url, poolclass=NullPool)
        page_reads: list[tuple[int, str]] = []

        def explain(_connection, _cursor, statement, parameters, _context, _executemany):
            if "FROM change_set" not in statement or "LIMIT" not in statement:
                return
            with explainer.connect() as other:
                plan = other.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()
            page_reads.append((_rows_filtered_out(plan[0]["Plan"]), plan[0]["Plan"]["Plans"][0].get("Index Name", "")))

        batches = []
        event.listen(engine, "before_cursor_execute", explain)
        try:
            for batch in _pending_pages(engine, DISTRICT, RUN, Phase("users", "upsert", ("create",)), PAGE):
                batches.append(batch)
                with engine.begin() as connection:  # Learning accepted it, as the recorder writes
                    connection.execute(
                        text("UPDATE change_set SET status = 'accepted' WHERE id = ANY(:ids)"), {"ids": batch.ids}
                    )
        finally:
            event.remove(engine, "before_cursor_execute", explain)

        sent = [change_id for batch in batches for change_id in batch.ids]
        assert sent == list(range(first_users, first_users + USERS))
        assert page_reads, "the pages were not read with the statement this test watches"
        for number, (filtered, index) in enumerate(page_reads):
            assert filtered <= PAGE, (
                f"page read {number + 1} of {len(page_reads)} went through {filtered:,} rows it did not want "
                f"(the roster rows after the users'), along {index or 'the table'}"
            )
    finally:
        engine.dispose()
