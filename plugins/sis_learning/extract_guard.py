"""After an extract: a listing that came back empty where there should be rows stops the run.

A school's students, sections or staff do not vanish between two runs; an empty listing
where PowerSchool's own ``/count`` reports rows, or where the district's last successful
run read rows, is a broken answer (a proxy, a plugin losing its grants, a half-restored
database), not a school that emptied. Reading it as "everyone left" would deactivate the
school in Learning; the safety guard's row floor (``min_removal_rows``) would let a small
school through. So there is no floor here: any drop to zero stops the run in extract,
before anything is written to Learning, naming the school and the entity.

It reads ``extract_counts`` (this run's and the last successful run's) only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from sis_learning.exceptions import EmptyListingError

# A scope whose rows were all staged under another school is not empty (extract_staff's note).
SHARED_NOTE = "already staged under another"


def _last_successful_run(connection: Any, district_id: str, run_id: str) -> str | None:
    row = connection.execute(
        text(
            "SELECT run_id FROM sync_runs WHERE district_id = :d AND kind = 'import' AND status = 'success' "
            "AND run_id != :r ORDER BY finished_at DESC, id DESC LIMIT 1"
        ),
        {"d": district_id, "r": run_id},
    ).first()
    return row[0] if row else None


def _counts(connection: Any, district_id: str, run_id: str, entity: str) -> dict[str, Any]:
    rows = connection.execute(
        text(
            "SELECT scope, rows, reported_count, note FROM extract_counts "
            "WHERE district_id = :d AND run_id = :r AND entity = :e"
        ),
        {"d": district_id, "r": run_id, "e": entity},
    )
    return {row.scope: row for row in rows}


def _school_names(connection: Any, district_id: str, run_id: str) -> dict[str, str]:
    rows = connection.execute(
        text("SELECT school_id, school_number, name FROM stg_schools WHERE district_id = :d AND run_id = :r"),
        {"d": district_id, "r": run_id},
    )
    names = {}
    for row in rows:
        for key in (row.school_id, row.school_number):
            if key is not None:
                names[str(key)] = row.name or ""
    return names


def check_listings_not_emptied(engine: Engine, district_id: str, run_id: str, entity: str) -> dict[str, int]:
    """Raise EmptyListingError when a scope of ``entity`` read no rows though it should have."""
    with engine.connect() as connection:
        current = _counts(connection, district_id, run_id, entity)
        empty = [scope for scope, row in current.items() if not row.rows and SHARED_NOTE not in (row.note or "")]
        if not empty:
            return {"scopes_checked": len(current)}
        previous_run = _last_successful_run(connection, district_id, run_id)
        previous = _counts(connection, district_id, previous_run, entity) if previous_run else {}
        names = _school_names(connection, district_id, run_id)
    problems = []
    for scope in sorted(empty):
        where = (
            f"school {scope}" + (f" ({names[scope]})" if names.get(scope) else "")
            if scope != "district"
            else ("the district")
        )
        reported = current[scope].reported_count
        before = previous.get(scope)
        if reported:
            problems.append(
                f"{entity} of {where}: the listing came back empty but PowerSchool's /count reports {reported}"
            )
        elif before is not None and before.rows:
            problems.append(
                f"{entity} of {where}: the listing came back empty but the last successful run "
                f"({previous_run}) read {before.rows}"
            )
    if problems:
        raise EmptyListingError(
            "Stopped before anything was written to Learning: " + "; ".join(problems) + ". A school's rows do not "
            "vanish between runs: check the PowerSchool plugin's access and the server's answers, then run again."
        )
    return {"scopes_checked": len(current)}
