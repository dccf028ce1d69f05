"""Incremental extract of every entity (issue 17): after any mix of SIS changes, what a full read stages.

A district's first run reads in full; later runs of the same local day read students,
staff, sections, courses, section enrollments and guardians from their change cursors,
read what changed by id, and carry the rest forward. After each run, every staged entity
must equal the oracle computed straight from the changed SIS tables, field by field:
renames, a transfer out and back, a new student, teacher, section and guardian link,
a teacher who leaves, drops and enrolments, students enrolled again in a class they were
dropped from (before the base run, and within one interval). A run that failed is never a starting point,
and the full reconcile reads everything again. On SQLite and PostgreSQL staging.
"""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select, text

from sis_learning.extract import ENTITY_EXTRACTS
from sis_learning.extract.incremental import ENTITY_CURSORS, request_full_read
from sis_learning.staging.runs import finish_run, start_run
from sis_learning.staging.source import STAGED_SOURCE_TABLES, ExtractCount, ExtractRead, RawRecord
from tests.extract.conftest import START_YEAR, make_config, make_hook
from tests.extract.oracle import STAGED_COLUMNS, expected_rows, staged_rows


@pytest.fixture(params=[False, True], ids=["tidy", "irregular"])
def own_sandbox(request):
    """A sandbox of its own (this test changes SIS rows), tidy and with a real district's irregularities."""
    from sandbox.powerschool.testing import running_powerschool

    with running_powerschool(dataset="tiny", irregularities=request.param) as server:
        yield server


def run(engine, server, run_id, *, succeed=True, full_refresh=False):
    config = make_config()
    start_run(engine, "tiny", run_id)
    if full_refresh:
        request_full_read(engine, "tiny", run_id)
    hook = make_hook(server)
    results = {entity: extract(hook, engine, config, run_id) for entity, extract in ENTITY_EXTRACTS.items()}
    finish_run(engine, "tiny", run_id, "success" if succeed else "failed", error=None if succeed else "load failed")
    return results, hook


def sis(server, sql, parameters=()):
    connection = sqlite3.connect(server.database_path)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(sql, parameters).fetchall()
        connection.commit()
        return rows
    finally:
        connection.close()


def assert_equals_oracle(engine, server, run_id):
    expected = expected_rows(server.database_path, START_YEAR)
    for entity in STAGED_COLUMNS:
        staged = staged_rows(engine, "tiny", run_id, entity)
        assert staged == expected[entity], (
            f"{entity} in {run_id}: staged but not expected {[r for r in staged if r not in expected[entity]][:5]}, "
            f"expected but not staged {[r for r in expected[entity] if r not in staged][:5]}"
        )
    # What the run reports it staged (extract_counts: the extract guard, the report) is what it staged.
    counts = ExtractCount.__table__
    with engine.connect() as connection:
        for entity in STAGED_COLUMNS:
            table = STAGED_SOURCE_TABLES[entity].__table__
            staged = connection.scalar(
                select(func.count()).where(table.c.district_id == "tiny", table.c.run_id == run_id)
            )
            reported = connection.scalar(
                select(func.coalesce(func.sum(counts.c.rows), 0)).where(
                    counts.c.district_id == "tiny", counts.c.run_id == run_id, counts.c.entity == entity
                )
            )
            assert reported == staged, f"{entity} in {run_id}: extract_counts says {reported}, staged {staged}"


def modes(engine, run_id):
    table = ExtractRead.__table__
    with engine.connect() as connection:
        return {
            row.entity: row.mode
            for row in connection.execute(select(table).where(table.c.run_id == run_id))
            if row.entity != "*"
        }


def raw_counts(engine, run_id):
    table = RawRecord.__table__
    with engine.connect() as connection:
        return dict(
            connection.execute(
                select(table.c.entity, func.count()).where(table.c.run_id == run_id).group_by(table.c.entity)
            ).all()
        )


def raw_ids(engine, run_ids, entity):
    table = RawRecord.__table__
    with engine.connect() as connection:
        return set(
            connection.execute(
                select(table.c.source_id).where(table.c.run_id.in_(run_ids), table.c.entity == entity)
            ).scalars()
        )


