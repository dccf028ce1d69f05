"""Incremental extract (issue 17): after SIS changes, an incremental run stages what a full run stages.

A district's first run reads in full; the next run of the same local day reads CC only
from its ``whenmodified`` cursor, reads the enrollments of students and sections new
since then by id, and carries the unchanged rows forward. Its staged section enrollments
must equal the oracle on the changed SIS data, field by field, except a hard delete
(invisible to a cursor, as in PowerSchool), which the next full read removes. A run that
did not succeed is never the starting point, and a plugin that may not filter on the
cursor reads in full and says so. On SQLite and PostgreSQL staging.
"""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import select

from sis_learning.extract import extract_section_enrollments, extract_sections, extract_students
from sis_learning.extract.incremental import request_full_read
from sis_learning.staging.runs import finish_run, start_run
from sis_learning.staging.source import ExtractCount, ExtractRead
from tests.extract.conftest import START_YEAR, make_config, make_hook
from tests.extract.oracle import expected_rows, staged_rows

ENTITY = "section_enrollments"


@pytest.fixture
def own_sandbox():
    """A sandbox of its own: this test changes and hard-deletes SIS rows."""
    from sandbox.powerschool.testing import running_powerschool

    with running_powerschool(dataset="tiny", irregularities=False) as server:
        yield server


def run(engine, server, run_id, *, succeed=True, full_refresh=False, **config):
    config = make_config(**config)
    start_run(engine, "tiny", run_id)
    if full_refresh:
        request_full_read(engine, "tiny", run_id)
    hook = make_hook(server)
    extract_students(hook, engine, config, run_id)
    extract_sections(hook, engine, config, run_id)
    result = extract_section_enrollments(hook, engine, config, run_id)
    if succeed:
        finish_run(engine, "tiny", run_id, "success")
    else:
        finish_run(engine, "tiny", run_id, "failed", error="load failed")
    return result, hook


def oracle(server):
    return sorted(expected_rows(server.database_path, START_YEAR)[ENTITY], key=repr)


def staged(engine, run_id):
    return sorted(staged_rows(engine, "tiny", run_id, ENTITY), key=repr)


def sis(server, sql, parameters=()):
    connection = sqlite3.connect(server.database_path)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(sql, parameters).fetchall()
        connection.commit()
        return rows
    finally:
        connection.close()


