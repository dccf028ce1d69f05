"""Transform a run's validated source rows into the Learning-shaped tables (learning_*).

Implements the source document's mapping tables (Student, Users Levels, Teacher,
Parent, Parent Child, Organizational, Course and roster mappings) through the CSV specs
in ``include/mappings/`` and the engine in ``mapping.py``: this module only picks the
rows validate passed (not in ``rejected_rows`` or ``excluded_rows``), prepares the
columns a spec reads that no single staged table holds (a section's course name and
number, a teacher's organization, a parent's first child), applies the specs and
writes the result. Rosters are the class's lead teacher (role teacher), its co-teachers
that survived the 25-class cap (co-teacher) and its students whose enrollment is not
dropped (student). No password value is ever produced: users carry
``password_temporary`` only.
"""

from __future__ import annotations

from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Boolean, select, union_all
from sqlalchemy.engine import Connection, Engine

from sis_learning import transform_delta
from sis_learning.config import MAPPINGS_DIR, DistrictConfig
from sis_learning.delta import DELTA, FULL, delta_keys, fingerprint, record_stage, usable_delta
from sis_learning.entities import MAPPING_SPECS, SOURCE_ENTITIES
from sis_learning.mapping import KEPT_LOGIN_COLUMN, MappingContext, MappingSpec, MappingSpecError, load_spec
from sis_learning.staging.base import (
    computing_beside,
    delete_run_rows,
    finish_background,
    in_background,
    insert_frame,
    side_by_side,
    staging_workers,
)
from sis_learning.staging.changes import held_logins
from sis_learning.staging.learning import LEARNING_TABLES, largest_first
from sis_learning.staging.quality import ExcludedRow, RejectedRow, ValidationWarning
from sis_learning.staging.reads import fetch_frame, read_staged
from sis_learning.validate import STAGE as VALIDATE_STAGE
from sis_learning.validate import (
    selected_school_ids,
    sorted_by_id,
    teacher_organization_school,
)

INSERT_CHUNK_ROWS = 100_000
STAGE = "transform"

# spec file (include/mappings/<name>.csv) -> the Learning entity whose table it fills
SPEC_ENTITIES = {spec.name: spec.learning_entity for spec in MAPPING_SPECS}
RUN_COLUMNS = frozenset({"id", "district_id", "run_id"})
# spec -> the staged entity whose rows it maps
SPEC_SOURCES = {spec.name: spec.source_entity for spec in MAPPING_SPECS}
# What passed_rows and mapping_context read themselves, beyond what the specs read.
PREPARATION_COLUMNS = {
    entity.name: set(entity.preparation_columns) for entity in SOURCE_ENTITIES if entity.preparation_columns
}
NOTHING_BLOCKED = np.array([], dtype=object)


def load_specs(directory: Path | str = MAPPINGS_DIR) -> dict[str, MappingSpec]:
    """Every spec transform applies, checked up front (a bad spec fails before any work).

    Beyond ``load_spec``'s checks, each target must be a column of the spec's learning_*
    table (a misspelt target would otherwise be silently dropped).
    """
    directory = Path(directory)
    specs = {}
    for name, entity in SPEC_ENTITIES.items():
        spec = load_spec(directory / f"{name}.csv")
        table = LEARNING_TABLES[entity].__table__
        columns = {column.name for column in table.columns} - RUN_COLUMNS
        for field in spec.fields:
            if field.target not in columns:
                raise MappingSpecError(
                    f"{spec.path}:{field.line}: target {field.target!r} is not a column of "
                    f"{table.name} ({', '.join(sorted(columns))})"
                )
        specs[name] = spec
    return specs


def _blocked_source_ids(engine: Engine, config: DistrictConfig, run_id: str) -> dict[str, np.ndarray]:
    """Per entity, the source ids validate rejected or excluded in this run (as arrays, for ``isin``)."""
    queries = []
    for model in (RejectedRow, ExcludedRow):
        table = model.__table__
        queries.append(
            select(table.c.entity, table.c.source_id).where(
                table.c.district_id == config.district_id,
                table.c.run_id == run_id,
                table.c.stage == VALIDATE_STAGE,
                table.c.source_id.is_not(None),
            )
        )
    with engine.connect() as connection:
        rows = fetch_frame(connection, union_all(*queries), ["entity", "source_id"])
    return {entity: ids.to_numpy(dtype=object) for entity, ids in rows.groupby("entity", sort=False)["source_id"]}