def staged_source_ids(engine, run_id):
    from sis_learning.staging.source import STAGED_SOURCE_TABLES
    from sis_learning.staging.writer import SOURCE_KEYS

    found = {}
    for entity, keys in SOURCE_KEYS.items():
        if not keys:
            continue
        table = STAGED_SOURCE_TABLES[entity].__table__
        with engine.connect() as connection:
            rows = connection.execute(select(*(table.c[column] for column, _ in keys)).where(table.c.run_id == run_id))
            found[entity] = {":".join(row) for row in rows if None not in row}
    return found


def everyday_changes(server):
    """A school office's day: renames, a transfer out, newcomers, a teacher leaving, drops and enrolments."""
    active = sis(
        server,
        "SELECT st.dcid, st.id, st.schoolid, sc.dcid AS school FROM students st JOIN schools sc "
        "ON sc.school_number = st.schoolid WHERE st.enroll_status = 0 ORDER BY st.dcid",
    )
    server.rename("student", active[0]["dcid"], last_name="Renamed-Student")
    leaving = active[1]["dcid"]
    server.set_enroll_status(leaving, 2, exitdate="2025-11-14")
    newcomer = server.add_student(active[2]["school"], "New", "Student", grade_level=5, student_web_id="newstudent1")
    sections = sis(
        server,
        "SELECT se.dcid, se.id, se.schoolid, se.course_number, se.termid, sc.dcid AS school "
        "FROM sections se JOIN schools sc ON sc.school_number = se.schoolid "
        "WHERE se.termid >= 3500 AND se.teacher != 0 ORDER BY se.dcid",
    )
    same_school = [section for section in sections if section["schoolid"] == active[2]["schoolid"]]
    server.enroll_student(newcomer["dcid"], same_school[0]["dcid"])
    enrolled = sis(
        server,
        "SELECT cc.studentid, se.dcid AS section, st.dcid AS student FROM cc JOIN sections se "
        "ON se.id = cc.sectionid JOIN students st ON st.id = cc.studentid "
        "WHERE st.enroll_status = 0 AND cc.sectionid > 0 AND cc.termid >= 3500 ORDER BY cc.dcid",
    )
    dropped = (enrolled[-1]["student"], enrolled[-1]["section"])
    server.drop_enrollment(*dropped, dateleft="2025-11-14")
    teachers = sis(server, "SELECT dcid FROM teachers WHERE status = 1 ORDER BY dcid")
    server.rename("teacher", teachers[0]["dcid"], last_name="Renamed-Teacher")
    server.deactivate_teacher(teachers[-1]["dcid"])
    hired = server.add_teacher(
        active[2]["school"], "New", "Teacher", teacherloginid="newteacher1", email_addr="new.teacher@example.org"
    )
    server.rename("section", sections[0]["dcid"], section_number="R-1")
    added = server.add_section(
        same_school[0]["school"], same_school[0]["course_number"], same_school[0]["termid"], teacher_dcid=hired["dcid"]
    )
    server.enroll_student(active[3]["dcid"], added["section_dcid"])
    # A student moves to another selected school (the SIS's own transfer screens write the row).
    other_school = next(row for row in active if row["schoolid"] != active[4]["schoolid"])["schoolid"]
    sis(server, "UPDATE students SET schoolid = ? WHERE dcid = ?", (other_school, active[4]["dcid"]))
    course = sis(server, "SELECT dcid FROM courses ORDER BY dcid")[0]["dcid"]
    server.rename("course", course, course_name="Renamed Course")
    guardian = sis(server, "SELECT guardianid FROM guardian ORDER BY guardianid")[0]["guardianid"]
    server.rename("guardian", guardian, lastname="Renamed-Guardian")
    # A new link of an existing guardian to another student (as the SIS's own screens write it).
    other = sis(
        server,
        "SELECT dcid FROM students WHERE enroll_status = 0 AND dcid NOT IN "
        "(SELECT studentsdcid FROM guardianstudent) ORDER BY dcid",
    )
    if other:
        sis(
            server,
            "INSERT INTO guardianstudent (guardianid, studentsdcid, relationship) VALUES (?, ?, 'Father')",
            (guardian, other[0]["dcid"]),
        )
    return leaving, dropped


