"""The entities of the integration, each described once: what is read from PowerSchool and
what is written to Learning.

Every module that needs a list of entities, or a fact about one, reads it from here
instead of keeping its own list: extract (the extract function and the page-size
resource), staging (the staged table), validate (the order of its results and how a
blocked row is named), transform (which mapping spec fills which Learning table from which
staged entity), diff (key and compared fields), the Learning hook (key fields) and load
(load order, references, labels). Adding an entity is one entry here plus its own code
(a staged model, an extract function, a mapping spec).

This module imports nothing of the package, so any module may import it. Models and
functions are named by attribute name and resolved by their own modules
(``staging.source``, ``staging.learning``, ``extract``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceEntity:
    """One PowerSchool entity, as staged by the extract.

    ``name`` is the entity's name in task ids, ``extract_counts``, ``raw_records`` and the
    quality tables; ``staged_model`` the class in ``staging.source``; ``extract_function``
    the function in ``sis_learning.extract``; ``page_size_resource`` the metadata resource
    whose maximum page size bounds its main read; ``extracted_by_task`` whether it has an
    ``extract.<name>`` task (schools are read by ``start``); ``blocked_label`` how validate
    names its rows held back by another row's failure; ``preparation_columns`` the staged
    columns transform reads beyond what the mapping specs read.
    """

    name: str
    staged_model: str
    extract_function: str
    page_size_resource: str
    extracted_by_task: bool = True
    blocked_label: str | None = None
    preparation_columns: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Reference:
    """A Learning row's pointer at another Learning row (what Learning refuses it without).

    The referred key is the row's ``field``; a user's key is ``<user_type>:<external_id>``,
    the type fixed (``user_type``: a class's teacher is a T) or read from the row
    (``user_type_field``).
    """

    entity: str
    field: str
    user_type: str | None = None
    user_type_field: str | None = None

    def key(self, payload: dict) -> str:
        value = payload.get(self.field)
        if self.user_type is not None:
            return f"{self.user_type}:{value}"
        if self.user_type_field is not None:
            return f"{payload.get(self.user_type_field)}:{value}"
        return str(value)


@dataclass(frozen=True)
class LearningEntity:
    """One Learning entity, in load (dependency) order.

    ``key_fields`` key a row in Learning's API and in the snapshot; a change in any of
    ``compared_fields`` is an update; ``sent_only_fields`` are sent but not compared;
    ``vanished_action`` is what happens to a key that left the import (None: left alone,
    ``deactivate`` or ``remove``); ``table_model`` the class in ``staging.learning``;
    ``labels`` (singular, plural) name its rows in reports; ``references`` what Learning
    refuses a row without.
    """

    name: str
    key_fields: tuple[str, ...]
    compared_fields: tuple[str, ...]
    table_model: str
    labels: tuple[str, str]
    sent_only_fields: tuple[str, ...] = ()
    vanished_action: str | None = None
    references: tuple[Reference, ...] = ()


@dataclass(frozen=True)
class MappingSpecEntity:
    """A mapping spec (include/mappings/<name>.csv): the Learning entity whose table it
    fills and the staged entity whose rows it maps."""

    name: str
    learning_entity: str
    source_entity: str


# In extract order: an entity's extract may read what an earlier one staged.
SOURCE_ENTITIES: tuple[SourceEntity, ...] = (
    SourceEntity(
        "schools",
        "StgSchool",
        "extract_schools",
        "school",
        extracted_by_task=False,
        preparation_columns=frozenset({"school_id", "school_number"}),
    ),
    SourceEntity("terms", "StgTerm", "extract_terms", "schema_table_query"),
    SourceEntity(
        "courses",
        "StgCourse",
        "extract_courses",
        "course",
        preparation_columns=frozenset({"course_id", "course_name", "course_number"}),
    ),
    SourceEntity(
        "sections",
        "StgSection",
        "extract_sections",
        "section",
        blocked_label="class(es)",
        preparation_columns=frozenset({"section_id", "course_id", "staff_id"}),
    ),
    SourceEntity(
        "staff",
        "StgStaff",
        "extract_staff",
        "staff",
        blocked_label="teacher(s)",
        preparation_columns=frozenset({"staff_id", "school_id", "school_ids", "teacher_username"}),
    ),
    SourceEntity(
        "students",
        "StgStudent",
        "extract_students",
        "student",
        blocked_label="student(s)",
        preparation_columns=frozenset({"student_id", "student_username", "school_id"}),
    ),
    SourceEntity(
        "section_enrollments",
        "StgSectionEnrollment",
        "extract_section_enrollments",
        "schema_table_query",
        blocked_label="student roster row(s)",
        preparation_columns=frozenset({"enrollment_id"}),
    ),
    SourceEntity(
        "section_teachers",
        "StgSectionTeacher",
        "extract_section_teachers",
        "schema_table_query",
        blocked_label="teacher and co-teacher roster row(s)",
        preparation_columns=frozenset({"section_id", "staff_id"}),
    ),
    SourceEntity(
        "guardians",
        "StgGuardian",
        "extract_guardians",
        "schema_table_query",
        blocked_label="parent(s)",
        preparation_columns=frozenset({"guardian_id", "student_id", "portal_username"}),
    ),
)
SOURCE_ENTITY = {entity.name: entity for entity in SOURCE_ENTITIES}

# Validate also judges parent links (a guardian's link to one child), derived from the
# guardian rows: its results and quality tables list the entities in this order.
VALIDATED_ENTITIES: tuple[str, ...] = (
    "schools",
    "terms",
    "courses",
    "staff",
    "students",
    "guardians",
    "sections",
    "section_enrollments",
    "section_teachers",
    "parent_links",
)
# How validate names rows held back by another row's failure, in the order a reason lists them.
BLOCKED_LABELS: dict[str, str] = {
    **{
        name: SOURCE_ENTITY[name].blocked_label
        for name in ("staff", "students", "sections", "section_enrollments", "section_teachers", "guardians")
    },
    "parent_links": "parent link(s)",
}

# In dependency order: Learning refuses a class whose teacher does not exist, and a roster
# row whose class or user does not exist.
LEARNING_ENTITIES: tuple[LearningEntity, ...] = (
    LearningEntity(
        "organizations",
        ("organization_id",),
        ("organization_id", "name"),
        "LearningOrganization",
        ("organization", "organizations"),
    ),
    # A user is identified by type and external id: a student, a teacher and a parent may carry
    # the same number (PowerSchool keeps one id sequence per table). Their key is "S:5".
    LearningEntity(
        "users",
        ("user_type", "external_id"),
        (
            "external_id",
            "first_name",
            "last_name",
            "login",
            "email",
            "user_type",
            "organization_id",
            "enabled",
            "sso_email_address",
        ),
        "LearningUser",
        ("user", "users"),
        # "Imported passwords are temporary" only matters when Learning creates the
        # user, so flipping it does not touch every user.
        sent_only_fields=("password_temporary",),
        vanished_action="deactivate",
    ),
    LearningEntity(
        "user_levels",
        ("external_id",),
        ("external_id", "level_id"),  # a student's
        "LearningUserLevel",
        ("user level", "user levels"),
        references=(Reference("users", "external_id", user_type="S"),),
    ),
    LearningEntity(
        "classes",
        ("class_id",),
        ("class_id", "name", "code", "year", "teacher_id", "organization_id"),
        "LearningClass",
        ("class", "classes"),
        references=(Reference("users", "teacher_id", user_type="T"),),
    ),
    LearningEntity(
        "rosters",
        ("class_id", "user_type", "user_id"),
        ("class_id", "user_type", "user_id", "role"),
        "LearningRoster",
        ("roster row", "roster rows"),
        vanished_action="remove",
        references=(Reference("classes", "class_id"), Reference("users", "user_id", user_type_field="user_type")),
    ),
    LearningEntity(
        "parent_links",
        ("parent_id", "child_id"),
        ("parent_id", "child_id"),
        "LearningParentLink",
        ("parent link", "parent links"),
        vanished_action="remove",
        references=(Reference("users", "parent_id", user_type="P"), Reference("users", "child_id", user_type="S")),
    ),
)
LEARNING_ENTITY = {entity.name: entity for entity in LEARNING_ENTITIES}

MAPPING_SPECS: tuple[MappingSpecEntity, ...] = (
    MappingSpecEntity("organizations", "organizations", "schools"),
    MappingSpecEntity("users_teachers", "users", "staff"),
    MappingSpecEntity("users_students", "users", "students"),
    MappingSpecEntity("users_parents", "users", "guardians"),
    MappingSpecEntity("user_levels", "user_levels", "students"),
    MappingSpecEntity("classes", "classes", "sections"),
    MappingSpecEntity("rosters_teachers", "rosters", "sections"),
    # co-teachers and parent links are section teacher and guardian rows
    MappingSpecEntity("rosters_co_teachers", "rosters", "section_teachers"),
    MappingSpecEntity("rosters_students", "rosters", "section_enrollments"),
    MappingSpecEntity("parent_links", "parent_links", "guardians"),
)
