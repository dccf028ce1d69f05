"""Sandboxes shared by the grade-push tests: one PowerSchool simulator, one Learning server.

Each test gets its own Learning domain (its own change feed), its own staging database
and its own sections of the simulator's ``tiny`` district, so tests never see each
other's gradables, scores or PowerTeacher assignments.
"""

from __future__ import annotations

import itertools
import secrets

import pytest

from tests.grade_push.world import World, dataset_sections, district_config

# One domain per world: enough for every grade-push test (and its PostgreSQL variant) landing
# on a single xdist worker.
DOMAINS = [f"gp{index:03d}" for index in range(200)]


@pytest.fixture(scope="session")
def powerschool():
    from sandbox.powerschool.testing import running_powerschool

    with running_powerschool("tiny") as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def learning():
    from sandbox.learning.testing import running_learning

    with running_learning(domains={name: secrets.token_urlsafe(24) for name in DOMAINS}) as sandbox:
        yield sandbox


class SectionPool:
    """Sections with at least 3 students, each handed out once (never shared by two tests).

    When the dataset's own sections run out (the tiny district has about 30), a used one is
    cloned through the simulator's admin API: a new section of the same school, course,
    term and lead teacher, with the same students enrolled.
    """

    def __init__(self, sections, powerschool=None):
        self.sections = list(sections)
        self.used: set[str] = set()
        self.powerschool = powerschool

    def _matches(self, section, not_school, wanted) -> bool:
        return section.school_dcid != not_school and all(
            getattr(section, name) == value for name, value in wanted.items()
        )

    def _clone(self, template):
        import dataclasses

        created = self.powerschool.add_section(
            int(template.school_dcid), template.course_number, int(template.term_local_id), int(template.teacher_dcid)
        )
        for student in template.students:
            self.powerschool.enroll_student(int(student), created["section_dcid"])
        clone = dataclasses.replace(template, section_dcid=str(created["section_dcid"]))
        self.sections.append(clone)
        return clone

    def take(self, count: int = 1, *, not_school: str | None = None, **wanted: str):
        found = []
        for section in self.sections:
            if section.section_dcid in self.used or not self._matches(section, not_school, wanted):
                continue
            found.append(section)
            if len(found) == count:
                break
        templates = [
            section for section in self.sections if self._matches(section, not_school, wanted) and section.course_number
        ]
        while len(found) < count and templates and self.powerschool is not None:
            found.append(self._clone(templates[len(found) % len(templates)]))
        if len(found) < count:
            pytest.skip(f"the tiny dataset has no {count} unused section(s) with {wanted or 'students'}")
        self.used.update(section.section_dcid for section in found)
        return found


@pytest.fixture(scope="session")
def section_pool(powerschool):
    return SectionPool(dataset_sections(powerschool.dataset_path, min_students=3), powerschool)


_domains = itertools.count()


def _world(powerschool, learning, url, section_pool) -> World:
    from sis_learning.staging.base import create_all, get_engine

    domain = DOMAINS[next(_domains)]
    engine = create_all(get_engine(url))
    created = World(powerschool, learning, domain, engine, district_config())
    created.pool = section_pool  # type: ignore[attr-defined]
    return created


@pytest.fixture
def world(powerschool, learning, sqlite_url, section_pool):
    """A world on a SQLite staging database (the embedded default)."""
    return _world(powerschool, learning, sqlite_url, section_pool)


@pytest.fixture
def world_on_both(powerschool, learning, staging_url, section_pool):
    """A world on SQLite, then on a real PostgreSQL staging database (``staging_url``)."""
    return _world(powerschool, learning, staging_url, section_pool)