# The staged entities whose warned fields transform clears, and the column naming their rows.
WARNED_ENTITY_IDS = {"staff": "staff_id", "students": "student_id", "guardians": "guardian_id"}


def _clear_warned_fields(engine: Engine, config: DistrictConfig, run_id: str, frames: dict[str, pd.DataFrame]) -> None:
    """Fields validate warned about (action ``cleared``) are imported empty: an email that is
    not an address, a missing grade level. The row itself passes (validation_warnings)."""
    table = ValidationWarning.__table__
    query = select(table.c.entity, table.c.source_id, table.c.field).where(
        table.c.district_id == config.district_id,
        table.c.run_id == run_id,
        table.c.stage == VALIDATE_STAGE,
        table.c.action == "cleared",
        table.c.source_id.is_not(None),
    )
    with engine.connect() as connection:
        warned = fetch_frame(connection, query, ["entity", "source_id", "field"])
    for (entity, field), rows in warned.groupby(["entity", "field"], sort=False):
        frame = frames.get(entity)
        id_column = WARNED_ENTITY_IDS.get(entity)
        if frame is None or id_column is None or field not in frame.columns:
            continue
        hit = frame[id_column].isin(rows["source_id"].to_numpy(dtype=object)).to_numpy()
        if hit.any():
            frame = frame.copy()
            frame.loc[hit, field] = None
            frames[entity] = frame


def _passed(frame: pd.DataFrame, source_id: pd.Series, blocked: np.ndarray) -> pd.DataFrame:
    keep = source_id.notna() & ~source_id.isin(blocked)
    return frame[keep.to_numpy()]


def staged_columns(specs: dict[str, MappingSpec] | None) -> dict[str, set[str]] | None:
    """Per staged entity, the columns transform reads: the preparation's and the specs' (None: all)."""
    if specs is None:
        return None
    columns = {entity: set(names) for entity, names in PREPARATION_COLUMNS.items()}
    for name, spec in specs.items():
        columns[SPEC_SOURCES[name]] |= spec.source_columns
    return columns


def passed_rows(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    specs: dict[str, MappingSpec] | None = None,
    subsets: dict[str, Any] | None = None,
    blocked: dict[str, np.ndarray] | None = None,
) -> dict[str, pd.DataFrame]:
    """The staged rows validate passed, prepared with the columns the specs read.

    With ``specs``, only the staged columns they and the preparation read (without, all
    of validate's). ``subsets``: only some rows of some entities (``read_staged``).
    """
    frames = read_staged(engine, config, run_id, staged_columns(specs), subsets)
    _clear_warned_fields(engine, config, run_id, frames)
    if blocked is None:
        blocked = _blocked_source_ids(engine, config, run_id)

    def passed(entity: str, frame: pd.DataFrame, source_id: pd.Series) -> pd.DataFrame:
        return _passed(frame, source_id, blocked.get(entity, NOTHING_BLOCKED))

    schools = passed("schools", frames["schools"], frames["schools"]["school_id"])
    selected = selected_school_ids(config, frames["schools"])
    courses = frames["courses"].drop_duplicates("course_id")
    courses = passed("courses", courses, courses["course_id"])
    staff = passed("staff", frames["staff"], frames["staff"]["staff_id"]).copy()
    staff["organization_school_id"] = teacher_organization_school(staff, selected)
    students = passed("students", frames["students"], frames["students"]["student_id"])

    guardian_rows = sorted_by_id(frames["guardians"], "student_id")
    guardians = guardian_rows.drop_duplicates("guardian_id")
    guardians = passed("guardians", guardians, guardians["guardian_id"])
    link_ids = guardian_rows["guardian_id"].fillna("") + ":" + guardian_rows["student_id"].fillna("")
    links = passed("parent_links", guardian_rows, link_ids)
    first_child = links.drop_duplicates("guardian_id").set_index("guardian_id")["student_id"]
    guardians = guardians.assign(first_child_id=guardians["guardian_id"].map(first_child))

    sections = passed("sections", frames["sections"], frames["sections"]["section_id"])
    course_by_id = courses.set_index("course_id")
    sections = sections.assign(
        course_name=sections["course_id"].map(course_by_id["course_name"]),
        course_number=sections["course_id"].map(course_by_id["course_number"]),
    )

    enrollments = passed(
        "section_enrollments", frames["section_enrollments"], frames["section_enrollments"]["enrollment_id"]
    )
    section_teachers = frames["section_teachers"]
    teacher_ids = section_teachers["section_id"].fillna("") + ":" + section_teachers["staff_id"].fillna("")
    section_teachers = passed("section_teachers", section_teachers, teacher_ids)
    # The lead teacher of every staged section (not only those that passed): a lead's own
    # SectionTeacher row is never a co-teacher row, even when its class was held back.
    lead_of_section = frames["sections"].drop_duplicates("section_id").set_index("section_id")["staff_id"]
    is_lead = section_teachers["section_id"].map(lead_of_section).eq(section_teachers["staff_id"]).fillna(False)
    co_teachers = section_teachers[~is_lead.astype(bool).to_numpy()]
    return {
        "schools": sorted_by_id(schools, "school_id"),
        "staff": sorted_by_id(staff, "staff_id"),
        "students": sorted_by_id(students, "student_id"),
        "guardians": sorted_by_id(guardians, "guardian_id"),
        "sections": sorted_by_id(sections, "section_id"),
        "section_enrollments": enrollments,
        "co_teachers": co_teachers,
        "parent_links": links,
    }


