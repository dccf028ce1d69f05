"""Extract against the PowerSchool sandbox over HTTPS, into SQLite and PostgreSQL staging.

The staged rows of every entity must equal what the sandbox's SIS tables say (row counts
and a checksum per entity), whatever the server throws in between: its quirks (on by
default), 5xx errors, connection resets, throttling, a token expiring mid-run, a refused
CC read. Fatal conditions must fail with a message that tells the admin what to fix.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from sis_learning.extract import (
    ENTITY_EXTRACTS,
    ExtractOrderError,
    UnknownSchoolError,
    extract_guardians,
    extract_section_enrollments,
    extract_sections,
    extract_students,
    selected_school_ids,
)
from sis_learning.hooks.http_client import ValidationFailedError
from sis_learning.staging.source import ExtractCount, RawRecord, StgStudent
from tests.extract.conftest import START_YEAR, TEST_RETRIES, make_config, make_hook
from tests.extract.oracle import checksum, expected_rows, staged_rows

RUN = "manual__2026-01-05T06:00:00+00:00"


def extract_everything(hook, engine, config, run_id=RUN) -> dict[str, dict]:
    return {entity: function(hook, engine, config, run_id) for entity, function in ENTITY_EXTRACTS.items()}


def assert_staging_matches_sandbox(engine, server, run_id=RUN, entities=tuple(ENTITY_EXTRACTS)):
    expected = expected_rows(server.database_path, START_YEAR)
    for entity in entities:
        staged = staged_rows(engine, "tiny", run_id, entity)
        missing = sorted(set(expected[entity]) - set(staged), key=repr)[:5]
        extra = sorted(set(staged) - set(expected[entity]), key=repr)[:5]
        assert len(staged) == len(expected[entity]), (
            f"{entity}: {len(staged)} staged, {len(expected[entity])} expected; missing {missing}, unexpected {extra}"
        )
        assert checksum(staged) == checksum(expected[entity]), f"{entity}: missing {missing}, unexpected {extra}"


def extract_counts(engine, entity, run_id=RUN) -> list[dict]:
    table = ExtractCount.__table__
    with engine.connect() as connection:
        rows = connection.execute(
            select(table).where(table.c.run_id == run_id, table.c.entity == entity).order_by(table.c.scope)
        ).mappings()
        return [dict(row) for row in rows]


def test_every_entity_staged_equals_the_sandbox(staging_engine, sandbox):
    hook = make_hook(sandbox)
    results = extract_everything(hook, staging_engine, make_config())
    assert_staging_matches_sandbox(staging_engine, sandbox)
    for entity, result in results.items():
        assert not result["mismatch"], (entity, extract_counts(staging_engine, entity))
        assert len(json.dumps(result)) < 500  # what XCom carries: counts, never rows
        assert result["rows"] == len(staged_rows(staging_engine, "tiny", RUN, entity))
    # every staged record's raw JSON is kept, under its entity, and parses
    with staging_engine.connect() as connection:
        raw = connection.execute(
            select(RawRecord.entity, func.count()).where(RawRecord.run_id == RUN).group_by(RawRecord.entity)
        ).all()
        sample = connection.execute(
            select(RawRecord.payload).where(RawRecord.entity == "students").limit(1)
        ).scalar_one()
    assert dict(raw) == {entity: result["rows"] for entity, result in results.items() if result["rows"]}
    assert "school_enrollment" in json.loads(sample)
    assert results["section_enrollments"]["source"] == "cc"
    # counts per scope: students per school; /count is read only where page 1 alone cannot
    # tell a complete listing from a clamped one, and then cross-checked
    student_counts = extract_counts(staging_engine, "students")
    assert [row["scope"] for row in student_counts] == selected_school_ids(hook, make_config())
    assert all(row["rows"] > 0 and not row["mismatch"] for row in student_counts)
    assert all(row["reported_count"] in (None, row["rows"]) for row in student_counts)
    assert hook.stats.requests["GET /ws/v1/school/{id}/student/count"] == sum(
        row["reported_count"] is not None for row in student_counts
    )


def test_a_retried_task_never_duplicates(staging_engine, sandbox):
    hook = make_hook(sandbox)
    config = make_config()
    first = extract_students(hook, staging_engine, config, RUN)
    again = extract_students(hook, staging_engine, config, RUN)
    assert first["rows"] == again["rows"] > 0
    with staging_engine.connect() as connection:
        staged = connection.execute(
            select(func.count()).select_from(StgStudent).where(StgStudent.run_id == RUN)
        ).scalar_one()
    assert staged == first["rows"]
    assert len(extract_counts(staging_engine, "students")) == len(selected_school_ids(hook, config))


def test_one_school_task_leaves_other_schools_rows_alone(staging_engine, sandbox):
    hook = make_hook(sandbox)
    config = make_config()
    schools = selected_school_ids(hook, config)
    per_school = [extract_students(hook, staging_engine, config, RUN, [school])["rows"] for school in schools]
    extract_students(hook, staging_engine, config, RUN, [schools[0]])  # a retry of the first mapped task
    assert_staging_matches_sandbox(staging_engine, sandbox, entities=("students",))
    assert sum(per_school) == len(staged_rows(staging_engine, "tiny", RUN, "students"))


def test_five_xx_and_connection_resets_end_with_complete_data(staging_engine, sandbox):
    engine = staging_engine
    sandbox.configure(error_rate=0.2, reset_rate=0.05, fault_seed=7)
    hook = make_hook(sandbox)
    extract_everything(hook, engine, make_config())
    assert_staging_matches_sandbox(engine, sandbox)
    assert sum(hook.stats.retries.values()) > 0  # the faults really happened


def test_throttle_is_honoured_and_data_complete(sqlite_url, sandbox):
    from sis_learning.staging.base import create_all, get_engine

    engine = create_all(get_engine(sqlite_url))
    sandbox.configure(throttle_ms=30)
    hook = make_hook(sandbox)
    config = make_config()
    extract_students(hook, engine, config, RUN)
    extract_sections(hook, engine, config, RUN)
    assert_staging_matches_sandbox(engine, sandbox, entities=("students", "sections"))
    assert hook.stats.throttled > 0


def test_token_expiring_mid_extract_is_renewed(sqlite_url, sandbox):
    from sis_learning.hooks.powerschool import PowerSchoolHook
    from sis_learning.staging.base import create_all, get_engine

    engine = create_all(get_engine(sqlite_url))

    class ExpiresAfterFirstPage(PowerSchoolHook):
        """Has the server expire every token right after the first page of the CC read."""

        pages_read = 0

        def read_page(self, listing, page):
            rows = super().read_page(listing, page)
            if listing.path.endswith("/cc"):
                type(self).pages_read += 1
                if type(self).pages_read == 1:
                    sandbox.expire_tokens()
            return rows

    sandbox.configure(max_page_sizes={"schema_table_query": 100})  # several CC pages
    # one request at a time: page 2 is sent after the expiry and meets the 401
    hook = ExpiresAfterFirstPage.from_settings(
        sandbox.base_url,
        sandbox.client_id,
        sandbox.client_secret,
        sandbox.ca_bundle,
        max_concurrent_requests=1,
        retry_policy=TEST_RETRIES,
    )
    config = make_config()
    extract_section_enrollments(hook, engine, config, RUN)
    assert ExpiresAfterFirstPage.pages_read >= 2
    assert hook.tokens_issued == 2
    assert_staging_matches_sandbox(engine, sandbox, entities=("section_enrollments",))


def test_refused_cc_read_falls_back_to_per_section_reads(staging_engine, sandbox):
    sandbox.configure(field_grants={"cc": ["id", "dcid", "studentid", "schoolid", "termid"]})  # no sectionid
    hook = make_hook(sandbox)
    # run alone: the fallback reads the section and student ids it needs itself
    result = extract_section_enrollments(hook, staging_engine, make_config(), RUN)
    assert result["source"] == "per_section"
    note = extract_counts(staging_engine, "section_enrollments")[0]["note"]
    assert "cc.sectionid" in note and "read per section" in note
    assert_staging_matches_sandbox(staging_engine, sandbox, entities=("section_enrollments",))


def test_missing_field_grant_fails_naming_the_field(sqlite_url, sandbox):
    from sis_learning.staging.base import create_all, get_engine

    engine = create_all(get_engine(sqlite_url))
    sandbox.configure(field_grants={"pcas_account": ["pcas_accounttoken", "username"]})  # isenabled withheld
    hook = make_hook(sandbox)
    config = make_config()
    extract_students(hook, engine, config, RUN)
    with pytest.raises(ValidationFailedError) as raised:
        extract_guardians(hook, engine, config, RUN)
    message = str(raised.value)
    assert "pcas_account.isenabled" in message and "field access" in message
    assert sandbox.client_secret not in message


def test_guardians_skipped_when_the_district_ignores_parents(sqlite_url, sandbox):
    from sis_learning.staging.base import create_all, get_engine

    engine = create_all(get_engine(sqlite_url))
    hook = make_hook(sandbox)
    result = extract_guardians(hook, engine, make_config(ignore_parents=True), RUN)
    assert result["skipped"] and result["rows"] == 0 and result["requests"] == 0
    assert "ignores parents" in extract_counts(engine, "guardians")[0]["note"]


def test_guardians_need_the_students_of_the_run(sqlite_url, sandbox):
    from sis_learning.staging.base import create_all, get_engine

    engine = create_all(get_engine(sqlite_url))
    with pytest.raises(ExtractOrderError, match="extract_students"):
        extract_guardians(make_hook(sandbox), engine, make_config(), RUN)


def test_schools_by_number_or_id_and_unknown_school_named(sandbox):
    hook = make_hook(sandbox)
    everything = selected_school_ids(hook, make_config())
    first = hook.district_schools()[0]
    by_number = selected_school_ids(hook, make_config(schools=[str(first["school_number"])]))
    by_id = selected_school_ids(hook, make_config(schools=[str(first["id"])]))
    assert by_number == by_id == [str(first["id"])]
    assert len(everything) == len(hook.district_schools())
    with pytest.raises(UnknownSchoolError, match="'424242'"):
        selected_school_ids(hook, make_config(schools=[str(first["id"]), "424242"]))


def test_only_the_selected_schools_are_read_and_staged(sqlite_url, sandbox):
    from sis_learning.extract import extract_schools
    from sis_learning.staging.base import create_all, get_engine

    engine = create_all(get_engine(sqlite_url))
    hook = make_hook(sandbox)
    school = hook.district_schools()[1]
    config = make_config(schools=[str(school["school_number"])])  # chosen by school number
    assert extract_schools(hook, engine, config, RUN)["rows"] == 1
    assert "2 schools the district did not select" in extract_counts(engine, "schools")[0]["note"]
    extract_students(hook, engine, config, RUN)
    expected = [
        row for row in expected_rows(sandbox.database_path, START_YEAR)["students"] if row[6] == str(school["id"])
    ]
    assert staged_rows(engine, "tiny", RUN, "students") == expected
    assert [row["scope"] for row in extract_counts(engine, "students")] == [str(school["id"])]


def test_a_large_cc_read_is_paged_in_school_groups(staging_engine, sandbox, monkeypatch):
    from sis_learning.extract import listing

    monkeypatch.setattr(listing, "SPLIT_TABLE_READ_ABOVE_PAGES", 1)  # every multi-page table read is "large"
    sandbox.configure(max_page_sizes={"schema_table_query": 100})  # CC of the tiny district: 3 pages
    hook = make_hook(sandbox, max_concurrent_requests=2)
    result = extract_section_enrollments(hook, staging_engine, make_config(), RUN)
    assert_staging_matches_sandbox(staging_engine, sandbox, entities=("section_enrollments",))
    # one count for the whole read, then one listing per school group (3 schools, at most
    # 2 x 2 groups): the groups' rows together are cross-checked against that count
    assert hook.stats.requests["GET /ws/schema/table/cc/count"] == 1
    assert hook.stats.requests["GET /ws/schema/table/cc"] >= 3
    counts = extract_counts(staging_engine, "section_enrollments")[0]
    assert counts["reported_count"] is not None and not counts["mismatch"] and not result["mismatch"]
    assert counts["requests"] == 1 + hook.stats.requests["GET /ws/schema/table/cc"]


def test_terms_of_all_schools_come_from_one_table_read(staging_engine, sandbox):
    from sis_learning.extract import extract_terms

    hook = make_hook(sandbox)
    result = extract_terms(hook, staging_engine, make_config(), RUN)
    assert result["source"] == "table" and not result["mismatch"]
    assert hook.stats.requests["GET /ws/schema/table/terms"] == 1
    assert hook.stats.requests["GET /ws/v1/school/{id}/term"] == 0
    assert_staging_matches_sandbox(staging_engine, sandbox, entities=("terms",))
    [counts] = extract_counts(staging_engine, "terms")
    assert counts["scope"] == "district" and counts["reported_count"] == counts["rows"] == result["rows"]


def test_terms_of_one_school_and_a_refused_terms_table_read_per_school(staging_engine, sandbox):
    from sis_learning.extract import extract_terms

    hook = make_hook(sandbox)
    config = make_config()
    schools = selected_school_ids(hook, config)
    extract_terms(hook, staging_engine, config, RUN)  # a table read first: the per-school reads replace it
    per_school = [extract_terms(hook, staging_engine, config, RUN, [school])["rows"] for school in schools]
    assert hook.stats.requests["GET /ws/v1/school/{id}/term"] == len(schools)
    assert sum(per_school) == len(staged_rows(staging_engine, "tiny", RUN, "terms"))
    assert_staging_matches_sandbox(staging_engine, sandbox, entities=("terms",))
    assert [row["scope"] for row in extract_counts(staging_engine, "terms")] == sorted(schools)

    sandbox.configure(field_grants={"terms": ["id", "dcid", "schoolid"]})  # name, dates, ... withheld
    result = extract_terms(hook, staging_engine, config, RUN)
    assert "source" not in result and result["rows"] == sum(per_school)
    assert_staging_matches_sandbox(staging_engine, sandbox, entities=("terms",))
    assert "terms table read was refused" in extract_counts(staging_engine, "terms")[0]["note"]
