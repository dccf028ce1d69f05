"""Transform after an incremental read: the Learning rows of what validate validated again (issue 17).

Organizations, classes, teachers and their roster rows come from the small entities and
are transformed in full every run. For students, parents, user levels, student roster
rows and parent links, only the rows of what validate validated again (``delta_keys`` of
stage ``validate``) are transformed again; every other row is the base run's, copied in
SQL. Also transformed again: every student and parent whose login was generated (it depends
on the logins the other users hold). Logins are generated against every login the district's
passed users have, exactly as a run over the whole district does.

``replaced`` describes, per Learning entity, the rows recomputed: ``whole`` (every row),
``types`` (every row of those user types) and ``keys`` (the diff's keys), for the copy
here. The diff gets the same (``delta_keys`` of stage ``transform``) with each user type
narrowed to the keys whose rows differ from the base run's (:func:`changed_of_types`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.staging.base import along_run_index, temporary_values
from sis_learning.staging.learning import LEARNING_TABLES
from sis_learning.staging.reads import read_frame
from sis_learning.staging.source import StgGuardian, StgSectionEnrollment

WHOLE = "*"  # delta_keys key: every row of the entity
TYPE_PREFIX = "*type:"  # delta_keys key: every row of this user type (users, rosters)
WHOLE_LEARNING = ("organizations", "classes")


def subsets(
    engine: Engine, config: DistrictConfig, run_id: str, base_run_id: str, validated: dict[str, set[str]]
) -> dict[str, Any]:
    """The staged rows to transform again, and the Learning keys they replace."""
    students = set(validated.get("students", ()))
    guardians = set(validated.get("guardians", ()))
    enrollments = set(validated.get("section_enrollments", ()))
    users = LEARNING_TABLES["users"].__table__
    with engine.connect() as connection:
        generated = connection.execute(
            text(
                f"SELECT user_type, external_id FROM {users.name} WHERE district_id = :d AND run_id = :b "
                "AND user_type IN ('S', 'P') AND login_generated"
            ),
            {"d": config.district_id, "b": base_run_id},
        ).all()
    # Parents get generated logins too (a Parent Portal username another user holds).
    students |= {value for user_type, value in generated if user_type == "S"}
    guardians |= {value for user_type, value in generated if user_type == "P"}
    pairs: set[str] = set()
    links: set[str] = set()
    for run in (run_id, base_run_id):
        if enrollments:
            rows = read_frame(
                engine,
                StgSectionEnrollment,
                config,
                run,
                ["section_id", "student_id"],
                [("enrollment_id", enrollments)],
            )
            pairs.update((rows["section_id"].fillna("") + ":S:" + rows["student_id"].fillna("")).tolist())
        if guardians:
            rows = read_frame(
                engine, StgGuardian, config, run, ["guardian_id", "student_id"], [("guardian_id", guardians)]
            )
            links.update((rows["guardian_id"].fillna("") + ":" + rows["student_id"].fillna("")).tolist())
    replaced = {
        "organizations": {WHOLE},
        "classes": {WHOLE},
        "users": {TYPE_PREFIX + "T"} | {f"S:{value}" for value in students} | {f"P:{value}" for value in guardians},
        "user_levels": set(students),
        "rosters": {TYPE_PREFIX + "T"} | pairs,
        "parent_links": links,
    }
    return {
        "subsets": {
            "students": [("student_id", students | {None})],
            "guardians": [("guardian_id", guardians | {None})],
            "section_enrollments": [("enrollment_id", enrollments | {None})],
        },
        "replaced": replaced,
    }


def key_sql(entity: str, alias: str = "t") -> str:
    """The diff's key of a learning_<entity> row, in SQL (``class:S:5`` for a roster row)."""
    from sis_learning.entities import LEARNING_ENTITY

    fields = LEARNING_ENTITY[entity].key_fields
    return " || ':' || ".join(f"{alias}.{name}" for name in fields)


def type_condition(entity: str, user_type: str, alias: str = "t") -> str:
    return f"{alias}.user_type = '{user_type}'"


