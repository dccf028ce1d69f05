"""1% of a district changed between two runs, through the simulator's admin API; and what changed.

``apply_changes`` does what a school office does between two imports, on
``fraction`` x (active students) records, in equal shares: a student renamed, an
enrollment dropped, a student enrolled in another current section of their school, a
student transferred out (enroll status 2: the student, their level, rosters and parent
links leave the import), a guardian renamed. Targets are picked deterministically (seeded)
from the generated dataset, each student at most once.

``rows_that_changed`` is the oracle for "Learning rows sent vs rows that changed": it
compares the two runs' Learning-shaped rows (``learning_*``) directly, on the fields
Learning sees (the diff's compared fields), without the diff or the snapshot: rows new or
different in the second run, plus keys gone from it (for users, rosters and parent links,
which Learning deactivates or removes).
"""

from __future__ import annotations

import math
import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CURRENT_TERM_ID = 3500  # Terms.ID of the 2025-2026 year: the import start year's terms are >= this
KINDS = ("rename_student", "drop_enrollment", "enroll_student", "transfer_out", "rename_guardian")


def _plan(dataset_path: Path, fraction: float, seed: int) -> list[tuple[str, dict[str, Any]]]:
    connection = sqlite3.connect(f"file:{dataset_path}?mode=ro", uri=True)
    try:
        active = connection.execute("SELECT count(*) FROM students WHERE enroll_status = 0").fetchone()[0]
        total = max(len(KINDS), round(active * fraction))
        per_kind = math.ceil(total / len(KINDS))
        rng = random.Random(seed)
        students = connection.execute(
            "SELECT id, dcid, schoolid FROM students WHERE enroll_status = 0 ORDER BY id"
        ).fetchall()
        rng.shuffle(students)
        pool = iter(students)
        plan: list[tuple[str, dict[str, Any]]] = []
        for _ in range(per_kind):
            _, dcid, _ = next(pool)
            plan.append(("rename_student", {"dcid": dcid, "last_name": f"Renamed{dcid}"}))
        for _ in range(per_kind):
            _, dcid, _ = next(pool)
            plan.append(("transfer_out", {"dcid": dcid}))
        # Drops: a current, not dropped enrollment of a further student in a section with a teacher.
        drops = 0
        while drops < per_kind:
            student_id, dcid, _ = next(pool)
            row = connection.execute(
                "SELECT x.dcid FROM cc JOIN sections x ON x.id = cc.sectionid "
                "WHERE cc.studentid = ? AND cc.sectionid > 0 AND cc.termid >= ? AND x.teacher != 0 LIMIT 1",
                (student_id, CURRENT_TERM_ID),
            ).fetchone()
            if row:
                plan.append(("drop_enrollment", {"student": dcid, "section": row[0]}))
                drops += 1
        sections_by_school: dict[Any, list[tuple[int, int]]] = {}
        for section_id, section_dcid, school in connection.execute(
            "SELECT id, dcid, schoolid FROM sections WHERE termid >= ? AND teacher != 0 ORDER BY id", (CURRENT_TERM_ID,)
        ):
            sections_by_school.setdefault(school, []).append((section_id, section_dcid))
        enrolled = 0
        while enrolled < per_kind:
            student_id, dcid, school = next(pool)
            taken = {
                row[0] for row in connection.execute("SELECT abs(sectionid) FROM cc WHERE studentid = ?", (student_id,))
            }
            candidates = [section for section in sections_by_school.get(school, []) if section[0] not in taken]
            if candidates:
                plan.append(("enroll_student", {"student": dcid, "section": rng.choice(candidates)[1]}))
                enrolled += 1
        guardians = [
            row[0]
            for row in connection.execute(
                "SELECT guardianid FROM guardian WHERE accountidentifier IS NOT NULL AND accountidentifier != '' "
                "ORDER BY guardianid"
            )
        ]
        for guardian_id in rng.sample(guardians, min(per_kind, len(guardians))):
            plan.append(("rename_guardian", {"guardianid": guardian_id, "lastname": f"Renamed{guardian_id}"}))
        return plan
    finally:
        connection.close()


def _apply(powerschool, kind: str, target: dict[str, Any]) -> None:
    if kind == "rename_student":
        powerschool.rename("student", target["dcid"], last_name=target["last_name"])
    elif kind == "transfer_out":
        powerschool.set_enroll_status(target["dcid"], 2, exitdate="2025-11-14")
    elif kind == "drop_enrollment":
        powerschool.drop_enrollment(target["student"], target["section"], dateleft="2025-11-14")
    elif kind == "enroll_student":
        powerschool.enroll_student(target["student"], target["section"])
    elif kind == "rename_guardian":
        powerschool.rename("guardian", target["guardianid"], lastname=target["lastname"])


def apply_changes(powerschool, dataset_path: Path, fraction: float, seed: int = 1) -> dict[str, Any]:
    """Change ``fraction`` of the district through the admin API; returns what was changed, by kind."""
    plan = _plan(Path(dataset_path), fraction, seed)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: _apply(powerschool, *item), plan))
    counts = {kind: sum(1 for item_kind, _ in plan if item_kind == kind) for kind in KINDS}
    return {"admin_calls": len(plan), "by_kind": counts}


def rows_that_changed(staging_url: str, district_id: str, before_run: str, after_run: str) -> dict[str, Any]:
    """Per Learning entity: rows new or changed in ``after_run``, and keys that left it (oracle)."""
    from sqlalchemy import text

    from sis_learning.diff import ENTITIES
    from sis_learning.staging.base import get_engine
    from sis_learning.staging.learning import LEARNING_TABLES

    engine = get_engine(staging_url)
    result: dict[str, Any] = {}
    with engine.connect() as connection:
        for spec in ENTITIES:
            table = LEARNING_TABLES[spec.name].__table__.name
            columns = ", ".join(spec.compared_fields)
            keys = ", ".join(spec.key_fields)
            where = "district_id = :district AND run_id = :run"
            new_or_changed = connection.execute(
                text(
                    f"SELECT count(*) FROM (SELECT {columns} FROM {table} WHERE {where.replace(':run', ':after')} "
                    f"EXCEPT SELECT {columns} FROM {table} WHERE {where.replace(':run', ':before')}) AS changed"
                ),
                {"district": district_id, "before": before_run, "after": after_run},
            ).scalar_one()
            gone = 0
            if spec.vanished_action:
                gone = connection.execute(
                    text(
                        f"SELECT count(*) FROM (SELECT {keys} FROM {table} WHERE {where.replace(':run', ':before')} "
                        f"EXCEPT SELECT {keys} FROM {table} WHERE {where.replace(':run', ':after')}) AS gone"
                    ),
                    {"district": district_id, "before": before_run, "after": after_run},
                ).scalar_one()
            result[spec.name] = {"new_or_changed": int(new_or_changed), "gone": int(gone)}
    result["total"] = sum(item["new_or_changed"] + item["gone"] for item in result.values())
    return result
