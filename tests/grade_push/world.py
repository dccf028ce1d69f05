"""A grade-push world for tests and the measurement script: real sandboxes, a staged import.

``World`` ties together a running PowerSchool simulator (its PowerTeacher Pro ``/ws/xte``
endpoints and read-back helpers), a domain of the running reference Learning server, and
a staging database in the state the import DAG leaves it in: the district's classes in
``learning_snapshot`` (entity ``classes``), a successful import run in ``sync_runs``, and
its ``stg_staff`` (the teachers' ``users_dcid``) and ``stg_terms``. Learning gets the
same organizations, users, classes and rosters through its API, as the load would send
them. Sections come from the simulator's own dataset, so ids line up on both sides.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.grade_push import PushSummary, push_grades
from sis_learning.hooks.http_client import RetryPolicy
from sis_learning.hooks.learning import LearningHook
from sis_learning.hooks.powerschool import PowerSchoolHook
from sis_learning.hooks.powerteacher import PowerTeacherClient
from sis_learning.staging.changes import LearningSnapshot
from sis_learning.staging.runs import SyncRun, utcnow
from sis_learning.staging.source import StgSection, StgStaff, StgTerm

IMPORT_RUN_ID = "scheduled__import_for_grade_push"


@dataclass(frozen=True)
class Section:
    section_dcid: str
    school_dcid: str
    term_dcid: str
    term_local_id: str
    teacher_dcid: str
    users_dcid: str
    students: tuple[str, ...]
    course_number: str = ""


def dataset_sections(database_path: Any, *, min_students: int = 1) -> list[Section]:
    """Sections of the simulator's dataset with an active lead teacher and enrolled students."""
    connection = sqlite3.connect(f"file:{database_path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(
            "SELECT se.id, se.dcid, se.course_number, sc.dcid AS school_dcid, te.dcid AS term_dcid, te.id AS term_id, "
            "t.dcid AS teacher_dcid, t.users_dcid FROM sections se "
            "JOIN teachers t ON t.id = se.teacher AND t.status = 1 "
            "JOIN schools sc ON sc.school_number = se.schoolid "
            "JOIN terms te ON te.id = se.termid AND te.schoolid = se.schoolid ORDER BY se.dcid"
        ).fetchall()
        sections = []
        for row in rows:
            students = tuple(
                str(value)
                for (value,) in connection.execute(
                    "SELECT DISTINCT st.dcid FROM cc JOIN students st ON st.id = cc.studentid WHERE cc.sectionid = ? "
                    "ORDER BY st.dcid",
                    (row["id"],),
                )
            )
            if len(students) >= min_students:
                sections.append(
                    Section(
                        str(row["dcid"]),
                        str(row["school_dcid"]),
                        str(row["term_dcid"]),
                        str(row["term_id"]),
                        str(row["teacher_dcid"]),
                        str(row["users_dcid"]),
                        students,
                        str(row["course_number"]),
                    )
                )
        return sections
    finally:
        connection.close()


def district_config(district_id: str = "gp_test", **grade_push: Any) -> DistrictConfig:
    return DistrictConfig.model_validate(
        {
            "district_id": district_id,
            "name": f"Grade Push Test District {district_id}",
            "powerschool": {"connection_id": f"powerschool_{district_id}"},
            "learning": {"connection_id": f"learning_{district_id}"},
            "import_start_year": 2025,
            "grade_push": {"enabled": True, **grade_push},
            "notifications": {
                "failure_emails": ["grades@district.example.org"],
                "smtp_connection_id": f"smtp_{district_id}",
            },
        }
    )


