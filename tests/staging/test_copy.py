"""Bulk writes and reads of staged rows keep every value, on SQLite and on PostgreSQL through both drivers.

PostgreSQL staging writes with COPY (``staging/postgres.py``): psycopg 3's ``write_row``
(``postgresql+psycopg://``, the documented URL) or CSV through psycopg2's ``copy_expert``
(``postgresql+psycopg2://``, still accepted). Values that COPY's formats treat specially
(NULL against an empty string, quotes, commas, tabs, newlines, backslashes, non-ASCII
text, booleans, JSON, times) must come back as they went in, through ``insert_tuples``
and ``read_frame`` alike.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.engine import make_url

from sis_learning.staging.base import create_all, get_engine, insert_frame, insert_tuples
from sis_learning.staging.reads import read_frame
from sis_learning.staging.source import StgStudent
from tests.staging.test_writer import config

# A table of the test's own: a JSON and a time column beside text.
EVENTS = Table(
    "copy_test_events",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(40)),
    Column("enabled", Boolean),
    Column("at", DateTime),
    Column("counts", JSON),
)

AWKWARD_TEXTS = [
    None,
    "",
    " ",
    'O\'Brien "Bob", Jr.',
    "tab\there",
    "line\nbreak\r\nand back\\slash \\N",
    "Zoë Łukasz 王 🙂",
    "\\.",
]


@pytest.fixture(params=["sqlite", "psycopg", "psycopg2"])
def any_staging(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'staging.sqlite'}"
    else:
        url = make_url(request.getfixturevalue("postgres_url")).set(drivername=f"postgresql+{request.param}")
        url = url.render_as_string(hide_password=False)
    engine = create_all(get_engine(url))
    yield engine
    engine.dispose()


def test_text_integers_and_nulls_round_trip_through_insert_and_read(any_staging):
    table = StgStudent.__table__
    columns = ["district_id", "run_id", "scope", "student_id", "last_name", "grade_level"]
    rows = [("tiny", "run-1", "11", str(1000 + n), text, n if n % 3 else None) for n, text in enumerate(AWKWARD_TEXTS)]
    with any_staging.begin() as connection:
        insert_tuples(connection, table, columns, rows)
    with any_staging.connect() as connection:
        stored = connection.execute(
            select(table.c.student_id, table.c.last_name, table.c.grade_level).order_by(table.c.id)
        ).all()
    assert stored == [(row[3], row[4], row[5]) for row in rows]
    # read_frame treats a blank text as missing (validate's rule), and keeps everything else.
    frame = read_frame(any_staging, StgStudent, config(), "run-1", ["student_id", "last_name", "grade_level"])
    expected = [None if text is None or not text.strip() else text for text in AWKWARD_TEXTS]
    assert [None if pd.isna(value) else value for value in frame["last_name"].tolist()] == expected
    assert [None if pd.isna(value) else value for value in frame["grade_level"].tolist()] == [row[5] for row in rows]


def test_booleans_times_and_json_round_trip(any_staging):
    now = datetime(2026, 12, 5, 6, 0, 0, 123456)
    frame = pd.DataFrame(
        [['Ann "A", \\x', True, now], [None, False, now], ["", None, now]], columns=["name", "enabled", "at"]
    )
    with any_staging.begin() as connection:
        EVENTS.create(connection)
        insert_frame(connection, EVENTS, frame, {"counts": {"users": {"create": 2}, "note": 'a,b\t"c"'}})
        insert_tuples(connection, EVENTS, ["name", "enabled", "at", "counts"], [("tuple", False, None, [1, "x"])])
    with any_staging.connect() as connection:
        stored = connection.execute(
            select(EVENTS.c.name, EVENTS.c.enabled, EVENTS.c.at, EVENTS.c.counts).order_by(EVENTS.c.id)
        ).all()
    counts = {"users": {"create": 2}, "note": 'a,b\t"c"'}
    assert stored == [
        ('Ann "A", \\x', True, now, counts),
        (None, False, now, counts),
        ("", None, now, counts),
        ("tuple", False, None, [1, "x"]),
    ]


def test_the_documented_url_uses_psycopg_3(postgres_url):
    engine = create_engine(make_url(postgres_url).set(drivername="postgresql"))
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_a_carry_forward_reads_the_base_run_along_its_run_index_on_postgresql(postgres_url):
    """``along_run_index``: inside it PostgreSQL reads a run's rows in the run index's order (the
    copied rows then enter the index in key order, docs/load.md); after it, the planner's own choice again."""
    from sqlalchemy import text

    from sis_learning.staging.base import along_run_index, analyze
    from sis_learning.staging.source import StgSectionEnrollment

    engine = create_all(get_engine(postgres_url))
    rows = [
        {
            "district_id": "tiny",
            "run_id": "base",
            "scope": "district",
            "enrollment_id": str(number),
            "section_id": str(number % 97),
            "student_id": str(number % 1000),
            "dropped": False,
        }
        for number in range(20_000)
    ]
    read = "EXPLAIN SELECT * FROM stg_section_enrollments t WHERE t.district_id = 'tiny' AND t.run_id = 'base'"
    with engine.begin() as connection:
        connection.execute(StgSectionEnrollment.__table__.insert(), rows)
        analyze(connection, [StgSectionEnrollment])
    with engine.begin() as connection:
        assert "Seq Scan" in "\n".join(connection.exec_driver_sql(read).scalars())  # the planner's choice
        with along_run_index(connection):
            plan = "\n".join(connection.exec_driver_sql(read).scalars())
            assert "Index Scan using ix_stg_section_enrollments_run" in plan, plan
        assert connection.scalar(text("SHOW enable_seqscan")) == "on"
        assert connection.scalar(text("SHOW enable_bitmapscan")) == "on"
        assert "Seq Scan" in "\n".join(connection.exec_driver_sql(read).scalars())


