"""Validate after an incremental read: the rows that changed and what depends on them (issue 17).

Schools, terms, courses, staff, sections and section teachers are small and validated in
full every run. Students, section enrollments and guardians (with their parent links)
are the district's bulk: only those whose outcome can differ from the base run's are
validated again, and every other row keeps the base run's outcome. A row's outcome
depends on its own fields, on the rows it references (a roster row on its class and its
student, a parent on its links and children), and on the rows it is compared with (a
login shared with another user, a student listed twice in a class). So validated again:

- students changed since the base run, and every user (student or parent) whose login is
  a changed user's old or new login;
- enrollments changed, of those students, of classes whose outcome can change (a changed
  section, a changed or login-affected lead teacher, a changed term or course), and every
  enrollment of the students they name (a repeated enrollment is decided among them);
- guardians with a changed link, with a link to one of those students, or login-affected,
  with all their links;
- as context (their outcome is the base run's, recomputed to the same), the students and
  the users sharing a login with any of the above, so every lookup finds what a run over
  the whole district finds.

``evaluate`` then runs on those frames, and the run's rejected, excluded and warning rows
are the base run's for every other row plus the new ones. Checked against validating
the whole district in tests/validate/test_delta.py and the incremental tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.delta import SourceDelta
from sis_learning.staging.base import temporary_rows
from sis_learning.staging.quality import ExcludedRow, RejectedRow, ValidationWarning
from sis_learning.staging.reads import STAGED_COLUMNS, read_frame
from sis_learning.validate.cascade import blocks_summary

# Validated in full every run (small); the others are validated for the rows that can change.
WHOLE_ENTITIES = ("schools", "terms", "courses", "staff", "sections", "section_teachers")
SUBSET_ENTITIES = ("students", "section_enrollments", "guardians")
# Entities of the outcome tables replaced wholesale (every entity validated in full).
WHOLE_OUTCOMES = WHOLE_ENTITIES
LOGIN_COLUMNS = {"staff": "teacher_username", "students": "student_username", "guardians": "portal_username"}


def _login(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip().str.lower()


def _read(
    engine: Engine, config: DistrictConfig, run_id: str, entity: str, columns: list[str] | None = None, subset=None
):
    model, names = STAGED_COLUMNS[entity]
    return read_frame(engine, model, config, run_id, columns or names, subset)


class TooWide(Exception):
    """What changed reaches too far (a school changed): validating the whole district is simpler."""


def plan(engine: Engine, config: DistrictConfig, delta: SourceDelta) -> dict[str, Any]:
    """The frames to validate and the source ids whose outcome rows they replace."""
    run_id, base = delta.run_id, delta.base_run_id
    if delta.ids("schools"):
        raise TooWide("a school changed")
    frames = {entity: _read(engine, config, run_id, entity) for entity in WHOLE_ENTITIES}

    touched_students = delta.ids("students")
    touched_enrollments = delta.ids("section_enrollments")
    touched_links = delta.ids("guardians")  # guardian:student
    touched_guardians = {key.split(":", 1)[0] for key in touched_links}
    touched_staff = delta.ids("staff")

    # Every user's login, for the closures below (two short columns: cheap at any size).
    student_logins = _read(engine, config, run_id, "students", ["student_id", "student_username"])
    student_logins["login"] = _login(student_logins["student_username"])
    guardian_rows = _read(engine, config, run_id, "guardians", ["guardian_id", "student_id", "portal_username"])
    guardian_rows["login"] = _login(guardian_rows["portal_username"])
    staff = frames["staff"]
    staff_login = _login(staff["teacher_username"])

    # Old and new logins of every changed user: whoever holds one may gain or lose it.
    changed_logins: set[str] = set()
    changed_logins.update(staff_login[staff["staff_id"].isin(touched_staff)].dropna())
    changed_logins.update(student_logins.loc[student_logins["student_id"].isin(touched_students), "login"].dropna())
    changed_logins.update(guardian_rows.loc[guardian_rows["guardian_id"].isin(touched_guardians), "login"].dropna())
    if touched_staff:
        before = _read(engine, config, base, "staff", ["staff_id", "teacher_username"], [("staff_id", touched_staff)])
        changed_logins.update(_login(before["teacher_username"]).dropna())
    if touched_students:
        before = _read(
            engine, config, base, "students", ["student_id", "student_username"], [("student_id", touched_students)]
        )
        changed_logins.update(_login(before["student_username"]).dropna())
    if touched_guardians:
        before = _read(
            engine, config, base, "guardians", ["guardian_id", "portal_username"], [("guardian_id", touched_guardians)]
        )
        changed_logins.update(_login(before["portal_username"]).dropna())
    changed_logins.discard("")

    # Students and staff whose outcome can change.
    affected_students = set(touched_students) | set(
        student_logins.loc[student_logins["login"].isin(changed_logins), "student_id"].dropna()
    )
    affected_staff = set(touched_staff) | set(staff.loc[staff_login.isin(changed_logins), "staff_id"].dropna())
    sections = frames["sections"]
    affected_sections = (
        set(delta.ids("sections"))
        | set(sections.loc[sections["staff_id"].isin(affected_staff), "section_id"].dropna())
        | set(sections.loc[sections["term_id"].isin(delta.ids("terms")), "section_id"].dropna())
        | set(sections.loc[sections["course_id"].isin(delta.ids("courses")), "section_id"].dropna())
    )

    # Enrollments: changed ones name their students (now and in the base run); every
    # enrollment of those students is read, so a repeated one is decided among all of them.
    enrollment_students = set(affected_students)
    if touched_enrollments:
        for run in (run_id, base):
            named = _read(
                engine,
                config,
                run,
                "section_enrollments",
                ["enrollment_id", "student_id"],
                [("enrollment_id", touched_enrollments)],
            )
            enrollment_students.update(named["student_id"].dropna())
    enrollments = _read(
        engine,
        config,
        run_id,
        "section_enrollments",
        subset=[
            ("enrollment_id", set(touched_enrollments) | {None}),
            ("student_id", enrollment_students | {None}),
            ("section_id", affected_sections | {None}),
        ],
    )

    # Guardians: changed, linked to an affected student, or login-affected; with all their links.
    affected_guardians = (
        touched_guardians
        | set(guardian_rows.loc[guardian_rows["student_id"].isin(affected_students), "guardian_id"].dropna())
        | set(guardian_rows.loc[guardian_rows["login"].isin(changed_logins), "guardian_id"].dropna())
    )
    # Context: the users the rows above look up, and whoever shares a login with them (their
    # outcomes are the base run's; recomputed here to the same, so lookups see what a full run sees).
    guardian_ids = set(affected_guardians)
    student_ids = set(affected_students) | set(enrollments["student_id"].dropna())
    while True:
        student_ids |= set(guardian_rows.loc[guardian_rows["guardian_id"].isin(guardian_ids), "student_id"].dropna())
        logins = set(student_logins.loc[student_logins["student_id"].isin(student_ids), "login"].dropna())
        logins |= set(guardian_rows.loc[guardian_rows["guardian_id"].isin(guardian_ids), "login"].dropna())
        logins.discard("")
        more_students = set(student_logins.loc[student_logins["login"].isin(logins), "student_id"].dropna())
        more_guardians = set(guardian_rows.loc[guardian_rows["login"].isin(logins), "guardian_id"].dropna())
        if more_students <= student_ids and more_guardians <= guardian_ids:
            break
        student_ids |= more_students
        guardian_ids |= more_guardians

    frames["students"] = _read(engine, config, run_id, "students", subset=[("student_id", student_ids | {None})])
    frames["section_enrollments"] = enrollments
    frames["guardians"] = _read(engine, config, run_id, "guardians", subset=[("guardian_id", guardian_ids | {None})])

    # The outcome rows replaced: every row validated here, and every changed row (gone now or not).
    links = set(
        (frames["guardians"]["guardian_id"].fillna("") + ":" + frames["guardians"]["student_id"].fillna("")).tolist()
    )
    base_links = _read(
        engine, config, base, "guardians", ["guardian_id", "student_id"], [("guardian_id", guardian_ids)]
    )
    links |= set((base_links["guardian_id"].fillna("") + ":" + base_links["student_id"].fillna("")).tolist())
    replaced = {
        "students": student_ids | set(touched_students),
        "section_enrollments": set(enrollments["enrollment_id"].dropna()) | set(touched_enrollments),
        "guardians": guardian_ids | touched_guardians,
        "parent_links": links | set(touched_links),
    }
    return {"frames": frames, "replaced": replaced}


OUTCOME_COLUMNS = {
    RejectedRow: ["entity", "source_id", "rule", "reason", "caused_by", "blocks"],
    ExcludedRow: ["entity", "source_id", "rule", "reason"],
    ValidationWarning: ["entity", "source_id", "rule", "field", "value", "reason", "action"],
}


def carry_outcomes(
    connection: Any, config: DistrictConfig, run_id: str, base_run_id: str, replaced: dict[str, set[str]], created_at
) -> None:
    """Copy the base run's rejected, excluded and warning rows of every row not validated again.

    Entities validated in full, and rows without a source id (always validated again), are
    not copied; nor the rows of ``replaced`` (entity -> source ids).
    """
    temporary_rows(
        connection,
        "delta_replaced",
        ((entity, source_id) for entity, ids in replaced.items() for source_id in ids if source_id),
        ("entity", "source_id"),
    )
    whole = ", ".join(f"'{entity}'" for entity in WHOLE_OUTCOMES)
    parameters = {"d": config.district_id, "r": run_id, "b": base_run_id, "created": created_at}
    for model, columns in OUTCOME_COLUMNS.items():
        table = model.__table__.name
        names = ", ".join(columns)
        selected = ", ".join(f"t.{name}" for name in columns)
        connection.execute(
            text(
                f"INSERT INTO {table} (district_id, run_id, stage, created_at, {names}) "
                f"SELECT t.district_id, :r, t.stage, :created, {selected} FROM {table} t "
                "WHERE t.district_id = :d AND t.run_id = :b AND t.stage = 'validate' "
                f"AND t.entity NOT IN ({whole}) AND t.source_id IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM delta_replaced x WHERE x.entity = t.entity "
                "AND x.source_id = t.source_id)"
            ),
            parameters,
        )
    connection.exec_driver_sql("DROP TABLE IF EXISTS delta_replaced")


def refresh_blocks(connection: Any, config: DistrictConfig, run_id: str) -> None:
    """Recompute ``blocks`` (what each root failure holds back) over the run's merged rejected rows."""
    rows = connection.execute(
        text(
            "SELECT id, entity, source_id, caused_by, blocks FROM rejected_rows "
            "WHERE district_id = :d AND run_id = :r AND stage = 'validate' ORDER BY id"
        ),
        {"d": config.district_id, "r": run_id},
    ).all()
    if not rows:
        return
    frame = pd.DataFrame(
        [tuple(row) for row in rows], columns=["id", "entity", "source_id", "caused_by", "blocks"]
    ).astype({"entity": "string", "source_id": "string", "caused_by": "string"})
    blocks = blocks_summary(frame)
    updates = [
        {"id": int(row_id), "blocks": None if pd.isna(new) else str(new)}
        for row_id, new, old in zip(frame["id"], blocks, frame["blocks"], strict=True)
        if (None if pd.isna(new) else str(new)) != (None if old is None or pd.isna(old) else old)
    ]
    if updates:
        connection.execute(text("UPDATE rejected_rows SET blocks = :blocks WHERE id = :id"), updates)


