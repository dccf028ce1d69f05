"""Students: active students with their school enrollment and contact email."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.extract import incremental
from sis_learning.extract.listing import _result, _run_extract, _scope_summaries, _stage_listings
from sis_learning.extract.schools import _school_numbers, _schools_in_scope
from sis_learning.extract.values import _first, _integer, _nested, _text, iso_date
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.writer import DISTRICT_SCOPE, EntityStaging

STUDENT_EXPANSIONS = "school_enrollment,contact_info"


def _student_row(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
    enrollment = record.get("school_enrollment") if isinstance(record.get("school_enrollment"), Mapping) else {}
    return {
        "student_id": id_string(record.get("id")),
        "local_id": _text(record.get("local_id")),
        "student_number": _text(_first(record, "student_number", "local_id")),
        "first_name": _text(_nested(record, "name", "first_name")),
        "middle_name": _text(_nested(record, "name", "middle_name")),
        "last_name": _text(_nested(record, "name", "last_name")),
        "student_username": _text(record.get("student_username")),
        "email": _text(_nested(record, "contact_info", "email")),
        "school_id": _text(enrollment.get("school_id")) or listing.scope,
        "grade_level": _integer(enrollment.get("grade_level")),
        "enroll_status": _text(enrollment.get("enroll_status")),
        "enroll_status_code": _integer(enrollment.get("enroll_status_code")),
        "entry_date": iso_date(enrollment.get("entry_date")),
        "exit_date": iso_date(enrollment.get("exit_date")),
    }


def extract_students(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage the active students of the selected schools with enrollment and contact email.

    The v1 student listing returns students with an Active enrollment (enroll_status 0)
    by default, which is exactly what the source document imports. Incremental
    (docs/extract.md): the ``students`` table's ``transaction_date`` names the changed
    students; those now active in a selected school are read by id from
    ``/ws/v1/district/student`` (the same record, a page per 99 students), the others leave,
    and every unchanged student of the base run is carried forward under its school.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)

    def read_full(plan: incremental.ReadPlan) -> dict[str, Any]:
        listings = [
            hook.v1_listing(
                school,
                f"/ws/v1/school/{school}/student",
                wrapper="students",
                item="student",
                resource="student",
                params={"expansions": STUDENT_EXPANSIONS},
            )
            for school in schools
        ]
        notes = {schools[0]: [plan.note]} if plan.fallback and schools else None
        return _run_extract(hook, engine, config, run_id, "students", listings, _student_row, notes=notes)

    def read_changed(plan: incremental.ReadPlan) -> dict[str, Any]:
        return _students_changed(hook, engine, config, run_id, schools, plan)

    return incremental.read_with_plan(
        hook, engine, config, run_id, "students", school_ids is not None, read_changed, read_full
    )


def _students_changed(
    hook: PowerSchoolHook,
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    schools: list[str],
    plan: incremental.ReadPlan,
) -> dict[str, Any]:
    assert plan.base_run_id is not None
    changed, cursor = incremental.changed_rows(hook, "students", ("dcid", "schoolid", "enroll_status"), plan)
    numbers = _school_numbers(hook, schools)
    changed_ids = {id_string(row.get("dcid")) for row in changed} - {None}
    # Only the changed students a full read would list: active (enroll_status 0) in a selected school.
    wanted = sorted(
        {
            id_string(row.get("dcid")) or ""
            for row in changed
            if id_string(row.get("enroll_status")) == "0" and id_string(row.get("schoolid")) in numbers
        }
        - {""},
        key=lambda value: (len(value), value),
    )
    per_read = hook.max_page_size("student") - 1  # never a full page: one request per batch
    listings = []
    for start in range(0, len(wanted), per_read):
        batch = wanted[start : start + per_read]
        listings.append(
            hook.v1_listing(
                DISTRICT_SCOPE,
                "/ws/v1/district/student",
                wrapper="students",
                item="student",
                resource="student",
                params={"expansions": STUDENT_EXPANSIONS, "q": f"id==({','.join(batch)})"},
                label=f"/ws/v1/district/student ({len(batch)} changed)",
            )
        )
    selected = set(schools)

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any] | None:
        row = _student_row(record, listing)
        return row if row["school_id"] in selected else None  # moved away between the two reads

    staging = EntityStaging(engine, config, run_id, "students")
    staging.clear(schools)
    _stage_listings(hook, staging, listings, build, page_by_page=True, scope_of=lambda row, _listing: row["school_id"])
    read = sum(staging.written.values())
    carried = incremental.carry_forward(
        engine, config, run_id, "students", plan.base_run_id, drop={"student_id": changed_ids}, scopes=schools
    )
    written = incremental.staged_counts(engine, config.district_id, run_id, "students")
    summaries = _scope_summaries([], written, {school: [] for school in schools})
    if summaries:
        first = summaries[0]
        first["requests"] = cursor.requests + sum(listing.requests for listing in listings)
        first["pages"] = cursor.pages + sum(listing.pages for listing in listings)
        first["note"] = (
            f"{plan.note}; {len(changed_ids)} students changed by the cursor, {read} active in a selected "
            f"school read again by id in {len(listings)} requests, {carried} unchanged rows carried "
            f"forward from run {plan.base_run_id}"
        )
        problems = [
            f"{count} records staged for rejection as {rule}"
            for (_scope, rule), count in sorted(staging.problems.items())
        ]
        if problems:
            first["note"] += "; " + "; ".join(problems)
    staging.write_counts(summaries)
    return _result(hook, "students", summaries, carried_forward=carried)
