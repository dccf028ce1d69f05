"""Staff: the active staff of the selected schools, once each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.extract.listing import (
    _result,
    _scope_summaries,
    _stage_listings,
)
from sis_learning.extract.schools import (
    _schools_in_scope,
)
from sis_learning.extract.values import _integer, _nested, _text
from sis_learning.extract.writer import EntityStaging
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string

STAFF_EXPANSIONS = "emails,school_affiliations"


def extract_staff(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the active staff of the selected schools, once each.

    A teacher affiliated with several selected schools is listed by each of them; the row
    is staged under the first school that lists it (the others' ``extract_counts`` note
    how many they shared). Call it once for all schools rather than mapped per school.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    listings = [
        hook.v1_listing(school, f"/ws/v1/school/{school}/staff", wrapper="staffs", item="staff", resource="staff", params={"expansions": STAFF_EXPANSIONS})
        for school in schools
    ]
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
            if isinstance(item, Mapping) and ("status" not in item or _integer(item.get("status")) == 1)
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

    staging = EntityStaging(engine, config, run_id, "staff")
    staging.clear(schools)
    _stage_listings(hook, staging, listings, build, page_by_page=True)
    notes = {scope: [f"{count} staff already staged under another selected school"] for scope, count in shared.items()}
    summaries = _scope_summaries(listings, staging.written, notes)
    staging.write_counts(summaries)
    return _result(hook, "staff", summaries)