def merged_counts(connection: Any, config: DistrictConfig, run_id: str, evaluated: dict[str, int]) -> dict:
    """Counts per entity from the run's merged outcome tables (``evaluated`` given)."""
    parameters = {"d": config.district_id, "r": run_id}
    rejected = dict(
        connection.execute(
            text(
                "SELECT entity, COUNT(DISTINCT COALESCE(source_id, CAST(id AS VARCHAR(20)))) FROM rejected_rows "
                "WHERE district_id = :d AND run_id = :r AND stage = 'validate' GROUP BY entity"
            ),
            parameters,
        ).all()
    )
    excluded = dict(
        connection.execute(
            text(
                "SELECT entity, COUNT(*) FROM excluded_rows WHERE district_id = :d AND run_id = :r "
                "AND stage = 'validate' GROUP BY entity"
            ),
            parameters,
        ).all()
    )
    warned = dict(
        connection.execute(
            text(
                "SELECT entity, COUNT(*) FROM (SELECT DISTINCT entity, source_id, field FROM validation_warnings "
                "WHERE district_id = :d AND run_id = :r AND stage = 'validate') w GROUP BY entity"
            ),
            parameters,
        ).all()
    )
    counts = {}
    for entity, total in evaluated.items():
        bad = int(rejected.get(entity, 0)) + int(excluded.get(entity, 0))
        counts[entity] = {
            "evaluated": total,
            "passed": total - bad,
            "rejected": int(rejected.get(entity, 0)),
            "excluded": int(excluded.get(entity, 0)),
            "warned": int(warned.get(entity, 0)),
        }
    return counts


def results_note(results_dir: Path, replaced: dict[str, set[str]]) -> str:
    validated = ", ".join(f"{len(ids)} {entity}" for entity, ids in replaced.items())
    return f"validated again after an incremental read: {validated} (the rest as in the base run)"
