"""Students: active students with their school enrollment and contact email.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.extract.listing import (
    _run_extract,
)
from sis_learning.extract.schools import (
    _schools_in_scope,
)
from sis_learning.extract.values import _first, _integer, _nested, _text, iso_date
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string

STUDENT_EXPANSIONS = "school_enrollment,contact_info"


def extract_students(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the active students of the selected schools with enrollment and contact email.

    The v1 student listing returns students with an Active enrollment (enroll_status 0)
    by default, which is exactly what the source document imports.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    listings = [
        hook.v1_listing(school, f"/ws/v1/school/{school}/student", wrapper="students", item="student", resource="student", params={"expansions": STUDENT_EXPANSIONS})
        for school in schools
    ]

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
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

    return _run_extract(hook, engine, config, run_id, "students", listings, build)
