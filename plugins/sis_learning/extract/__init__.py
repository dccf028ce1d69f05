"""Extract: one function per PowerSchool entity, streamed page by page into staging.

Implements the "what is imported" half of the source document's PowerSchool SIS
integration for the district's selected schools ("Select the School(s) that you want to
import data from, and set the Import Start Year"): schools, terms, courses, sections of
terms from the import start year on, active staff, active students with their
enrollment and contact email (the Student Mappings table), section enrollments and
co-teachers (rosters), and guardians with their Parent Portal account (skipped when
the district ignores parents). Extract reads and stages; it decides nothing: the rules
that leave rows out or fail them run in validate.

Every function has the shape ``extract_<entity>(hook, engine, config, run_id,
school_ids=None) -> dict`` and returns counts only (XCom carries counts, never data).
Rows go to ``raw_records`` (each record's JSON as received, lists normalised) and the
typed ``stg_<entity>`` table one page at a time; nothing holds an entity whole in memory
(only id translation maps of a few strings per student/section are kept). Before
writing, a function deletes its own ``(district, run, entity, scope)`` rows, so a
retried task never duplicates. ``extract_counts`` gets one row per entity and scope:
rows read, what ``/count`` reported, requests, pages and any mismatch. See
docs/extract.md.

The package, by concern ("where does a student's email come from?" is one file):

- ``listing``: the listing and paging strategy (staging listings page by page, table
  reads over the selected schools, summaries, ``minimum_requests``);
- ``writer``: ``EntityStaging``, the page writer, and each entity's own-id problems;
- ``values``: PowerSchool's value shapes (text, integers, booleans, dates);
- one module per entity family: ``schools`` (schools, terms, courses), ``sections``
  (sections, section enrollments, section teachers), ``staff``, ``students``,
  ``guardians``.

Everything public is re-exported here: ``from sis_learning import extract;
extract.extract_students(...)`` keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sis_learning.entities import SOURCE_ENTITIES
from sis_learning.exceptions import ExtractOrderError, UnknownSchoolError
from sis_learning.extract.guardians import (
    GUARDIAN_COLUMNS,
    GUARDIAN_QUERY,
    GUARDIAN_QUERY_STUDENTS_PER_CALL,
    extract_guardians,
)
from sis_learning.extract.listing import (
    PAGE_SIZE_RESOURCE,
    SPLIT_TABLE_READ_ABOVE_PAGES,
    SchoolTableRead,
    minimum_requests,
)
from sis_learning.extract.schools import (
    TERM_COLUMNS,
    TERM_ID_YEAR_BASE,
    TERMS_TABLE_FROM_SCHOOLS,
    extract_courses,
    extract_schools,
    extract_terms,
    selected_school_ids,
)
from sis_learning.extract.sections import extract_section_enrollments, extract_section_teachers, extract_sections
from sis_learning.extract.staff import STAFF_EXPANSIONS, extract_staff
from sis_learning.extract.students import STUDENT_EXPANSIONS, extract_students
from sis_learning.extract.values import MISSING_SOURCE_ID, NON_INTEGER_SOURCE_ID, iso_date, source_id_problem
from sis_learning.staging.writer import DISTRICT_SCOPE, DUPLICATE_SOURCE_ID, SOURCE_KEYS, EntityStaging, raw_json

ENTITY_EXTRACTS: dict[str, Callable[..., dict[str, Any]]] = {
    entity.name: globals()[entity.extract_function] for entity in SOURCE_ENTITIES
}
"""Entity name -> extract function, in an order that satisfies their dependencies."""

__all__ = [
    "DISTRICT_SCOPE",
    "DUPLICATE_SOURCE_ID",
    "ENTITY_EXTRACTS",
    "GUARDIAN_COLUMNS",
    "GUARDIAN_QUERY",
    "GUARDIAN_QUERY_STUDENTS_PER_CALL",
    "MISSING_SOURCE_ID",
    "NON_INTEGER_SOURCE_ID",
    "PAGE_SIZE_RESOURCE",
    "SOURCE_KEYS",
    "SPLIT_TABLE_READ_ABOVE_PAGES",
    "STAFF_EXPANSIONS",
    "STUDENT_EXPANSIONS",
    "TERMS_TABLE_FROM_SCHOOLS",
    "TERM_COLUMNS",
    "TERM_ID_YEAR_BASE",
    "EntityStaging",
    "ExtractOrderError",
    "SchoolTableRead",
    "UnknownSchoolError",
    "extract_courses",
    "extract_guardians",
    "extract_schools",
    "extract_section_enrollments",
    "extract_section_teachers",
    "extract_sections",
    "extract_staff",
    "extract_students",
    "extract_terms",
    "iso_date",
    "minimum_requests",
    "raw_json",
    "selected_school_ids",
    "source_id_problem",
]
