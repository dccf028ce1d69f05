"""Guardians: the student_guardian_detail PowerQuery for the staged students."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.exceptions import ExtractOrderError
from sis_learning.extract import incremental
from sis_learning.extract.listing import (
    _entity_completed,
    _result,
    _scope_summaries,
    _stage_listings,
)
from sis_learning.extract.schools import (
    _schools_in_scope,
)
from sis_learning.extract.values import _boolean, _first, _text
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.source import StgStudent
from sis_learning.staging.writer import DISTRICT_SCOPE, EntityStaging

GUARDIAN_QUERY = "com.pearson.core.guardian.student_guardian_detail"
# Student DCIDs per guardian PowerQuery call: big enough to keep requests near the
# minimum, small enough that the JSON body stays well under a megabyte.
GUARDIAN_QUERY_STUDENTS_PER_CALL = 5000


# --------------------------------------------------------------------------- guardians


def _staged_student_ids(engine: Engine, config: DistrictConfig, run_id: str, schools: list[str]) -> Iterable[str]:
    table = StgStudent.__table__
    query = (
        select(table.c.student_id)
        .where(table.c.district_id == config.district_id, table.c.run_id == run_id, table.c.school_id.in_(schools))
        .order_by(table.c.id)
    )
    with engine.connect() as connection:
        for (student_id,) in connection.execute(query):
            yield student_id


def extract_guardians(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage the guardians of the staged students (the student_guardian_detail PowerQuery).

    Parents are imported by default; "Ignore Parents from SIS" (``ignore_parents``) skips
    the read entirely. The query takes student DCIDs, so this runs after
    ``extract_students`` in the same run and asks for them in batches.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    staging = EntityStaging(engine, config, run_id, "guardians")
    if config.ignore_parents:
        staging.clear([DISTRICT_SCOPE])
        summary = {
            "scope": DISTRICT_SCOPE,
            "rows": 0,
            "reported_count": None,
            "requests": 0,
            "pages": 0,
            "mismatch": False,
            "note": "skipped: the district ignores parents from the SIS",
        }
        staging.write_counts([summary])
        return _result(hook, "guardians", [summary], skipped=True)
    schools = _schools_in_scope(hook, config, school_ids)
    if not _entity_completed(engine, config, run_id, "students"):
        raise ExtractOrderError(
            "Guardians are read for the staged students, so extract_students must run before "
            f"extract_guardians in run {run_id}."
        )

    columns = _ColumnPicker(GUARDIAN_COLUMNS)

    def identity(row: Mapping[str, Any]) -> str | None:
        guardian, student = id_string(columns.value(row, "guardian_id")), id_string(columns.value(row, "student_id"))
        return f"{guardian}:{student}" if guardian and student else None

    def build(row: Mapping[str, Any], _listing: Listing) -> dict[str, Any] | None:
        value = columns.values(row)
        # A link without a guardian or student id is staged too (as missing_source_id).
        guardian_id, student_id = id_string(value["guardian_id"]), id_string(value["student_id"])
        username = _text(value["portal_username"])
        return {
            "guardian_id": guardian_id,
            "student_id": student_id,
            "first_name": _text(value["first_name"]),
            "last_name": _text(value["last_name"]),
            "portal_username": username,
            "portal_enabled": _boolean(value["portal_enabled"]) if username else None,
            "email": _text(value["email"]),
            "relationship": _text(value["relationship"]),
        }

    def query_listings(student_ids: list[str]) -> list[Listing]:
        listings: list[Listing] = []
        for start in range(0, len(student_ids), GUARDIAN_QUERY_STUDENTS_PER_CALL):
            batch = student_ids[start : start + GUARDIAN_QUERY_STUDENTS_PER_CALL]
            listing = hook.query_listing(DISTRICT_SCOPE, GUARDIAN_QUERY, {"students_dcid": batch}, identity=identity)
            listing.label = f"students {batch[0]}..{batch[-1]}"
            listings.append(listing)
        return listings

    def stage(student_ids: list[str]) -> tuple[list[Listing], EntityStaging]:
        staging.clear([DISTRICT_SCOPE])
        listings = query_listings(student_ids)
        # Many batches are read side by side, each page by page; one or a few, counted and fanned out.
        page_by_page = len(listings) >= hook.max_concurrent_requests
        _stage_listings(hook, staging, listings, build, source_id=identity, page_by_page=page_by_page)
        return listings, staging

    def read_full(plan: incremental.ReadPlan) -> dict[str, Any]:
        # All batches go to one concurrent read: a few strings per student, never the guardians.
        listings, _ = stage(list(_staged_student_ids(engine, config, run_id, schools)))
        summaries = (
            _scope_summaries(listings, staging.written)
            if listings
            else [
                {
                    "scope": DISTRICT_SCOPE,
                    "rows": 0,
                    "reported_count": None,
                    "requests": 0,
                    "pages": 0,
                    "mismatch": False,
                    "note": "no staged students",
                }
            ]
        )
        if plan.fallback:
            summaries[0]["note"] = "; ".join(part for part in (plan.note, summaries[0]["note"]) if part)
        staging.write_counts(summaries)
        return _result(hook, "guardians", summaries)

    def read_changed(plan: incremental.ReadPlan) -> dict[str, Any]:
        return _guardians_changed(hook, engine, config, run_id, schools, plan, stage)

    return incremental.read_with_plan(
        hook, engine, config, run_id, "guardians", school_ids is not None, read_changed, read_full
    )


def _guardians_changed(
    hook: PowerSchoolHook,
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    schools: list[str],
    plan: incremental.ReadPlan,
    stage: Any,
) -> dict[str, Any]:
    """The PowerQuery for the students whose links may have changed; every other link carried.

    Asked again: students linked to a guardian whose ``Guardian`` row changed, students of a
    ``GuardianStudent`` row that changed, and students staged now but not in the base run.
    Links of students no longer staged are left out, as a full read would.
    """
    assert plan.base_run_id is not None
    base = plan.base_run_id
    changed_guardians, guardian_cursor = incremental.changed_rows(
        hook, "guardian", ("guardianid",), plan, identity=lambda row: id_string(row.get("guardianid"))
    )
    link_identity = lambda row: f"{id_string(row.get('guardianid'))}:{id_string(row.get('studentsdcid'))}"  # noqa: E731
    changed_links, link_cursor = incremental.changed_rows(
        hook, "guardianstudent", ("guardianid", "studentsdcid"), plan, identity=link_identity
    )
    guardian_ids = {id_string(row.get("guardianid")) for row in changed_guardians} - {None}
    link_reads = incremental.by_id_reads(
        hook, "guardianstudent", ("guardianid", "studentsdcid"), "guardianid", guardian_ids, identity=link_identity
    )
    linked = changed_links + incremental.read_rows(hook, link_reads)
    current = set(_staged_student_ids(engine, config, run_id, schools))
    base_students = incremental.staged_ids(engine, config.district_id, base, "students", "student_id")
    asked = {id_string(row.get("studentsdcid")) for row in linked} & current
    asked |= current - base_students
    listings, staging = stage(sorted(asked, key=lambda value: (len(value), value)))
    read = staging.written.get(DISTRICT_SCOPE, 0)
    carried = incremental.carry_forward(
        engine,
        config,
        run_id,
        "guardians",
        base,
        drop={"student_id": asked | (base_students - current)},
        scopes=[DISTRICT_SCOPE],
        raw_key="t.guardian_id || ':' || t.student_id",
    )
    cursor_reads = [guardian_cursor, link_cursor, *link_reads]
    summary = {
        "scope": DISTRICT_SCOPE,
        # The scope's rows: cleared, then those staged afresh and those carried (never both).
        "rows": read + carried,
        "reported_count": None,
        "requests": sum(listing.requests for listing in [*cursor_reads, *listings]),
        "pages": sum(listing.pages for listing in [*cursor_reads, *listings]),
        "mismatch": False,
        "note": (
            f"{plan.note}; {len(guardian_ids)} guardians and {len(changed_links)} guardian-student links changed, "
            f"the PowerQuery asked again for {len(asked)} students ({read} links), {carried} unchanged links "
            f"carried forward from run {base}"
        ),
    }
    staging.write_counts([summary])
    return _result(hook, "guardians", [summary], carried_forward=carried)


# Staged guardian field -> the PowerQuery column names it may come under (the first one
# with a value wins), as the query's versions name them.
GUARDIAN_COLUMNS = {
    "guardian_id": ("guardianid", "guardian_id"),
    "student_id": ("studentsdcid", "students_dcid", "studentdcid", "student_dcid"),
    "first_name": ("firstname", "first_name"),
    "last_name": ("lastname", "last_name"),
    "portal_username": ("username", "pcas_username", "portal_username"),
    "portal_enabled": ("isenabled", "portal_enabled"),
    "email": ("emailaddress", "email"),
    "relationship": ("relationship", "relationship_type"),
}


class _ColumnPicker:
    """``_first(row, *names)`` for many rows with the same columns, decided once per column set.

    Where a row has exactly one of a field's names, that column is read directly; where it
    has several, the first with a value wins, as :func:`_first` does.
    """

    def __init__(self, fields: Mapping[str, tuple[str, ...]]) -> None:
        self.fields = dict(fields)
        self._columns: set[str] | None = None
        self._plan: dict[str, tuple[str | None, tuple[str, ...]]] = {}

    def _plan_for(self, row: Mapping[str, Any]) -> dict[str, tuple[str | None, tuple[str, ...]]]:
        if self._columns is None or row.keys() != self._columns:
            self._columns = set(row)
            plan = {}
            for field, names in self.fields.items():
                present = tuple(name for name in names if name in self._columns)
                plan[field] = (present[0], ()) if len(present) == 1 else (None, present)
            self._plan = plan
        return self._plan

    def value(self, row: Mapping[str, Any], field: str) -> Any:
        single, several = self._plan_for(row)[field]
        if single is not None:
            found = row[single]
            return None if found == "" else found
        return _first(row, *several) if several else None

    def values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        found = {}
        for field, (single, several) in self._plan_for(row).items():
            if single is not None:
                value = row[single]
                found[field] = None if value == "" else value
            else:
                found[field] = _first(row, *several) if several else None
        return found