def test_analysing_only_the_run_columns_analyses_a_table_whole_until_every_column_has_statistics(postgres_url):
    """``analyze(..., columns=...)`` refreshes only the run columns of a table whose other columns
    already have statistics; a table analysed while empty (a first full load's snapshot) has none,
    and is analysed whole, or the planner guesses at its keys (an incremental diff: 48 s, not 4)."""
    from sis_learning.staging.base import analyze
    from sis_learning.staging.source import StgSectionEnrollment

    engine = create_all(get_engine(postgres_url))
    table = StgSectionEnrollment.__table__

    def rows(run_id: str, students: int) -> list[dict]:
        return [
            {
                "district_id": "tiny",
                "run_id": run_id,
                "scope": "district",
                "enrollment_id": f"{run_id}{number}",
                "section_id": str(number % 97),
                "student_id": str(number % students),
                "dropped": False,
            }
            for number in range(20_000)
        ]

    def n_distinct() -> dict[str, float]:
        with engine.connect() as connection:
            return dict(
                connection.exec_driver_sql(
                    "SELECT attname, n_distinct FROM pg_stats WHERE tablename = 'stg_section_enrollments'"
                ).all()
            )

    run_columns = ("district_id", "run_id")
    with engine.begin() as connection:
        connection.execute(table.delete())
        analyze(connection, [StgSectionEnrollment])  # while empty: no column statistics
        connection.execute(table.insert(), rows("base", 1000))
    assert "student_id" not in n_distinct()
    with engine.begin() as connection:
        analyze(connection, [StgSectionEnrollment], columns=run_columns)
    assert n_distinct()["student_id"] == 1000 and n_distinct()["section_id"] == 97
    # Every column has statistics now: the next run's rows refresh the run columns only.
    with engine.begin() as connection:
        connection.execute(table.insert(), rows("next", 20_000))
        analyze(connection, [StgSectionEnrollment], columns=run_columns)
    assert n_distinct()["run_id"] == 2 and n_distinct()["student_id"] == 1000
    with engine.begin() as connection:
        analyze(connection, [StgSectionEnrollment])
    assert n_distinct()["student_id"] != 1000


def test_a_table_is_analysed_once_a_tenth_or_more_of_what_its_statistics_count_was_written(postgres_url):
    """``analyze_if_changed``: the load analyses the snapshot before it fills it; after a district's
    first load the statistics described an empty table, so it analyses it again once the rows
    written since the statistics were taken are a tenth or more of what they count (added up
    over several writes, as autovacuum counts), and not for a few rows of a large table."""
    from sis_learning.staging.base import analyze, analyze_if_changed
    from sis_learning.staging.source import StgSectionEnrollment

    engine = create_all(get_engine(postgres_url))
    table = StgSectionEnrollment.__table__

    def rows(first: int, count: int) -> list[dict]:
        return [
            {
                "district_id": "tiny",
                "run_id": "r",
                "scope": "district",
                "enrollment_id": str(number),
                "section_id": "1",
                "student_id": "1",
                "dropped": False,
            }
            for number in range(first, first + count)
        ]

    with engine.connect() as connection:

        def write(first: int, count: int) -> None:
            with connection.begin():
                connection.execute(table.insert(), rows(first, count))
                # Counted for other sessions once this one goes idle (else within a second).
                connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")

        def analysed() -> bool:
            with connection.begin():
                return analyze_if_changed(connection, StgSectionEnrollment)

        def counted() -> float:
            with connection.begin():
                return connection.exec_driver_sql(
                    "SELECT reltuples FROM pg_class WHERE relname = 'stg_section_enrollments'"
                ).scalar()

        with connection.begin():
            connection.execute(table.delete())
            analyze(connection, [StgSectionEnrollment])  # while empty
        write(0, 5_000)
        assert analysed() and counted() == 5_000
        write(5_000, 300)
        assert not analysed() and counted() == 5_000
        write(5_300, 300)  # 600 rows since the statistics: more than a tenth of 5,000
        assert analysed() and counted() == 5_600
        assert not analysed()
