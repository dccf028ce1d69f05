"""A deterministic district of Learning-shaped rows, written as a transform would write them.

The load tests (and bench/load) need runs of ``learning_*`` rows of any size without
running extract/validate/transform: ``LearningDistrict`` builds them from a few counts,
can be changed between runs (a student enrolled, one dropped, a rename, a whole school
re-keyed), and ``write_run`` stores a run through the staging layer's bulk insert.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.staging.base import bulk_insert, create_all, delete_run_rows
from sis_learning.staging.learning import LEARNING_TABLES

DISTRICT_ID = "loadtest"


def make_config(district_id: str = DISTRICT_ID, **overrides: Any) -> DistrictConfig:
    settings: dict[str, Any] = {
        "district_id": district_id,
        "name": "Load Test District",
        "powerschool": {"connection_id": "powerschool_loadtest"},
        "learning": {"connection_id": "learning_loadtest", "batch_size": 1000},
        "import_start_year": 2025,
        "default_password": "env:LOADTEST_DEFAULT_PASSWORD",
        "imported_passwords_temporary": True,
    }
    for name, value in overrides.items():
        if isinstance(value, dict) and isinstance(settings.get(name), dict):
            settings[name] = {**settings[name], **value}
        else:
            settings[name] = value
    return DistrictConfig.model_validate(settings)


@dataclass
class LearningDistrict:
    """Rows per Learning entity, keyed like Learning keys them (dicts of column -> value)."""

    organizations: dict[str, dict] = field(default_factory=dict)
    users: dict[str, dict] = field(default_factory=dict)
    user_levels: dict[str, dict] = field(default_factory=dict)
    classes: dict[str, dict] = field(default_factory=dict)
    rosters: dict[str, dict] = field(default_factory=dict)
    parent_links: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def generate(
        cls,
        schools: int = 2,
        students_per_school: int = 40,
        teachers_per_school: int = 4,
        classes_per_teacher: int = 2,
        students_per_class: int = 10,
        parents: bool = True,
    ) -> LearningDistrict:
        district = cls()
        for school_index in range(schools):
            school = str(100 + school_index)
            district.organizations[school] = {"organization_id": school, "name": f"School {school}"}
            teachers = []
            for teacher_index in range(teachers_per_school):
                teacher = f"2{school_index:03d}{teacher_index:04d}"
                teachers.append(teacher)
                district.add_user(teacher, "T", school, f"Teacher{teacher_index}", f"Staff{school}")
            students = []
            for student_index in range(students_per_school):
                student = f"3{school_index:03d}{student_index:06d}"
                students.append(student)
                district.add_user(student, "S", school, f"Student{student_index}", f"Family{school}x{student_index}")
                district.user_levels[student] = {"external_id": student, "level_id": str(student_index % 12 + 1)}
                if parents and student_index % 2 == 0:
                    parent = f"4{school_index:03d}{student_index:06d}"
                    district.add_user(parent, "P", school, f"Parent{student_index}", f"Family{school}x{student_index}")
                    district.parent_links[f"{parent}:{student}"] = {"parent_id": parent, "child_id": student}
            for teacher_index, teacher in enumerate(teachers):
                for class_index in range(classes_per_teacher):
                    class_id = f"5{school_index:03d}{teacher_index:03d}{class_index:03d}"
                    district.classes[class_id] = {
                        "class_id": class_id,
                        "name": f"Course {class_id} ({class_index + 1}) - 1(A)",
                        "code": f"C{class_index}",
                        "year": "3500",
                        "teacher_id": teacher,
                        "organization_id": school,
                    }
                    district.add_roster(class_id, teacher, "teacher")
                    first = (teacher_index * classes_per_teacher + class_index) * students_per_class
                    for offset in range(students_per_class):
                        district.add_roster(class_id, students[(first + offset) % len(students)], "student")
        return district

    def add_user(
        self, external_id: str, user_type: str, school: str, first: str, last: str, email: str | None = None
    ) -> dict:
        row = {
            "external_id": external_id,
            "first_name": first,
            "last_name": last,
            "login": f"{first.lower()}.{last.lower()}.{external_id}",
            "email": email or f"u{external_id}@example.org",
            "user_type": user_type,
            "organization_id": school,
            "enabled": True,
            "sso_email_address": None,
            "password_temporary": True,
            "login_generated": False,
        }
        self.users[external_id] = row
        return row

    def add_roster(self, class_id: str, user_id: str, role: str) -> None:
        user_type = "S" if role == "student" else "T"
        self.rosters[f"{class_id}:{user_type}:{user_id}"] = {
            "class_id": class_id,
            "user_type": user_type,
            "user_id": user_id,
            "role": role,
        }

    def remove_user(self, external_id: str) -> None:
        """A user leaving the import, with everything that points at them."""
        self.users.pop(external_id)
        self.user_levels.pop(external_id, None)
        for key in [key for key, row in self.rosters.items() if row["user_id"] == external_id]:
            del self.rosters[key]
        for key in [
            key for key, row in self.parent_links.items() if external_id in (row["parent_id"], row["child_id"])
        ]:
            del self.parent_links[key]

    def copy(self) -> LearningDistrict:
        return copy.deepcopy(self)

    def tables(self) -> Iterator[tuple[str, list[dict]]]:
        for entity in LEARNING_TABLES:
            yield entity, list(getattr(self, entity).values())

    def students_of(self, school: str) -> list[str]:
        return [key for key, row in self.users.items() if row["user_type"] == "S" and row["organization_id"] == school]


def write_run(engine: Engine, district: LearningDistrict, run_id: str, district_id: str = DISTRICT_ID) -> None:
    """Store a run's learning_* rows as transform would (its own rows replaced)."""
    create_all(engine)
    with engine.begin() as connection:
        for entity, rows in district.tables():
            table = LEARNING_TABLES[entity]
            delete_run_rows(connection, table, district_id, run_id)
            bulk_insert(connection, table, [{"district_id": district_id, "run_id": run_id, **row} for row in rows])