USERNAME_COLUMNS = (
    ("staff", "teacher_username"),
    ("students", "student_username"),
    ("guardians", "portal_username"),
)


def source_usernames(rows: dict[str, pd.DataFrame]) -> set[str]:
    """The SIS usernames of the passed users (lower case)."""
    source: set[str] = set()
    for entity, column in USERNAME_COLUMNS:
        usernames = rows[entity][column].dropna().str.strip().str.lower()
        source.update(usernames[usernames != ""].tolist())
    return source


def passed_usernames(engine: Engine, config: DistrictConfig, run_id: str, blocked: dict[str, np.ndarray]) -> set[str]:
    """The SIS usernames of every user validate passed in the run (what ``source_usernames`` of
    ``passed_rows`` gives), read as two or three columns per entity."""
    frames = read_staged(
        engine,
        config,
        run_id,
        {
            "staff": {"staff_id", "teacher_username"},
            "students": {"student_id", "student_username"},
            "guardians": {"guardian_id", "student_id", "portal_username"},
        },
    )
    _clear_warned_fields(engine, config, run_id, frames)
    guardians = sorted_by_id(frames["guardians"], "student_id").drop_duplicates("guardian_id")
    rows = {
        "staff": _passed(frames["staff"], frames["staff"]["staff_id"], blocked.get("staff", NOTHING_BLOCKED)),
        "students": _passed(
            frames["students"], frames["students"]["student_id"], blocked.get("students", NOTHING_BLOCKED)
        ),
        "guardians": _passed(guardians, guardians["guardian_id"], blocked.get("guardians", NOTHING_BLOCKED)),
    }
    return source_usernames(rows)


def mapping_context(
    config: DistrictConfig,
    rows: dict[str, pd.DataFrame],
    held_logins: dict[str, str] | None = None,
    source: set[str] | None = None,
) -> MappingContext:
    """District settings, the run's SIS usernames and the logins Learning holds (generated logins avoid both).

    ``source``: the usernames of every passed user when ``rows`` hold only some of them.
    """
    if source is None:
        source = source_usernames(rows)
    taken = set(source)
    taken.update(login.strip().lower() for login in (held_logins or {}).values())
    students = rows["students"].drop_duplicates("student_id").set_index("student_id")
    return MappingContext(
        sso_domains=frozenset(config.sso_domains.google) | frozenset(config.sso_domains.office365),
        autogenerate_usernames=config.autogenerate_usernames,
        imported_passwords_temporary=config.imported_passwords_temporary,
        taken_logins=taken,
        source_logins=frozenset(source),
        lookups={"students": students[["school_id"]]},
    )


# The user type and id column of the staged rows whose users may get a generated login.
GENERATED_LOGIN_USERS = {"staff": ("T", "staff_id"), "students": ("S", "student_id"), "guardians": ("P", "guardian_id")}


def with_kept_logins(rows: dict[str, pd.DataFrame], held_logins: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Teachers, students and parents with ``kept_login``: the login Learning holds for them, if any.

    "A login generated for a user and accepted by Learning stays theirs for good": the
    mapping uses it instead of generating one when the user has no SIS username and no
    SSO email, so a rename, a move to another school or a return after deactivation keeps
    the login. A username from the SIS is never replaced by it.
    """
    if not held_logins:
        return rows
    rows = dict(rows)
    for entity, (user_type, id_column) in GENERATED_LOGIN_USERS.items():
        frame = rows[entity]
        keys = user_type + ":" + frame[id_column].astype("string")
        # Looked up one key at a time: ``Series.map`` with a dict made a Series of every login
        # Learning holds (~360,000 at L) on each of the three calls.
        kept = pd.array([held_logins.get(key) for key in keys.tolist()], dtype="string")
        rows[entity] = frame.assign(**{KEPT_LOGIN_COLUMN: kept})
    return rows


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of several spec outputs one after the other (empty ones skipped: they carry no dtypes)."""
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled, ignore_index=True) if filled else frames[0].reset_index(drop=True)


