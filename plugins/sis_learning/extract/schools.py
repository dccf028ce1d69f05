"""Schools, terms and courses: the selected schools and what hangs off them.

``selected_school_ids`` resolves the district's ``schools`` setting ("Select the School(s)
that you want to import data from"); every other extract asks ``_schools_in_scope``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.exceptions import UnknownSchoolError
from sis_learning.extract import incremental
from sis_learning.extract.listing import _in_list, _result, _run_extract, _scope_summaries, _stage_listings
from sis_learning.extract.values import (
    _integer,
    _integer_value,
    _numeric_first,
    _text,
    iso_date,
    record_value_problems,
)
from sis_learning.hooks.http_client import PermissionDeniedError, ValidationFailedError
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.writer import DISTRICT_SCOPE, EntityStaging

# --------------------------------------------------------------------------- schools

# PowerSchool's convention: Terms.ID = (start year - 1990) * 100 + portion (3500 = 2025-2026).
TERM_ID_YEAR_BASE = 1990


def _school_lookup(hook: PowerSchoolHook) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(school id -> school record, school number -> school id) for the whole district."""
    by_id: dict[str, dict[str, Any]] = {}
    id_by_number: dict[str, str] = {}
    for school in hook.district_schools():
        school_id = id_string(school.get("id"))
        if school_id is None:
            continue
        by_id[school_id] = school
        number = id_string(school.get("school_number"))
        if number is not None:
            id_by_number[number] = school_id
    return by_id, id_by_number


def selected_school_ids(hook: PowerSchoolHook, config: DistrictConfig) -> list[str]:
    """The Schools.DCID of the district's selected schools ("all", DCIDs or school numbers).

    Implements "Select the School(s) that you want to import data from". A school the
    configuration names but PowerSchool does not have is a fatal error naming it.
    """
    by_id, id_by_number = _school_lookup(hook)
    ordered = sorted(by_id, key=_numeric_first)
    number_of = {school_id: number for number, school_id in id_by_number.items()}
    chosen, unknown = config.select_schools((school_id, number_of.get(school_id)) for school_id in ordered)
    if unknown:
        source = config.source_file or f"the configuration of district {config.district_id}"
        known = ", ".join(
            f"{school_id} (number {id_string(by_id[school_id].get('school_number'))}, {by_id[school_id].get('name')})"
            for school_id in sorted(by_id, key=_numeric_first)[:20]
        )
        raise UnknownSchoolError(
            f"{source}: schools lists {', '.join(repr(item) for item in unknown)}, which PowerSchool does not have "
            f"(neither a Schools.DCID nor a school number). Fix the `schools` key. PowerSchool's schools: {known}"
        )
    return chosen


def _schools_in_scope(hook: PowerSchoolHook, config: DistrictConfig, school_ids: list[str] | None) -> list[str]:
    selected = selected_school_ids(hook, config)
    if school_ids is None:
        return selected
    school_ids = [str(school_id) for school_id in school_ids]
    outside = [school_id for school_id in school_ids if school_id not in selected]
    if outside:
        raise UnknownSchoolError(
            f"extract was asked for school(s) {', '.join(outside)}, which are not among district "
            f"{config.district_id}'s selected schools ({', '.join(selected)})."
        )
    return school_ids