def carry_learning_rows(
    connection: Any, config: DistrictConfig, run_id: str, base_run_id: str, replaced, entity: str
) -> None:
    """Copy the base run's rows of one Learning entity that were not transformed again into this run, in SQL."""
    keys = replaced.get(entity, set())
    if WHOLE in keys:
        return
    table = LEARNING_TABLES[entity].__table__
    columns = [column.name for column in table.columns if column.name not in ("id", "run_id")]
    names = ", ".join(columns)
    selected = ", ".join(f"t.{name}" for name in columns)
    types = sorted(key[len(TYPE_PREFIX) :] for key in keys if key.startswith(TYPE_PREFIX))
    explicit = sorted(key for key in keys if not key.startswith(TYPE_PREFIX))
    conditions = [f"NOT ({type_condition(entity, user_type)})" for user_type in types]
    connection.exec_driver_sql("DROP TABLE IF EXISTS delta_learning_keys")
    if explicit:
        temporary_values(connection, "delta_learning_keys", explicit, "key")
        conditions.append(f"({key_sql(entity)}) NOT IN (SELECT key FROM delta_learning_keys)")
    where = "".join(f" AND {condition}" for condition in conditions)
    with along_run_index(connection):
        connection.execute(
            text(
                f"INSERT INTO {table.name} (run_id, {names}) SELECT :r, {selected} FROM {table.name} t "
                f"WHERE t.district_id = :d AND t.run_id = :b{where}"
            ),
            {"d": config.district_id, "r": run_id, "b": base_run_id},
        )
    connection.exec_driver_sql("DROP TABLE IF EXISTS delta_learning_keys")


def changed_of_types(
    engine: Engine, config: DistrictConfig, run_id: str, base_run_id: str, replaced: dict[str, set[str]]
) -> dict[str, set[str]]:
    """``replaced`` with each "every row of this user type" narrowed to the keys whose rows changed.

    Transform makes every teacher and teacher roster row anew in each run (they come from the
    sections and section teachers, read in full), but few of them differ from the base run's.
    The keys of the rows found in only one of the two runs, compared column by column (a
    new, changed or vanished row), are what the diff needs to compare: a row equal to the
    base run's is what the base run sent, exactly like a row copied forward (what Learning
    did not accept from it, or changed since, the diff compares again: ``diff._retry_keys``).
    At L that is some 80,000 teacher roster rows the diff no longer compares each run.
    """
    narrowed: dict[str, set[str]] = {}
    with engine.connect() as connection:
        for entity, keys in replaced.items():
            types = sorted(key[len(TYPE_PREFIX) :] for key in keys if key.startswith(TYPE_PREFIX))
            narrowed[entity] = {key for key in keys if not key.startswith(TYPE_PREFIX)}
            if not types:
                continue
            table = LEARNING_TABLES[entity].__table__
            columns = ", ".join(
                column.name for column in table.columns if column.name not in ("id", "run_id", "district_id")
            )
            of_types = ", ".join(f":t{number}" for number in range(len(types)))
            both = " UNION ALL ".join(
                f"SELECT {columns}, {side} AS side FROM {table.name} "
                f"WHERE district_id = :d AND run_id = :{name} AND user_type IN ({of_types})"
                for side, name in ((1, "r"), (2, "b"))
            )
            parameters = {"d": config.district_id, "r": run_id, "b": base_run_id}
            parameters.update({f"t{number}": user_type for number, user_type in enumerate(types)})
            # A row in only one of the runs (NULLs compare equal in GROUP BY).
            narrowed[entity].update(
                key
                for (key,) in connection.execute(
                    text(
                        f"SELECT {key_sql(entity, 'u')} FROM ({both}) u GROUP BY {columns} HAVING min(side) = max(side)"
                    ),
                    parameters,
                )
            )
    return narrowed


def only_replaced(frame: pd.DataFrame, entity: str, replaced: dict[str, set[str]]) -> pd.DataFrame:
    """The rows of a recomputed Learning frame that the copy left out (the others come from the base run)."""
    keys = replaced.get(entity, set())
    if WHOLE in keys or frame.empty:
        return frame
    from sis_learning.entities import LEARNING_ENTITY

    fields = LEARNING_ENTITY[entity].key_fields
    key = frame[fields[0]].astype("string")
    for name in fields[1:]:
        key = key + ":" + frame[name].astype("string")
    keep = key.isin(keys)
    types = [item[len(TYPE_PREFIX) :] for item in keys if item.startswith(TYPE_PREFIX)]
    if types and "user_type" in frame:
        keep = keep | frame["user_type"].isin(types)
    return frame[keep.fillna(False).to_numpy(dtype=bool)]