def change_the_sis(server):
    """Enrolment, drop, a new section with a student, a student leaving, one coming back, a hard delete."""
    active = sis(
        server,
        "SELECT st.dcid AS student, se.dcid AS section FROM cc JOIN students st ON st.id = cc.studentid "
        "JOIN sections se ON se.id = cc.sectionid JOIN terms tm ON tm.schoolid = se.schoolid "
        "AND tm.id = se.termid WHERE st.enroll_status = 0 AND tm.yearid + 1990 >= ? "
        "ORDER BY cc.dcid",
        (START_YEAR,),
    )
    first, second, third = active[0], active[len(active) // 2], active[-1]
    server.drop_enrollment(first["student"], first["section"])
    server.enroll_student(second["student"], first["section"])
    server.rename("section", third["section"], section_number="R-1")  # not a CC change: the section's
    leaving = active[len(active) // 3]["student"]
    server.set_enroll_status(leaving, 2)
    section = sis(
        server,
        "SELECT se.schoolid, se.course_number, se.termid, sc.dcid AS school FROM sections se "
        "JOIN schools sc ON sc.school_number = se.schoolid WHERE se.dcid = ?",
        (third["section"],),
    )[0]
    added = server.add_section(section["school"], section["course_number"], section["termid"])
    new_section = added.get("section_dcid") or added.get("dcid")
    server.enroll_student(third["student"], new_section)
    deleted = sis(
        server,
        "SELECT cc.dcid FROM cc JOIN students st ON st.id = cc.studentid JOIN sections se "
        "ON se.id = cc.sectionid WHERE st.enroll_status = 0 AND st.dcid NOT IN (?, ?, ?) "
        "ORDER BY cc.dcid DESC LIMIT 1",
        (first["student"], second["student"], third["student"]),
    )[0]["dcid"]
    sis(server, "DELETE FROM cc WHERE dcid = ?", (deleted,))
    return str(deleted), leaving


def reads(engine, run_id):
    table = ExtractRead.__table__
    with engine.connect() as connection:
        return {row.entity: row for row in connection.execute(select(table).where(table.c.run_id == run_id))}


def note(engine, run_id):
    table = ExtractCount.__table__
    with engine.connect() as connection:
        return connection.execute(
            select(table.c.note).where(table.c.run_id == run_id, table.c.entity == ENTITY)
        ).scalar()


def test_incremental_runs_stage_what_a_full_run_stages(staging_engine, own_sandbox):
    server = own_sandbox
    full, full_hook = run(staging_engine, server, "r1")
    assert full["read_mode"] == "full"
    assert staged(staging_engine, "r1") == oracle(server)

    deleted, leaving = change_the_sis(server)
    second, second_hook = run(staging_engine, server, "r2")
    assert second["read_mode"] == "incremental", note(staging_engine, "r2")
    assert reads(staging_engine, "r2")[ENTITY].base_run_id == "r1"
    expected = oracle(server)
    rows = staged(staging_engine, "r2")
    # A hard delete is invisible to the cursor (as in PowerSchool): only that row differs.
    assert [row for row in rows if row not in expected] == [row for row in rows if row[0] == deleted]
    assert [row for row in rows if row[0] != deleted] == expected
    assert second["carried_forward"] > 0
    cc_requests = lambda hook: sum(n for key, n in hook.stats.requests.items() if "/ws/schema/table/cc" in key)  # noqa: E731
    assert cc_requests(second_hook) <= cc_requests(full_hook) + 2  # tiny: one page either way, plus newcomer reads

    # The student who left comes back: their CC rows did not change, so the cursor cannot
    # see them; they are read by id (a student new since the base run).
    server.set_enroll_status(leaving, 0)
    # A run that failed is never a starting point: the next one starts from r2 again.
    server.enroll_student(
        *[
            sis(server, "SELECT st.dcid FROM students st WHERE enroll_status = 0 ORDER BY dcid")[3]["dcid"],
            sis(server, "SELECT dcid FROM sections ORDER BY dcid DESC")[0]["dcid"],
        ]
    )
    run(staging_engine, server, "r3", succeed=False)
    fourth, _ = run(staging_engine, server, "r4")
    assert fourth["read_mode"] == "incremental"
    assert reads(staging_engine, "r4")[ENTITY].base_run_id == "r2"
    rows = staged(staging_engine, "r4")
    assert [row for row in rows if row[0] != deleted] == oracle(server)

    # The full reconcile (on demand here; the first run of a day by default) sees the delete.
    fifth, _ = run(staging_engine, server, "r5", full_refresh=True)
    assert fifth["read_mode"] == "full"
    assert "full_refresh" in note(staging_engine, "r5")
    assert staged(staging_engine, "r5") == oracle(server)
    # The district setting: every run reads in full.
    sixth, _ = run(staging_engine, server, "r6", incremental={"full_read": "every_run"})
    assert sixth["read_mode"] == "full"


def test_a_plugin_without_the_cursor_falls_back_to_a_full_read(staging_engine, own_sandbox):
    server = own_sandbox
    run(staging_engine, server, "r1")
    server.configure(
        field_grants={"cc": ["id", "dcid", "studentid", "sectionid", "schoolid", "termid", "dateenrolled", "dateleft"]}
    )
    result, _ = run(staging_engine, server, "r2")
    assert result["read_mode"] == "full"
    assert "may not read the change cursor" in note(staging_engine, "r2")
    assert staged(staging_engine, "r2") == oracle(server)
    # The run's report says which entity fell back to a full read, and why.
    from sis_learning.report import build_summary, format_text

    report = format_text(build_summary(staging_engine, make_config(), "r2"))
    assert "Read in full: section_enrollments (the plugin may not read the change cursor" in report, report
    assert "Read incrementally" in report and "students" in report.split("Read incrementally")[1], report