def extract_schools(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage the selected schools (organizations: Schools.DCID and name).

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    chosen = set(_schools_in_scope(hook, config, school_ids))
    # Resolving the selection read every school already (a few hundred at most): stage that read.
    records = hook.district_schools()
    listing = hook.district_schools_listing

    def build(record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "school_id": id_string(record.get("id")),
            "school_number": _text(record.get("school_number")),
            "name": _text(record.get("name")),
            "low_grade": _integer(record.get("low_grade")),
            "high_grade": _integer(record.get("high_grade")),
        }

    staging = EntityStaging(engine, config, run_id, "schools")
    staging.clear([DISTRICT_SCOPE])
    kept = [record for record in records if id_string(record.get("id")) in chosen]
    rows = [build(record) for record in kept]
    record_value_problems("schools", rows)
    staging.write_page(DISTRICT_SCOPE, kept, rows, [id_string(record.get("id")) for record in kept])
    staging.close()
    left_out = len(records) - len(kept)
    notes = {DISTRICT_SCOPE: [f"{left_out} schools the district did not select were not staged"]} if left_out else None
    summaries = _scope_summaries([listing], staging.written, notes)
    staging.write_counts(summaries)
    return _result(hook, "schools", summaries)


# --------------------------------------------------------------------------- per-school v1 entities


TERM_COLUMNS = ("id", "dcid", "schoolid", "name", "abbreviation", "yearid", "firstday", "lastday", "portion")
# From this many schools on, one read of the terms table replaces one v1 listing per school.
TERMS_TABLE_FROM_SCHOOLS = 3


def extract_terms(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage every term of the selected schools (the class ``year`` is the term id).

    For all selected schools at once (the DAG's task), the terms come from one read of
    the ``terms`` table, scope ``district``: a page for every 1,000 terms instead of a
    request per school (the v1 term is that table's row: ``id`` = DCID, ``local_id`` = ID,
    ``start_year`` = YearID + 1990). For a subset of the schools (a task mapped over
    schools), or when the plugin may not read the table, one ``/ws/v1/school/{id}/term``
    listing per school, scope = the school.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    refused_note = None
    if school_ids is None and len(schools) >= TERMS_TABLE_FROM_SCHOOLS:
        try:
            return _terms_from_table(hook, engine, config, run_id, schools)
        except (PermissionDeniedError, ValidationFailedError) as refused:
            hook.log.warning("terms table read refused (%s); reading terms school by school", refused)
            refused_note = f"read per school because the terms table read was refused: {refused}"
    EntityStaging(engine, config, run_id, "terms").clear([DISTRICT_SCOPE])  # a table read's rows, if any
    listings = [
        hook.v1_listing(
            school, f"/ws/v1/school/{school}/term", wrapper="terms", item="term", resource="term", counted=False
        )
        for school in schools
    ]

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
        return {
            "term_id": id_string(record.get("id")),
            "local_id": _text(record.get("local_id")),
            "school_id": _text(record.get("school_id")) or listing.scope,
            "name": _text(record.get("name")),
            "abbreviation": _text(record.get("abbreviation")),
            "start_year": _integer(record.get("start_year")),
            "start_date": iso_date(record.get("start_date")),
            "end_date": iso_date(record.get("end_date")),
            "portion": _integer(record.get("portion")),
        }

    notes = {schools[0]: [refused_note]} if refused_note and schools else None
    return _run_extract(hook, engine, config, run_id, "terms", listings, build, notes=notes)


def _terms_from_table(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, schools: list[str]
) -> dict[str, Any]:
    numbers = _school_numbers(hook, schools)
    listing = hook.table_listing(DISTRICT_SCOPE, "terms", TERM_COLUMNS, q=_in_list("schoolid", numbers))
    hook.read_counts([listing])  # a refused table or field fails here, before anything is staged

    def build(row: Mapping[str, Any], _listing: Listing) -> dict[str, Any]:
        number = id_string(row.get("schoolid")) or ""
        year_id = _integer_value(row.get("yearid"))
        return {
            "term_id": id_string(row.get("dcid")),
            "local_id": _text(row.get("id")),
            "school_id": numbers.get(number, number),
            "name": _text(row.get("name")),
            "abbreviation": _text(row.get("abbreviation")),
            "start_year": year_id + TERM_ID_YEAR_BASE if year_id is not None else None,
            "start_date": iso_date(row.get("firstday")),
            "end_date": iso_date(row.get("lastday")),
            "portion": _integer(row.get("portion")),
        }

    staging = EntityStaging(engine, config, run_id, "terms")
    staging.clear([DISTRICT_SCOPE, *schools])  # and any per-school rows of an earlier attempt
    _stage_listings(hook, staging, [listing], build, source_id=lambda row: id_string(row.get("dcid")))
    note = f"the terms of the {len(schools)} selected schools, from one read of the terms table"
    summaries = _scope_summaries([listing], staging.written, {DISTRICT_SCOPE: [note]})
    staging.write_counts(summaries)
    return _result(hook, "terms", summaries, source="table")


def extract_courses(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage the courses of the selected schools (the class ``code`` is the course number).

    Incremental (docs/extract.md): the ``courses`` table's ``whenmodified`` names the
    changed courses, each school with one is asked for them by id, the rest is carried.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)

    def listing_for(school: str, ids: list[str] | None = None) -> Listing:
        params = {"q": f"id==({','.join(ids)})"} if ids else None
        return hook.v1_listing(
            school,
            f"/ws/v1/school/{school}/course",
            wrapper="courses",
            item="course",
            resource="course",
            counted=False,
            params=params,
        )

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
        return {
            "course_id": id_string(record.get("id")),
            "school_id": _text(record.get("school_id")) or listing.scope,
            "course_number": _text(record.get("course_number")),
            "course_name": _text(record.get("course_name")),
        }

    def read_changed(plan: incremental.ReadPlan) -> dict[str, Any]:
        changed, cursor = incremental.changed_rows(hook, "courses", ("dcid", "schoolid"), plan)
        numbers = _school_numbers(hook, schools)
        ids_by_school: dict[str, list[str]] = {}
        for row in changed:
            school = numbers.get(id_string(row.get("schoolid")) or "")
            if school is not None and id_string(row.get("dcid")):
                ids_by_school.setdefault(school, []).append(id_string(row.get("dcid")) or "")
        return incremental.per_school_changes(
            hook,
            engine,
            config,
            run_id,
            "courses",
            plan,
            schools,
            changed=changed,
            cursor_reads=[cursor],
            ids_by_school=ids_by_school,
            listing_for=listing_for,
            build=build,
            ids_per_read=hook.max_page_size("course") - 1,
        )

    def read_full(plan: incremental.ReadPlan) -> dict[str, Any]:
        notes = {schools[0]: [plan.note]} if plan.fallback and schools else None
        return _run_extract(
            hook, engine, config, run_id, "courses", [listing_for(school) for school in schools], build, notes=notes
        )

    return incremental.read_with_plan(
        hook, engine, config, run_id, "courses", school_ids is not None, read_changed, read_full
    )


def _school_numbers(hook: PowerSchoolHook, school_ids: list[str]) -> dict[str, str]:
    """school number -> school id for the given schools (tables use numbers, v1 uses DCIDs)."""
    by_id, _ = _school_lookup(hook)
    return {id_string(by_id[school_id].get("school_number")) or "": school_id for school_id in school_ids}


def _first_term_id(config: DistrictConfig) -> int:
    return (config.import_start_year - TERM_ID_YEAR_BASE) * 100