@pytest.mark.slow
def test_every_entity_read_incrementally_stages_what_a_full_read_stages(
    staging_engine, own_sandbox, tmp_path, monkeypatch
):
    monkeypatch.setenv("TEST_DEFAULT_PASSWORD", "Incremental-Test-Password-1")
    server = own_sandbox
    run(staging_engine, server, "r1")
    process(staging_engine, "r1", tmp_path)
    assert set(modes(staging_engine, "r1").values()) == {"full"}
    assert_equals_oracle(staging_engine, server, "r1")

    leaving, dropped = everyday_changes(server)
    results, hook = run(staging_engine, server, "r2")
    # Validate, transform and diff of r2 work from r1's results: only what changed is processed again.
    assert process(staging_engine, "r2", tmp_path) == dict.fromkeys(("validate", "transform", "diff"), "delta")
    read = modes(staging_engine, "r2")
    assert {entity: read[entity] for entity in ENTITY_CURSORS} == dict.fromkeys(ENTITY_CURSORS, "incremental"), read
    assert all(results[entity]["carried_forward"] > 0 for entity in ENTITY_CURSORS), results
    assert_equals_oracle(staging_engine, server, "r2")
    # Raw records are what PowerSchool returned in the run: an incremental run keeps those of the
    # rows it read again; a carried row's raw record is under the run that read it.
    assert all(
        raw_counts(staging_engine, "r2").get(entity, 0) < n
        for entity, n in raw_counts(staging_engine, "r1").items()
        if entity in ENTITY_CURSORS
    ), raw_counts(staging_engine, "r2")
    # No per-school listing was read in full: only changed ids were asked for.
    assert not any(key.split(" ", 1)[1] == "/ws/v1/school/{id}/student" for key in hook.stats.requests), (
        hook.stats.requests
    )

    # The student who left comes back; their CC rows and guardian links did not change, so no
    # cursor sees them: they are read as students new since the base run.
    server.set_enroll_status(leaving, 0)
    server.rename(
        "guardian",
        sis(server, "SELECT guardianid FROM guardian ORDER BY guardianid DESC")[0]["guardianid"],
        firstname="Renamed",
    )
    # Re-enrolled after a drop, as PowerSchool records it (the dropped CC row stays, a new one is
    # added): the student dropped before r2 comes back to the class, and another is dropped from a
    # class and enrolled in it again between the same two runs.
    server.enroll_student(*dropped, dateenrolled="2025-11-20")
    with staging_engine.connect() as connection:
        again = connection.execute(
            text(
                "SELECT class_id, user_id FROM learning_rosters WHERE district_id = 'tiny' AND run_id = 'r2' "
                "AND user_type = 'S' AND user_id <> :s ORDER BY class_id, user_id"
            ),
            {"s": str(dropped[0])},
        ).first()
    again = (int(again.user_id), int(again.class_id))  # a student in a class r2 put in Learning
    server.drop_enrollment(*again, dateleft="2025-11-21")
    server.enroll_student(*again, dateenrolled="2025-11-24")
    run(staging_engine, server, "r3", succeed=False)  # a failed run is never a starting point
    run(staging_engine, server, "r4")
    assert {row.base_run_id for row in _reads(staging_engine, "r4") if row.mode == "incremental"} == {"r2"}
    assert_equals_oracle(staging_engine, server, "r4")

    run(staging_engine, server, "r5", full_refresh=True)
    assert set(modes(staging_engine, "r5").values()) == {"full"}
    assert_equals_oracle(staging_engine, server, "r5")
    # Every row r4 staged has its raw record in r4 or in the runs it carried rows from (r2, r1).
    for entity, ids in staged_source_ids(staging_engine, "r4").items():
        assert ids <= raw_ids(staging_engine, ("r4", "r2", "r1"), entity), entity
    # And what Learning would get: validate + transform of the incremental run (r4, from r2's
    # results) and of the full run (r5, the same SIS data) give the same Learning rows, field by
    # field, and the same rejected, excluded and warned rows.
    incremental_state = learning_state(staging_engine, "r4", tmp_path)
    assert stage_modes(staging_engine, "r4") == {"validate": "delta", "transform": "delta"}
    full_state = learning_state(staging_engine, "r5", tmp_path)
    assert stage_modes(staging_engine, "r5") == {"validate": "full", "transform": "full"}
    assert incremental_state == full_state
    # The student dropped and enrolled again is still in the class: one roster row, not two, not none.
    student, section = again
    rows = [row for row in incremental_state["rosters"] if row[0] == str(section) and row[2] == str(student)]
    assert rows == [(str(section), "S", str(student), "student")], (student, section, rows)
    assert outcomes(staging_engine, "r4") == outcomes(staging_engine, "r5")