@dataclass
class World:
    powerschool: Any  # sandbox.powerschool.testing.PowerSchoolSandbox
    learning: Any  # sandbox.learning.testing.LearningSandbox
    domain: str
    engine: Engine
    config: DistrictConfig
    sections: list[Section] = field(default_factory=list)

    # ---- the pipeline's clients (as the DAG builds them, from plain settings)

    def learning_hook(self) -> LearningHook:
        return LearningHook.from_settings(
            self.learning.base_url, self.learning.tokens[self.domain], self.learning.ca_bundle
        )

    def powerschool_hook(self, **options: Any) -> PowerSchoolHook:
        options.setdefault("retry_policy", RetryPolicy(max_retries=8, base_delay_seconds=0.05, max_delay_seconds=0.5))
        return PowerSchoolHook.from_settings(
            self.powerschool.base_url,
            self.powerschool.client_id,
            self.powerschool.client_secret,
            self.powerschool.ca_bundle,
            **options,
        )

    def powerteacher(self, **options: Any) -> PowerTeacherClient:
        return PowerTeacherClient(self.powerschool_hook(**options))

    def push(
        self,
        run_id: str = "run_1",
        *,
        powerteacher: Any = None,
        learning: Any = None,
        notify: bool = False,
        **options: Any,
    ) -> PushSummary:
        return push_grades(
            self.config,
            self.engine,
            learning or self.learning_hook(),
            powerteacher or self.powerteacher(),
            run_id,
            notify=notify,
            **options,
        )

    # ---- the imported state

    def import_sections(
        self,
        sections: list[Section],
        *,
        stage: bool = True,
        extra_students: dict[str, list[str]] | None = None,
        legacy: bool = False,
    ) -> None:
        """Put sections into Learning (as the load does) and, with ``stage``, into staging (as the import leaves it).

        ``legacy``: the sections are on the legacy PowerTeacher Gradebook (``gradebooktype`` 1) in the
        simulator, and staged so, as the import's extract would stage them.
        """
        extra_students = extra_students or {}
        if legacy:
            for section in sections:
                self.powerschool.set_gradebook_type(int(section.section_dcid), 1)
        organizations = sorted({section.school_dcid for section in sections})
        self.learning.upsert(
            self.domain,
            "organizations",
            [{"organization_id": school, "name": f"School {school}"} for school in organizations],
        )
        users: dict[str, dict[str, Any]] = {}
        for section in sections:
            users[section.teacher_dcid] = {
                "external_id": section.teacher_dcid,
                "first_name": "Teacher",
                "last_name": section.teacher_dcid,
                "login": f"t{section.teacher_dcid}",
                "user_type": "T",
                "organization_id": section.school_dcid,
            }
            for student in (*section.students, *extra_students.get(section.section_dcid, [])):
                users.setdefault(
                    student,
                    {
                        "external_id": student,
                        "first_name": "Student",
                        "last_name": student,
                        "login": f"s{student}",
                        "user_type": "S",
                        "organization_id": section.school_dcid,
                    },
                )
        rows = list(users.values())
        for start in range(0, len(rows), 1000):
            self.learning.upsert(self.domain, "users", rows[start : start + 1000])
        classes = [self.class_row(section) for section in sections]
        self.learning.upsert(self.domain, "classes", classes)
        rosters = [
            {"class_id": section.section_dcid, "user_type": "S", "user_id": student, "role": "student"}
            for section in sections
            for student in (*section.students, *extra_students.get(section.section_dcid, []))
        ]
        for start in range(0, len(rosters), 1000):
            self.learning.upsert(self.domain, "rosters", rosters[start : start + 1000])
        if stage:
            self.stage_import(sections, gradebook_type="1" if legacy else "2")
        self.sections.extend(sections)

    @staticmethod
    def class_row(section: Section) -> dict[str, Any]:
        return {
            "class_id": section.section_dcid,
            "name": f"Class {section.section_dcid}",
            "code": "C",
            "year": section.term_dcid,
            "teacher_id": section.teacher_dcid,
            "organization_id": section.school_dcid,
        }

    def stage_import(self, sections: list[Section], gradebook_type: str = "2") -> None:
        district_id = self.config.district_id
        now = utcnow()
        with self.engine.begin() as connection:
            if (
                connection.execute(
                    SyncRun.__table__.select().where(
                        SyncRun.district_id == district_id, SyncRun.run_id == IMPORT_RUN_ID
                    )
                ).first()
                is None
            ):
                connection.execute(
                    SyncRun.__table__.insert(),
                    [
                        {
                            "district_id": district_id,
                            "run_id": IMPORT_RUN_ID,
                            "dag_id": self.config.import_dag_id,
                            "kind": "import",
                            "status": "success",
                            "stage": "finished",
                            "started_at": now,
                            "finished_at": now,
                            "counts": {},
                            "durations": {},
                        }
                    ],
                )
            staff = {section.teacher_dcid: section.users_dcid for section in sections}
            connection.execute(
                StgStaff.__table__.insert(),
                [
                    {
                        "district_id": district_id,
                        "run_id": IMPORT_RUN_ID,
                        "staff_id": staff_id,
                        "users_dcid": users_dcid,
                        "status": 1,
                    }
                    for staff_id, users_dcid in staff.items()
                ],
            )
            terms = {section.term_dcid: section.term_local_id for section in sections}
            connection.execute(
                StgTerm.__table__.insert(),
                [
                    {"district_id": district_id, "run_id": IMPORT_RUN_ID, "term_id": term_id, "local_id": local_id}
                    for term_id, local_id in terms.items()
                ],
            )
            connection.execute(
                StgSection.__table__.insert(),
                [
                    {
                        "district_id": district_id,
                        "run_id": IMPORT_RUN_ID,
                        "section_id": section.section_dcid,
                        "school_id": section.school_dcid,
                        "term_id": section.term_dcid,
                        "staff_id": section.teacher_dcid,
                        "gradebook_type": gradebook_type,
                    }
                    for section in sections
                ],
            )
            connection.execute(
                LearningSnapshot.__table__.insert(),
                [
                    {
                        "district_id": district_id,
                        "entity": "classes",
                        "key": section.section_dcid,
                        "organization_id": section.school_dcid,
                        "content_hash": "staged-by-test",
                        "payload": json.dumps(self.class_row(section)),
                        "active": True,
                        "run_id": IMPORT_RUN_ID,
                        "updated_at": now,
                    }
                    for section in sections
                ],
            )

    # ---- the teacher's side of Learning

    def gradable(self, section: Section, title: str, total_points: float = 10, **fields: Any) -> dict[str, Any]:
        return self.learning.create_gradable(self.domain, section.section_dcid, title, total_points, **fields)

    def gradable_in(self, class_id: str, title: str, total_points: float = 10, **fields: Any) -> dict[str, Any]:
        return self.learning.create_gradable(self.domain, class_id, title, total_points, **fields)

    def score(self, gradable: dict[str, Any], student: str, value: str | None) -> dict[str, Any]:
        return self.learning.set_score(self.domain, gradable["id"], student, value)

    # ---- PowerTeacher read-back

    def assignments(self, section: Section) -> list[dict[str, Any]]:
        """[(assignment, its section entry)] of this section, flattened to the section entries."""
        entries = []
        for assignment in self.powerschool.assignments(int(section.section_dcid)):
            for entry in assignment["_assignmentsections"]:
                if str(entry["sectionsdcid"]) == section.section_dcid:
                    entries.append(
                        {
                            **entry,
                            "assignmentid": assignment["assignmentid"],
                            "standardcalcdirection": assignment["standardcalcdirection"],
                        }
                    )
        return entries

    def ptg_assignments(self, section: Section) -> list[dict[str, Any]]:
        return self.powerschool.ptg_assignments(int(section.section_dcid))

    def ptg_scores_by_name(self, section: Section) -> dict[tuple[str, str], str | None]:
        return {
            (assignment["name"], str(score["student"]["id"])): score["score_entered"]
            for assignment in self.ptg_assignments(section)
            for score in assignment["_assignment_scores"]
        }

    def scores_by_name(self, section: Section) -> dict[tuple[str, str], str]:
        """(assignment name, student dcid) -> the score PowerTeacher holds."""
        return {
            (entry["name"], str(score["studentsdcid"])): score["actualscoreentered"]
            for entry in self.assignments(section)
            for score in entry["_assignmentscores"]
        }
