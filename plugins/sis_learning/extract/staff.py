"""Staff: the active staff of the selected schools, once each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.extract import incremental
from sis_learning.extract.listing import (
    _result,
    _scope_summaries,
    _stage_listings,
)
from sis_learning.extract.schools import _school_numbers, _schools_in_scope
from sis_learning.extract.values import _integer, _integer_value, _nested, _text
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.writer import EntityStaging

STAFF_EXPANSIONS = "emails,school_affiliations"


def extract_staff(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage the active staff of the selected schools, once each.

    A teacher affiliated with several selected schools is listed by each of them; the row
    is staged under the first school that lists it (the others' ``extract_counts`` note
    how many they shared). Call it once for all schools rather than mapped per school.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)

    def listing_for(school: str, ids: list[str] | None = None) -> Listing:
        params = {"expansions": STAFF_EXPANSIONS}
        if ids:
            params["q"] = f"id==({','.join(ids)})"
        return hook.v1_listing(
            school, f"/ws/v1/school/{school}/staff", wrapper="staffs", item="staff", resource="staff", params=params
        )

    seen: dict[str, str] = {}  # staff id -> the school it is staged under
    shared: dict[str, int] = {}

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any] | None:
        staff_id = id_string(record.get("id"))
        staged_under = seen.get(staff_id) if staff_id is not None else None
        if staged_under is not None and staged_under != listing.scope:
            shared[listing.scope] = shared.get(listing.scope, 0) + 1
            return None
        # (the same id twice in one school's listing, with different values, is kept:
        # both copies are staged for rejection as duplicate_source_id)
        if staff_id is not None:
            seen[staff_id] = listing.scope
        affiliations = _nested(record, "school_affiliations", "school_affiliation") or []
        if isinstance(affiliations, Mapping):
            affiliations = [affiliations]
        affiliated = [id_string(item.get("school_id")) for item in affiliations if isinstance(item, Mapping)]
        # An affiliation without a status field counts as active; a status sent as ""
        # (PowerSchool's NULL) is unknown, never active by default.
        active = [
            id_string(item.get("school_id"))
            for item in affiliations
            if isinstance(item, Mapping) and ("status" not in item or _integer_value(item.get("status")) == 1)
        ]
        home = _text(record.get("homeschool_id"))
        return {
            "staff_id": staff_id,
            "local_id": _text(record.get("local_id")),
            "users_dcid": _text(record.get("users_dcid")),
            "first_name": _text(_nested(record, "name", "first_name")),
            "middle_name": _text(_nested(record, "name", "middle_name")),
            "last_name": _text(_nested(record, "name", "last_name")),
            "teacher_username": _text(record.get("teacher_username")),
            "admin_username": _text(record.get("admin_username")),
            "email": _text(_nested(record, "emails", "work_email")),
            "school_id": home or next((school for school in active if school), None) or listing.scope,
            "school_ids": ",".join(dict.fromkeys(school for school in affiliated if school)) or listing.scope,
            # The v1 listing returns active staff only: without a status field, 1. A status
            # field, when sent, wins, and one sent as "" (NULL) stays unknown (never active).
            "status": _integer(record.get("status")) if "status" in record else 1,
        }

    def read_changed(plan: incremental.ReadPlan) -> dict[str, Any]:
        # A changed teacher is asked of every selected school it was affiliated with in the
        # base run and of its home school (affiliations live in the v1 record, not the table).
        changed, cursor = incremental.changed_rows(hook, "teachers", ("dcid", "schoolid"), plan)
        numbers = _school_numbers(hook, schools)
        affiliated = {
            staff_id: (affiliations or "").split(",")
            for staff_id, affiliations in incremental.staged_values(
                engine, config.district_id, plan.base_run_id or "", "staff", "staff_id", "school_ids"
            )
        }
        selected = set(schools)
        ids_by_school: dict[str, set[str]] = {}
        for row in changed:
            staff_id = id_string(row.get("dcid"))
            if staff_id is None:
                continue
            home = numbers.get(id_string(row.get("schoolid")) or "")
            for school in {home, *affiliated.get(staff_id, [])}:
                if school in selected:
                    ids_by_school.setdefault(school, set()).add(staff_id)
        return incremental.per_school_changes(
            hook,
            engine,
            config,
            run_id,
            "staff",
            plan,
            schools,
            changed=changed,
            cursor_reads=[cursor],
            ids_by_school=ids_by_school,
            listing_for=listing_for,
            build=build,
            ids_per_read=hook.max_page_size("staff") - 1,
        )

    def read_full(plan: incremental.ReadPlan) -> dict[str, Any]:
        listings = [listing_for(school) for school in schools]
        staging = EntityStaging(engine, config, run_id, "staff")
        staging.clear(schools)
        _stage_listings(hook, staging, listings, build, page_by_page=True)
        notes = {
            scope: [f"{count} staff already staged under another selected school"] for scope, count in shared.items()
        }
        if plan.fallback and schools:
            notes.setdefault(schools[0], []).insert(0, plan.note)
        summaries = _scope_summaries(listings, staging.written, notes)
        staging.write_counts(summaries)
        return _result(hook, "staff", summaries)

    return incremental.read_with_plan(
        hook, engine, config, run_id, "staff", school_ids is not None, read_changed, read_full
    )