@pytest.mark.slow
def test_a_full_reconcile_after_an_incremental_run_finds_nothing_it_left_out(
    staging_engine, own_sandbox, tmp_path, monkeypatch
):
    """Learning after an incremental run is what a full run gives it, teachers and their classes included.

    The delta diff compares only what may have changed: of the teachers and teacher roster rows,
    which transform makes anew every run, only those that differ from the base run's. A full
    reconcile right after (every row compared with what Learning accepted) must find nothing to
    send but what Learning refused. The day's changes rename a teacher, deactivate another,
    hire a third with a new section, and rename and enrol as ``everyday_changes`` does.
    """
    import secrets

    from sandbox.learning.testing import running_learning
    from sis_learning.hooks.learning import LearningHook
    from sis_learning.load import load_run
    from sis_learning.staging.changes import ACTION_UNCHANGED, ChangeSet

    monkeypatch.setenv("TEST_DEFAULT_PASSWORD", "Incremental-Test-Password-1")
    config = make_config(default_password="env:TEST_DEFAULT_PASSWORD")
    server = own_sandbox
    token = secrets.token_urlsafe(24)
    changes = ChangeSet.__table__

    def sent(run_id):
        with staging_engine.connect() as connection:
            return {
                (row.entity, row.key): (row.action, row.status)
                for row in connection.execute(
                    select(changes.c.entity, changes.c.key, changes.c.action, changes.c.status).where(
                        changes.c.run_id == run_id, changes.c.action != ACTION_UNCHANGED
                    )
                )
            }

    with running_learning(domains={"tiny": token}) as learning:
        hook = LearningHook.from_settings(learning.base_url, token, learning.ca_bundle)
        run(staging_engine, server, "r1")
        assert process(staging_engine, "r1", tmp_path)["diff"] == "full"
        load_run(staging_engine, config, "r1", hook)
        finish_run(staging_engine, "tiny", "r1", "success")  # after its load, as the DAG's report task does
        everyday_changes(server)
        run(staging_engine, server, "r2")
        assert process(staging_engine, "r2", tmp_path)["diff"] == "delta"
        load_run(staging_engine, config, "r2", hook)
        finish_run(staging_engine, "tiny", "r2", "success")
        incremental = sent("r2")
        # The day's teacher changes reached Learning through the delta diff.
        assert {entity for (entity, key), _ in incremental.items() if key.startswith("T:")} == {"users"}, incremental
        assert any(entity == "rosters" and ":T:" in key for entity, key in incremental), incremental
        run(staging_engine, server, "r3", full_refresh=True)
        assert process(staging_engine, "r3", tmp_path)["diff"] == "full"
    refused = {key for key, (_, status) in incremental.items() if status == "refused"}
    missed = {key: value for key, value in sent("r3").items() if key not in refused}
    assert missed == {}, f"a full reconcile found what the incremental run left out: {sorted(missed)[:10]}"


def process(engine, run_id, tmp_path):
    """Validate, transform and diff a run as the DAG does; how each stage ran (full or delta)."""
    from sis_learning import diff, transform, validate

    config = make_config(default_password="env:TEST_DEFAULT_PASSWORD")
    validate.validate_run(engine, config, run_id, tmp_path / run_id)
    transform.transform_run(engine, config, run_id)
    diff.compute_changes(engine, config, run_id)
    return stage_modes(engine, run_id)


def stage_modes(engine, run_id):
    from sis_learning.staging.delta import StageDelta

    table = StageDelta.__table__
    with engine.connect() as connection:
        return dict(connection.execute(select(table.c.stage, table.c.mode).where(table.c.run_id == run_id)).all())


def outcomes(engine, run_id):
    from sis_learning.staging.quality import ExcludedRow, RejectedRow, ValidationWarning

    found = {}
    for model in (RejectedRow, ExcludedRow, ValidationWarning):
        table = model.__table__
        columns = [c for c in table.c if c.name not in ("id", "district_id", "run_id", "created_at")]
        with engine.connect() as connection:
            found[table.name] = sorted(
                (tuple(row) for row in connection.execute(select(*columns).where(table.c.run_id == run_id))),
                key=repr,
            )
    return found


