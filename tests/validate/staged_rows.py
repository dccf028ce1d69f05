"""Hand-made staged source rows for validate and transform tests.

``StagedRun`` collects rows per stg_* table with realistic defaults (a selected school,
a 2025 year-long term, active people with usernames) and inserts them through the one
staging path (``staging.base.bulk_insert``). Tests state only what matters to them.
"""

from __future__ import annotations

from typing import Any

from sis_learning.config import DistrictConfig
from sis_learning.staging.base import bulk_insert
from sis_learning.staging.source import STAGED_SOURCE_TABLES

DISTRICT_ID = "test_district"
RUN_ID = "scheduled__2026-01-05T12:00:00+00:00"


def district_config(**overrides: Any) -> DistrictConfig:
    settings: dict[str, Any] = {
        "district_id": DISTRICT_ID,
        "name": "Test District",
        "powerschool": {"connection_id": "powerschool_test"},
        "learning": {"connection_id": "learning_test"},
        "import_start_year": 2025,
        "default_password": "env:TEST_DEFAULT_PASSWORD",
        "sso_domains": {"google": ["students.test.org"], "office365": ["test.org"]},
    }
    settings.update(overrides)
    return DistrictConfig.model_validate(settings)


class StagedRun:
    """Rows for one run, per staged entity; ``insert`` writes them."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {entity: [] for entity in STAGED_SOURCE_TABLES}

    def _add(self, entity: str, defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        row = {**defaults, **overrides}
        self.rows[entity].append(row)
        return row

    def school(self, school_id: str = "100", **overrides: Any) -> dict[str, Any]:
        return self._add(
            "schools",
            {
                "school_id": school_id,
                "school_number": f"1{school_id}",
                "name": f"School {school_id}",
                "low_grade": 0,
                "high_grade": 12,
            },
            overrides,
        )

    def term(
        self, term_id: str = "3500", start_year: int | None = 2025, start_date: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        year = start_year or 2025
        return self._add(
            "terms",
            {
                "term_id": term_id,
                "local_id": term_id,
                "school_id": "100",
                "name": "2025-2026",
                "abbreviation": "25-26",
                "start_year": start_year,
                "start_date": start_date or f"{year}-08-15",
                "end_date": f"{year + 1}-06-01",
                "portion": 1,
            },
            overrides,
        )

    def course(self, course_id: str = "700", **overrides: Any) -> dict[str, Any]:
        return self._add(
            "courses",
            {
                "course_id": course_id,
                "school_id": "100",
                "course_number": f"ENG{course_id}",
                "course_name": "English 9",
            },
            overrides,
        )

    def staff(self, staff_id: str, **overrides: Any) -> dict[str, Any]:
        return self._add(
            "staff",
            {
                "staff_id": staff_id,
                "local_id": staff_id,
                "users_dcid": staff_id,
                "first_name": "Pat",
                "middle_name": None,
                "last_name": f"Teacher{staff_id}",
                "teacher_username": f"teacher{staff_id}",
                "admin_username": None,
                "email": f"teacher{staff_id}@test.org",
                "school_id": "100",
                "school_ids": "100",
                "status": 1,
            },
            overrides,
        )

    def student(self, student_id: str, **overrides: Any) -> dict[str, Any]:
        return self._add(
            "students",
            {
                "student_id": student_id,
                "local_id": student_id,
                "student_number": student_id,
                "first_name": "Sam",
                "middle_name": None,
                "last_name": f"Student{student_id}",
                "student_username": f"student{student_id}",
                "email": f"student{student_id}@students.test.org",
                "school_id": "100",
                "grade_level": 9,
                "enroll_status": "A",
                "enroll_status_code": 0,
                "entry_date": "2025-08-15",
                "exit_date": "2026-06-01",
            },
            overrides,
        )

    def section(self, section_id: str, staff_id: str | None = "200", **overrides: Any) -> dict[str, Any]:
        return self._add(
            "sections",
            {
                "section_id": section_id,
                "local_id": section_id,
                "school_id": "100",
                "course_id": "700",
                "term_id": "3500",
                "section_number": "1",
                "expression": "1(A)",
                "external_expression": "P1",
                "staff_id": staff_id,
                "gradebook_type": "2",
            },
            overrides,
        )

    def enrollment(self, enrollment_id: str, section_id: str, student_id: str, **overrides: Any) -> dict[str, Any]:
        return self._add(
            "section_enrollments",
            {
                "enrollment_id": enrollment_id,
                "section_id": section_id,
                "student_id": student_id,
                "school_id": "100",
                "term_id": "3500",
                "entry_date": "2025-08-15",
                "exit_date": "2026-06-01",
                "dropped": False,
            },
            overrides,
        )

    def section_teacher(
        self, section_id: str, staff_id: str, role: str = "Co-teacher", **overrides: Any
    ) -> dict[str, Any]:
        return self._add(
            "section_teachers",
            {
                "section_id": section_id,
                "staff_id": staff_id,
                "role": role,
                "start_date": "2025-08-15",
                "end_date": "2026-06-01",
                "priority_order": 2,
            },
            overrides,
        )

    def guardian(self, guardian_id: str, student_id: str, **overrides: Any) -> dict[str, Any]:
        return self._add(
            "guardians",
            {
                "guardian_id": guardian_id,
                "student_id": student_id,
                "first_name": "Alex",
                "last_name": f"Parent{guardian_id}",
                "portal_username": f"parent{guardian_id}",
                "portal_enabled": True,
                "email": f"parent{guardian_id}@mail.example.com",
                "relationship": "Mother",
            },
            overrides,
        )

    def insert(self, engine: Any, run_id: str = RUN_ID, district_id: str = DISTRICT_ID) -> None:
        for entity, rows in self.rows.items():
            if rows:
                bulk_insert(
                    engine,
                    STAGED_SOURCE_TABLES[entity],
                    [{**row, "district_id": district_id, "run_id": run_id} for row in rows],
                )


def small_district() -> StagedRun:
    """One school, one term, one course, a teacher with a class of two students and a parent."""
    staged = StagedRun()
    staged.school("100")
    staged.term("3500")
    staged.course("700")
    staged.staff("200")
    staged.student("300")
    staged.student("301")
    staged.section("400", staff_id="200")
    staged.enrollment("500", "400", "300")
    staged.enrollment("501", "400", "301")
    staged.guardian("600", "300")
    return staged
