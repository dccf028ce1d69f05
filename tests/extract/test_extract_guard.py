"""An entity's listing for a school that comes back empty, where /count or the last
successful run says it had rows, stops the run in extract, naming school and entity.
There is no row floor: a school of three students that drops to zero stops too."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from sis_learning.exceptions import EmptyListingError
from sis_learning.extract_guard import check_listings_not_emptied
from sis_learning.staging.base import bulk_insert, create_all, get_engine
from sis_learning.staging.runs import finish_run, start_run
from sis_learning.staging.source import ExtractCount, StgSchool

D = "demo"


def _counts(engine, run_id, entity, per_scope):
    with engine.begin() as connection:
        bulk_insert(
            connection,
            ExtractCount,
            [
                {
                    "district_id": D,
                    "run_id": run_id,
                    "entity": entity,
                    "scope": scope,
                    "rows": rows,
                    "reported_count": reported,
                    "requests": 1,
                    "pages": 1,
                    "mismatch": False,
                    "note": note,
                }
                for scope, (rows, reported, note) in per_scope.items()
            ],
        )


def _schools(engine, run_id):
    with engine.begin() as connection:
        bulk_insert(
            connection,
            StgSchool,
            [
                {
                    "district_id": D,
                    "run_id": run_id,
                    "scope": "district",
                    "school_id": "7",
                    "school_number": "700",
                    "name": "Lincoln Elementary",
                },
                {
                    "district_id": D,
                    "run_id": run_id,
                    "scope": "district",
                    "school_id": "8",
                    "school_number": "800",
                    "name": "Tiny Rural School",
                },
            ],
        )


@pytest.fixture
def engine(staging_url):
    return create_all(get_engine(staging_url))


def test_an_empty_listing_where_the_last_run_had_three_rows_stops_naming_school_and_entity(engine):
    start_run(engine, D, "first")
    _counts(engine, "first", "students", {"7": (400, 400, None), "8": (3, 3, None)})
    finish_run(engine, D, "first", "success")
    start_run(engine, D, "second")
    _schools(engine, "second")
    _counts(engine, "second", "students", {"7": (401, None, None), "8": (0, None, None)})
    with pytest.raises(EmptyListingError) as raised:
        check_listings_not_emptied(engine, D, "second", "students")
    message = str(raised.value)
    assert "students of school 8 (Tiny Rural School)" in message and "read 3" in message, message
    assert "school 7" not in message
    assert isinstance(raised.value, AirflowFailException), "no retry: a person must look"


def test_an_empty_listing_where_count_reports_rows_stops_even_on_a_first_run(engine):
    start_run(engine, D, "only")
    _counts(engine, "only", "sections", {"7": (0, 12, None)})
    with pytest.raises(EmptyListingError, match=r"sections of school 7: .*/count reports 12"):
        check_listings_not_emptied(engine, D, "only", "sections")


def test_empty_scopes_that_were_empty_before_or_staged_elsewhere_pass(engine):
    start_run(engine, D, "first")
    _counts(engine, "first", "staff", {"7": (30, 30, None), "8": (0, 0, None)})
    finish_run(engine, D, "first", "success")
    start_run(engine, D, "failed_run")
    _counts(engine, "failed_run", "staff", {"9": (5, 5, None)})  # a failed run is not a baseline
    finish_run(engine, D, "failed_run", "failed", error="x")
    start_run(engine, D, "second")
    _counts(
        engine,
        "second",
        "staff",
        {
            "7": (30, 30, None),
            "8": (0, 0, None),
            "9": (0, None, None),
            "10": (0, 2, "2 staff already staged under another selected school"),
        },
    )
    assert check_listings_not_emptied(engine, D, "second", "staff") == {"scopes_checked": 4}