def build_learning_frames(
    config: DistrictConfig,
    rows: dict[str, pd.DataFrame],
    specs: dict[str, MappingSpec],
    held_logins: dict[str, str] | None = None,
    source_logins: set[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Apply the specs: Learning entity -> frame (no database access; tests call it directly).

    ``held_logins`` (user key -> login, from ``staging.changes.held_logins``): the logins
    Learning holds; a user who would get a generated login keeps theirs, and new generated
    logins avoid all of them.
    """
    context = mapping_context(config, rows, held_logins, source_logins)
    rows = with_kept_logins(rows, held_logins or {})
    users = _stack(
        [
            specs["users_teachers"].apply(rows["staff"], context),
            specs["users_students"].apply(rows["students"], context),
            specs["users_parents"].apply(rows["guardians"], context),
        ]
    )
    rosters = _stack(
        [
            specs["rosters_teachers"].apply(rows["sections"], context),
            specs["rosters_co_teachers"].apply(rows["co_teachers"], context),
            specs["rosters_students"].apply(rows["section_enrollments"], context),
        ]
    )
    # One roster row per (class, user): the first role wins (teacher, co-teacher, student).
    rosters = rosters.drop_duplicates(["class_id", "user_type", "user_id"], keep="first")
    user_levels = specs["user_levels"].apply(rows["students"], context)
    # A student without a grade level (pre-K) is imported without a user level (a validation warning).
    level = user_levels["level_id"].astype("string").str.strip()
    user_levels = user_levels[(level.notna() & level.ne("")).to_numpy()]
    return {
        "organizations": specs["organizations"].apply(rows["schools"], context),
        "users": users,
        "user_levels": user_levels,
        "classes": specs["classes"].apply(rows["sections"], context),
        "rosters": rosters,
        "parent_links": specs["parent_links"].apply(rows["parent_links"], context),
    }


TRUE_TEXT = {"1", "true", "t", "yes", "y"}


def _table_rows(frame: pd.DataFrame, model: Any) -> pd.DataFrame:
    """Coerce a spec's output to the table's column types (``"1"`` -> True for booleans)."""
    table = model.__table__
    out = {}
    for column in table.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        if isinstance(column.type, Boolean):
            if values.dtype == "boolean" or values.dtype == bool:
                values = values.astype(object)
            else:
                # Decided once per distinct value (a flag column holds two or three).
                codes, distinct = pd.factorize(values.astype("string"), use_na_sentinel=True)
                truth = pd.Series(distinct).str.strip().str.lower().isin(TRUE_TEXT).to_numpy(dtype=object)
                values = pd.Series(np.append(truth, False)[codes], index=values.index, dtype=object)
        out[column.name] = values
    return pd.DataFrame(out)


def _delete_learning_rows(connection: Connection, config: DistrictConfig, run_id: str) -> None:
    for model in LEARNING_TABLES.values():
        delete_run_rows(connection, model, config.district_id, run_id)


def _write(
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    learning: dict[str, pd.DataFrame],
    base: dict | None = None,
    carrying: Future | None = None,
) -> None:
    """Replace the run's learning_* rows; with ``base`` (a delta run), the base run's rows not
    transformed again are copied first (``transform_delta``), unless ``carrying`` is already
    copying them (:func:`_start_carry`): then they are waited for.

    SQLite: one transaction. PostgreSQL: the tables side by side, each in a transaction of its
    own (``staging.base.side_by_side``); an error removes the run's learning_* rows, which the
    rerun writes again.
    """
    undo = partial(_delete_learning_rows, config=config, run_id=run_id)
    if carrying is not None:
        finish_background(carrying)

    def write(connection: Connection, entity: str) -> None:
        model = LEARNING_TABLES[entity]
        if carrying is None:
            _carry(connection, config, run_id, base, entity)
        insert_frame(
            connection,
            model,
            _table_rows(learning[entity], model),
            {"district_id": config.district_id, "run_id": run_id},
            chunk_rows=INSERT_CHUNK_ROWS,
        )

    jobs = [partial(write, entity=entity) for entity in largest_first(LEARNING_TABLES)]
    if staging_workers(engine) > 1:
        # PostgreSQL: one table per connection, each committed on its own; a failure fails
        # the task, and its rerun replaces every table's rows of the run.
        side_by_side(engine, jobs, undo=undo)
        return
    with engine.begin() as connection:
        for job in jobs:
            job(connection)


def _carry(connection: Connection, config: DistrictConfig, run_id: str, base: dict | None, entity: str) -> None:
    """Remove the run's rows of one Learning entity and, in a delta run, copy the base run's rows not made again."""
    delete_run_rows(connection, LEARNING_TABLES[entity], config.district_id, run_id)
    if base is not None:
        transform_delta.carry_learning_rows(connection, config, run_id, base["run_id"], base["replaced"], entity)


def _start_carry(engine: Engine, config: DistrictConfig, run_id: str, base: dict) -> Future | None:
    """PostgreSQL: start copying the base run's rows forward while this process builds the new ones.

    At district scale the copy is most of a delta transform's database time (800,000 roster
    rows: 5 s of inserting and index upkeep); started as soon as the keys made again are
    known, it runs beside the read and the mapping instead of after them. None on SQLite
    (one writer: the copy is done in :func:`_write`).
    """
    jobs = [
        partial(_carry, config=config, run_id=run_id, base=base, entity=entity)
        for entity in largest_first(LEARNING_TABLES)
    ]
    return in_background(engine, jobs, undo=partial(_delete_learning_rows, config=config, run_id=run_id))


def transform_run(
    engine: Engine, config: DistrictConfig, run_id: str, mappings_dir: Path | str = MAPPINGS_DIR
) -> dict[str, int]:
    """Write one run's learning_* tables from its validated rows; returns rows per Learning entity.

    Idempotent: the run's earlier learning_* rows are replaced.
    """
    specs = load_specs(mappings_dir)
    print_ = fingerprint(
        config, STAGE, {name: Path(spec.path).read_text(encoding="utf-8-sig") for name, spec in specs.items()}
    )
    source, reason = usable_delta(engine, config, run_id, STAGE, print_, previous_stage=VALIDATE_STAGE)
    with engine.connect() as connection:
        held = held_logins(connection, config.district_id)
    if source is None:
        rows = passed_rows(engine, config, run_id, specs)
        learning = build_learning_frames(config, rows, specs, held)
        _write(engine, config, run_id, learning)
        record_stage(
            engine,
            config,
            run_id,
            STAGE,
            FULL,
            print_,
            rows=sum(len(frame) for frame in learning.values()),
            note=f"transformed the whole district: {reason}",
        )
        return {entity: len(frame) for entity, frame in learning.items()}
    planned = transform_delta.subsets(
        engine, config, run_id, source.base_run_id, delta_keys(engine, config.district_id, run_id, VALIDATE_STAGE)
    )
    base = {"run_id": source.base_run_id, "replaced": planned["replaced"]}
    carrying = _start_carry(engine, config, run_id, base)
    with computing_beside(engine, carrying, partial(_delete_learning_rows, config=config, run_id=run_id)):
        blocked = _blocked_source_ids(engine, config, run_id)
        rows = passed_rows(engine, config, run_id, specs, planned["subsets"], blocked)
        # Generated logins avoid every passed user's SIS username, as over the whole district.
        learning = build_learning_frames(config, rows, specs, held, passed_usernames(engine, config, run_id, blocked))
        learning = {
            entity: transform_delta.only_replaced(frame, entity, planned["replaced"])
            for entity, frame in learning.items()
        }
    _write(engine, config, run_id, learning, base, carrying)
    record_stage(
        engine,
        config,
        run_id,
        STAGE,
        DELTA,
        print_,
        base_run_id=source.base_run_id,
        rows=sum(len(frame) for frame in learning.values()),
        note="transformed again after an incremental read: "
        + ", ".join(f"{len(frame)} {entity}" for entity, frame in learning.items()),
        # For the diff: of the user types made anew whole, only the keys that changed.
        keys=transform_delta.changed_of_types(engine, config, run_id, source.base_run_id, planned["replaced"]),
    )
    return learning_counts(engine, config.district_id, run_id)


def learning_counts(engine: Engine, district_id: str, run_id: str) -> dict[str, int]:
    """Rows per Learning entity of a run, counted in its learning_* tables."""
    from sqlalchemy import func

    counts = {}
    with engine.connect() as connection:
        for entity, model in LEARNING_TABLES.items():
            table = model.__table__
            counts[entity] = int(
                connection.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.district_id == district_id, table.c.run_id == run_id)
                )
                or 0
            )
    return counts