def learning_state(engine, run_id, tmp_path):
    from sis_learning import transform, validate
    from sis_learning.staging.learning import LEARNING_TABLES

    config = make_config(default_password="env:TEST_DEFAULT_PASSWORD")
    validate.validate_run(engine, config, run_id, tmp_path / run_id)
    transform.transform_run(engine, config, run_id)
    state = {}
    for entity, model in LEARNING_TABLES.items():
        table = model.__table__
        columns = [column for column in table.c if column.name not in ("id", "district_id", "run_id")]
        with engine.connect() as connection:
            state[entity] = sorted(
                (
                    tuple(row)
                    for row in connection.execute(
                        select(*columns).where(table.c.district_id == "tiny", table.c.run_id == run_id)
                    )
                ),
                key=repr,
            )
    assert any(state.values())
    return state


def _reads(engine, run_id):
    table = ExtractRead.__table__
    with engine.connect() as connection:
        return [row for row in connection.execute(select(table).where(table.c.run_id == run_id)) if row.entity != "*"]


@pytest.mark.slow
def test_a_delta_stage_that_fails_while_the_base_rows_are_copied_leaves_none_of_the_runs_rows(
    staging_engine, own_sandbox, tmp_path, monkeypatch
):
    """On PostgreSQL a delta validate and transform copy the base run's rows forward in the background
    while they compute; when the computing fails, the copied rows are removed (a half-made run's rows
    must not be read as the run's), the error is the stage's own, and the rerun gives the same rows."""
    from sis_learning import transform, validate
    from sis_learning.staging.learning import LEARNING_TABLES
    from sis_learning.staging.quality import ExcludedRow

    monkeypatch.setenv("TEST_DEFAULT_PASSWORD", "Incremental-Test-Password-1")
    server = own_sandbox
    run(staging_engine, server, "r1")
    process(staging_engine, "r1", tmp_path)
    everyday_changes(server)
    run(staging_engine, server, "r2")
    config = make_config(default_password="env:TEST_DEFAULT_PASSWORD")

    def run_rows(model) -> int:
        table = model.__table__
        with staging_engine.connect() as connection:
            return connection.execute(select(func.count()).where(table.c.run_id == "r2")).scalar()

    def broken(*_args, **_kwargs):
        raise RuntimeError("the mapping broke")

    with monkeypatch.context() as patched:
        patched.setattr(validate, "evaluate", broken)
        with pytest.raises(RuntimeError, match="the mapping broke"):
            validate.validate_run(staging_engine, config, "r2", tmp_path / "r2")
    assert run_rows(ExcludedRow) == 0
    validate.validate_run(staging_engine, config, "r2", tmp_path / "r2")
    assert stage_modes(staging_engine, "r2") == {"validate": "delta"}
    if staging_engine.dialect.name == "postgresql":
        # The delta reads a few ids among the run's staged rows: PostgreSQL's planner must know the
        # run's rows (analysed after the incremental extract; autovacuum comes later, if at all), or
        # it takes them for a handful and probes the id list once per staged row.
        with staging_engine.connect() as connection:
            known = connection.execute(
                text("SELECT most_common_vals::text FROM pg_stats WHERE tablename = :t AND attname = 'run_id'"),
                {"t": "stg_section_enrollments"},
            ).scalar()
        assert known is not None and "r2" in known, known
    excluded = run_rows(ExcludedRow)
    assert excluded > 0

    def learning_rows() -> dict[str, list]:
        found = {}
        for entity, model in LEARNING_TABLES.items():
            table = model.__table__
            columns = [column for column in table.c if column.name not in ("id", "district_id", "run_id")]
            with staging_engine.connect() as connection:
                found[entity] = sorted(map(tuple, connection.execute(select(*columns).where(table.c.run_id == "r2"))))
        return found

    transform.transform_run(staging_engine, config, "r2")
    made = learning_rows()
    assert all(made.values())
    with monkeypatch.context() as patched:
        patched.setattr(transform, "build_learning_frames", broken)
        with pytest.raises(RuntimeError, match="the mapping broke"):
            transform.transform_run(staging_engine, config, "r2")
    if staging_engine.dialect.name == "postgresql":
        # The failed attempt had started copying: its rows, and the earlier attempt's it replaced, are gone.
        assert {entity: run_rows(model) for entity, model in LEARNING_TABLES.items()} == dict.fromkeys(
            LEARNING_TABLES, 0
        )
    else:
        # SQLite copies only when it writes, which the failed attempt never reached: the earlier attempt's rows stay.
        assert learning_rows() == made
    assert run_rows(ExcludedRow) == excluded  # validate's rows are not transform's to remove
    transform.transform_run(staging_engine, config, "r2")
    assert stage_modes(staging_engine, "r2") == {"validate": "delta", "transform": "delta"}
    assert learning_rows() == made
