"""The staging writer (``staging/writer.py``, ``EntityStaging``) on SQLite and on PostgreSQL.

Pages are written by a thread of their own; each page's raw JSON and typed rows commit
together, a retried entity clears its scopes first, a failed write surfaces in the
reading thread, and ids listed twice with different values are marked on every copy.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sis_learning.config import DistrictConfig
from sis_learning.staging.source import ExtractCount, RawRecord, StgStudent
from sis_learning.staging.writer import DISTRICT_SCOPE, DUPLICATE_SOURCE_ID, EntityStaging

RUN = "manual__2026-02-02T06:00:00+00:00"


def config(district_id: str = "tiny") -> DistrictConfig:
    return DistrictConfig.model_validate(
        {
            "district_id": district_id,
            "name": "Writer test district",
            "powerschool": {"connection_id": "powerschool_tiny"},
            "learning": {"connection_id": "learning_tiny"},
            "schools": "all",
            "import_start_year": 2025,
        }
    )


def student_page(first: int, count: int, school: str = "11") -> tuple[list[dict], list[dict], list[str]]:
    records = [{"id": first + n, "name": {"last_name": f"Last{n}"}, "school": school} for n in range(count)]
    rows = [
        {"student_id": str(first + n), "school_id": school, "last_name": f"Last{n}", "grade_level": 3}
        for n in range(count)
    ]
    return records, rows, [str(first + n) for n in range(count)]


def staged_students(engine, run_id: str = RUN) -> list[tuple]:
    table = StgStudent.__table__
    with engine.connect() as connection:
        return connection.execute(
            select(table.c.scope, table.c.student_id, table.c.last_name, table.c.grade_level, table.c.source_problem)
            .where(table.c.run_id == run_id)
            .order_by(table.c.student_id)
        ).all()


def raw_ids(engine, run_id: str = RUN) -> list[str]:
    table = RawRecord.__table__
    with engine.connect() as connection:
        return sorted(
            connection.execute(select(table.c.source_id).where(table.c.run_id == run_id, table.c.entity == "students"))
            .scalars()
            .all()
        )


def test_pages_are_staged_raw_and_typed_and_counted(staging_engine):
    staging = EntityStaging(staging_engine, config(), RUN, "students")
    staging.clear(["11", "12"])
    for first in range(0, 2_500, 100):  # more pages than the writer's queue holds
        staging.write_page("11", *student_page(1000 + first, 100))
    staging.write_page("12", *student_page(9000, 7, school="12"))
    staging.close()
    assert staging.written == {"11": 2_500, "12": 7}
    rows = staged_students(staging_engine)
    assert len(rows) == 2_507
    assert rows[0] == ("11", "1000", "Last0", 3, None)
    assert raw_ids(staging_engine) == sorted(str(1000 + n) for n in range(2_500)) + [str(9000 + n) for n in range(7)]
    staging.write_counts([{"scope": "11", "rows": 2_500, "requests": 25, "pages": 25}])
    with staging_engine.connect() as connection:
        count = connection.execute(select(ExtractCount.__table__.c.rows)).scalar_one()
    assert count == 2_500


def test_a_retried_entity_clears_its_own_scopes_only(staging_engine):
    first = EntityStaging(staging_engine, config(), RUN, "students")
    first.clear(["11", "12"])
    first.write_page("11", *student_page(1000, 5))
    first.write_page("12", *student_page(2000, 5, school="12"))
    first.close()
    retried = EntityStaging(staging_engine, config(), RUN, "students")
    retried.clear(["11"])
    retried.write_page("11", *student_page(1000, 3))
    retried.close()
    rows = staged_students(staging_engine)
    assert [row[1] for row in rows] == ["1000", "1001", "1002", "2000", "2001", "2002", "2003", "2004"]
    assert len(raw_ids(staging_engine)) == 8


def test_another_district_and_run_are_left_alone(staging_engine):
    other = EntityStaging(staging_engine, config("other"), RUN, "students")
    other.write_page("11", *student_page(1000, 4))
    other.close()
    earlier = EntityStaging(staging_engine, config(), "earlier_run", "students")
    earlier.write_page("11", *student_page(1000, 2))
    earlier.close()
    staging = EntityStaging(staging_engine, config(), RUN, "students")
    staging.clear(["11"])
    staging.write_page("11", *student_page(1000, 1))
    staging.close()
    assert len(staged_students(staging_engine)) == 5  # 4 of the other district and this run's 1
    assert len(staged_students(staging_engine, "earlier_run")) == 2


def test_a_failed_write_is_raised_in_the_reading_thread(staging_engine):
    staging = EntityStaging(staging_engine, config(), RUN, "students")
    records, rows, ids = student_page(1000, 3)
    rows = [{**row, "no_such_column": "x"} for row in rows]  # the database refuses the page
    staging.write_page("11", records, rows, ids)
    with pytest.raises(Exception, match="no_such_column"):
        for _ in range(20):  # the failure surfaces on a later page or at close
            staging.write_page("11", *student_page(5000, 1))
        staging.close()
    assert staged_students(staging_engine) == []  # the failed page's transaction left nothing


def test_ids_listed_twice_with_different_values_are_marked_on_every_copy(staging_engine):
    staging = EntityStaging(staging_engine, config(), RUN, "students")
    records, rows, ids = student_page(1000, 3)
    copy_records, copy_rows, copy_ids = student_page(1001, 1)
    copy_rows[0]["last_name"] = "Other"
    staging.write_page(DISTRICT_SCOPE, records + copy_records, rows + copy_rows, ids + copy_ids)
    staging.close()
    staging.mark_duplicates(DISTRICT_SCOPE, ["1001"])
    marked = [(row[1], row[2]) for row in staged_students(staging_engine) if row[4] == DUPLICATE_SOURCE_ID]
    assert sorted(marked) == [("1001", "Last1"), ("1001", "Other")]
