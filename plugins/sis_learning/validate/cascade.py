"""The checks across entities and the cascade of the source document.

"If the user fails and is the owner of a class, roster and class creation will also
fail." A failed teacher fails their classes and those classes' rosters, a failed student
their roster rows and parent links, each recorded with ``caused_by`` (the root failure);
``blocks`` summarises on the root row what it holds back. Also the co-teacher cap
("Co-Teachers will be imported into a maximum of 25 classes for each Teacher").
"""

from __future__ import annotations

import pandas as pd

from sis_learning.config import DistrictConfig
from sis_learning.entities import BLOCKED_LABELS
from sis_learning.validate.outcomes import (
    EXCLUDED,
    OK,
    REJECTED,
    EntityOutcome,
    lookup,
    numeric_id_order,
    value,
)
from sis_learning.validate.suites import CLASS_NAME_MAX_LENGTH

# How a blocked row is described in its root failure's ``blocks`` (sis_learning.entities).
BLOCKED_ORDER = {entity: position for position, entity in enumerate(BLOCKED_LABELS)}


def co_teacher_priority(placements: pd.DataFrame) -> pd.DataFrame:
    """Placements in the order the 25-class cap keeps them (docs/validation-and-mapping.md).

    Latest term first (term start date, then start year, descending: the current term
    before past ones), then section id ascending (numerically). Deterministic: the same
    staged rows always keep the same classes.
    """
    return (
        placements.assign(
            _start=placements["term_start_date"].fillna(""),
            _year=pd.to_numeric(placements["term_start_year"], errors="coerce").fillna(-1),
            _section=numeric_id_order(placements["section_id"]),
        )
        .sort_values(
            ["staff_id", "_start", "_year", "_section", "section_id"],
            ascending=[True, False, False, True, True],
            kind="stable",
        )
        .drop(columns=["_start", "_year", "_section"])
    )


def check_sections(sections: EntityOutcome, terms: EntityOutcome, courses: EntityOutcome, staff: EntityOutcome) -> None:
    frame = sections.frame
    # Only active teachers are imported, and a class comes over only with its teacher: a
    # section whose lead teacher is inactive (not among the active staff PowerSchool lists)
    # or left out by rule is excluded by design, not broken data. A lead teacher who FAILED
    # validation is a failure, and cascades below (teacher_rejected).
    teacher = lookup(frame["staff_id"], staff, "staff_id")
    sections.exclude(
        teacher["status"].isna() & frame["staff_id"].notna(),
        "teacher_not_active",
        "the section's lead teacher " + value(frame["staff_id"]) + " is not among the active staff "
        "PowerSchool returned (only active teachers, and their classes, are imported)",
    )
    sections.exclude(
        teacher["status"].eq(EXCLUDED),
        "teacher_not_imported",
        "the section's lead teacher " + value(frame["staff_id"]) + " is not imported: " + value(teacher["why"]),
    )
    term = lookup(frame["term_id"], terms, "term_id")
    sections.reject(
        term["status"].isna(),
        "term_reference",
        "the section's term " + value(frame["term_id"], "(none)") + " does not exist in PowerSchool's terms",
    )
    sections.reject(
        term["status"].eq(REJECTED),
        "term_rejected",
        "the section's term " + value(frame["term_id"]) + " failed: " + value(term["why"]),
        caused_by=term["root"],
    )
    course = lookup(frame["course_id"], courses, "course_id")
    sections.reject(
        course["status"].isna(),
        "course_reference",
        "the section's course " + value(frame["course_id"], "(none)") + " does not exist in PowerSchool's courses",
    )
    sections.reject(
        course["status"].eq(REJECTED),
        "course_rejected",
        "the section's course " + value(frame["course_id"]) + " failed: " + value(course["why"]),
        caused_by=course["root"],
    )
    course_rows = courses.frame.drop_duplicates("course_id").set_index("course_id")
    class_name = (
        frame["course_id"].map(course_rows["course_name"]).astype("string").fillna("")
        + " ("
        + frame["section_number"].fillna("")
        + ") - "
        + frame["expression"].fillna("")
    )
    sections.reject(
        class_name.str.len() > CLASS_NAME_MAX_LENGTH,
        "class_name_length",
        f"the class name (course name, section number and expression) is longer than the "
        f"{CLASS_NAME_MAX_LENGTH} characters Learning accepts",
    )
    sections.reject(
        teacher["status"].eq(REJECTED),
        "teacher_rejected",
        "the section's lead teacher " + value(frame["staff_id"]) + " failed: " + value(teacher["why"]),
        caused_by=teacher["root"],
    )


def check_enrollments(enrollments: EntityOutcome, sections: EntityOutcome, students: EntityOutcome) -> None:
    frame = enrollments.frame
    section = lookup(frame["section_id"], sections, "section_id")
    student = lookup(frame["student_id"], students, "student_id")
    enrollments.exclude(
        section["status"].eq(EXCLUDED),
        "section_not_imported",
        "the section " + value(frame["section_id"]) + " is not imported: " + value(section["why"]),
    )
    enrollments.exclude(
        student["status"].eq(EXCLUDED),
        "student_not_imported",
        "the student " + value(frame["student_id"]) + " is not imported: " + value(student["why"]),
    )
    pair = frame["section_id"].fillna("") + ":" + frame["student_id"].fillna("")
    # Duplicates among the enrollments still in: a student who dropped a section and was
    # enrolled in it again has a dropped row and a new one, and the new one is the enrollment.
    ok = enrollments.ok
    enrollments.exclude(
        pair.where(ok).duplicated(keep="first") & ok,
        "duplicate_enrollment",
        "the student is enrolled in this section more than once; the first enrollment is kept",
    )
    enrollments.reject(
        section["status"].isna() & frame["section_id"].notna(),
        "section_reference",
        "the section " + value(frame["section_id"]) + " does not exist in PowerSchool's sections",
    )
    enrollments.reject(
        student["status"].isna() & frame["student_id"].notna(),
        "student_reference",
        "the student " + value(frame["student_id"]) + " does not exist in PowerSchool's students",
    )
    enrollments.reject(
        section["status"].eq(REJECTED),
        "section_rejected",
        "the class " + value(frame["section_id"]) + " failed: " + value(section["why"]),
        caused_by=section["root"],
    )
    enrollments.reject(
        student["status"].eq(REJECTED),
        "student_rejected",
        "the student " + value(frame["student_id"]) + " failed: " + value(student["why"]),
        caused_by=student["root"],
    )


def ended_assignments(frame: pd.DataFrame, term_end: pd.Series, as_of: str | None) -> pd.Series:
    """SectionTeacher rows that have ended: the teacher no longer teaches the section.

    A row has ended when its end date is before the run's date (``as_of``, district time)
    or, for a term that is over, before the term's last day: the teacher left before the
    term ended (a lead teacher replaced mid-year, a co-teacher assignment that ended). A
    row without an end date has not ended. Dates are ``YYYY-MM-DD`` text, so they compare
    as text.
    """
    end = (
        frame["end_date"].astype("string").str.strip()
        if "end_date" in frame
        else pd.Series(pd.NA, index=frame.index, dtype="string")
    )
    cutoff = term_end.astype("string").str.strip().where(lambda dates: dates.ne(""))
    if as_of:
        cutoff = cutoff.where(cutoff.notna() & cutoff.lt(as_of), as_of)
    ended = end.notna() & end.ne("") & cutoff.notna() & end.lt(cutoff)
    return ended.fillna(False).astype(bool)


def check_section_teachers(
    config: DistrictConfig,
    frame: pd.DataFrame,
    sections: EntityOutcome,
    staff: EntityOutcome,
    terms: EntityOutcome,
    suite_failures: list,
    as_of: str | None = None,
) -> EntityOutcome:
    """Co-teachers: every current section teacher row but the section's lead teacher, capped per teacher.

    Current teachers only: a row that has ended (``ended_assignments``) is not rostered and
    does not count toward the co-teacher cap; a lead teacher replaced mid-year leaves an
    ended row behind, and the class follows the section's current lead (Sections.Teacher).
    """
    source_id = frame["section_id"].fillna("") + ":" + frame["staff_id"].fillna("")
    teachers = EntityOutcome("section_teachers", frame, source_id)
    frame = teachers.frame
    section_rows = sections.frame.drop_duplicates("section_id").set_index("section_id")
    lead = frame["section_id"].map(section_rows["staff_id"])
    # The lead teacher's own row is imported through the class (role teacher), not here.
    teachers.frame["is_lead"] = lead.notna() & lead.eq(frame["staff_id"]).fillna(False)
    section = lookup(frame["section_id"], sections, "section_id")
    member = lookup(frame["staff_id"], staff, "staff_id")
    teachers.exclude(
        section["status"].eq(EXCLUDED),
        "section_not_imported",
        "the section " + value(frame["section_id"]) + " is not imported: " + value(section["why"]),
    )
    teachers.exclude(
        member["status"].eq(EXCLUDED) & ~teachers.frame["is_lead"],
        "co_teacher_not_imported",
        "the co-teacher " + value(frame["staff_id"]) + " is not imported: " + value(member["why"]),
    )
    term_rows = terms.frame.drop_duplicates("term_id").set_index("term_id")
    section_term = frame["section_id"].map(section_rows["term_id"])
    term_end = (
        section_term.map(term_rows["end_date"])
        if "end_date" in term_rows
        else pd.Series(pd.NA, index=frame.index, dtype="string")
    )
    teachers.exclude(
        ended_assignments(frame, term_end, as_of),
        "section_teacher_ended",
        "the teacher's assignment to the section ended on "
        + value(frame["end_date"])
        + " (only current teachers are rostered)",
    )
    # Among the rows still in: an ended row listed first does not make the current one a repeat.
    teachers.exclude(
        source_id.where(teachers.ok).duplicated(keep="first") & teachers.ok,
        "duplicate_co_teacher",
        "the teacher is listed on this section more than once; the first row is kept",
    )
    teachers.apply_suite(suite_failures)
    teachers.reject(
        section["status"].isna() & frame["section_id"].notna(),
        "section_reference",
        "the section " + value(frame["section_id"]) + " does not exist in PowerSchool's sections",
    )
    teachers.reject(
        member["status"].isna() & frame["staff_id"].notna(),
        "staff_reference",
        "the co-teacher " + value(frame["staff_id"]) + " is not among the active staff PowerSchool returned",
    )
    teachers.reject(
        section["status"].eq(REJECTED),
        "section_rejected",
        "the class " + value(frame["section_id"]) + " failed: " + value(section["why"]),
        caused_by=section["root"],
    )
    teachers.reject(
        member["status"].eq(REJECTED) & ~teachers.frame["is_lead"],
        "staff_rejected",
        "the co-teacher " + value(frame["staff_id"]) + " failed: " + value(member["why"]),
        caused_by=member["root"],
    )

    placements = frame[teachers.ok & ~teachers.frame["is_lead"]][["section_id", "staff_id"]]
    term_id = placements["section_id"].map(section_rows["term_id"])
    placements = placements.assign(
        term_start_date=term_id.map(term_rows["start_date"]), term_start_year=term_id.map(term_rows["start_year"])
    )
    ranked = co_teacher_priority(placements)
    rank = ranked.groupby("staff_id", sort=False).cumcount() + 1
    over = rank[rank > config.co_teacher_class_limit].index
    mask = pd.Series(False, index=frame.index)
    mask[over] = True
    teachers.exclude(
        mask,
        "co_teacher_class_limit",
        "the co-teacher " + value(frame["staff_id"]) + f" already has {config.co_teacher_class_limit} "
        "classes (a co-teacher is placed in at most "
        f"{config.co_teacher_class_limit}; latest term first, then lowest section id)",
    )
    return teachers


def check_parent_links(
    frame: pd.DataFrame, guardians: EntityOutcome, students: EntityOutcome, suite_failures: list
) -> EntityOutcome:
    source_id = frame["guardian_id"].fillna("") + ":" + frame["student_id"].fillna("")
    links = EntityOutcome("parent_links", frame, source_id)
    frame = links.frame
    parent = lookup(frame["guardian_id"], guardians, "guardian_id")
    child = lookup(frame["student_id"], students, "student_id")
    links.exclude(
        parent["status"].eq(EXCLUDED),
        "parent_not_imported",
        "the parent " + value(frame["guardian_id"]) + " is not imported: " + value(parent["why"]),
    )
    links.exclude(
        child["status"].eq(EXCLUDED),
        "child_not_imported",
        "the student " + value(frame["student_id"]) + " is not imported: " + value(child["why"]),
    )
    links.exclude(
        source_id.duplicated(keep="first"),
        "duplicate_parent_link",
        "the parent-child link is listed more than once; the first row is kept",
    )
    links.apply_suite(suite_failures)
    links.reject(
        child["status"].isna() & frame["student_id"].notna(),
        "child_reference",
        "the student " + value(frame["student_id"]) + " does not exist in PowerSchool's students",
    )
    links.reject(
        parent["status"].eq(REJECTED),
        "parent_rejected",
        "the parent " + value(frame["guardian_id"]) + " failed: " + value(parent["why"]),
        caused_by=parent["root"],
    )
    links.reject(
        child["status"].eq(REJECTED),
        "child_rejected",
        "the student " + value(frame["student_id"]) + " failed: " + value(child["why"]),
        caused_by=child["root"],
    )

    # A parent is imported only with at least one imported child (links only between imported users).
    link_status = pd.DataFrame({"guardian_id": frame["guardian_id"], "status": links.status, "root": links.root})
    has_ok_child = link_status.loc[link_status["status"].eq(OK), "guardian_id"].dropna()
    failed_child_root = (
        link_status[link_status["status"].eq(REJECTED)].drop_duplicates("guardian_id").set_index("guardian_id")["root"]
    )
    no_child = guardians.ok & ~guardians.frame["guardian_id"].isin(has_ok_child)
    blocked_root = guardians.frame["guardian_id"].map(failed_child_root)
    guardians.reject(
        no_child & blocked_root.notna(),
        "child_rejected",
        "every child of the parent failed validation, so the parent cannot be linked",
        caused_by=blocked_root,
    )
    guardians.exclude(no_child & blocked_root.isna(), "no_imported_child", "none of the parent's children is imported")
    return links


def blocks_summary(rejected: pd.DataFrame) -> pd.Series:
    """For each root failure, what it holds back: '2 class(es) (4101, 4102), 57 student roster row(s)'."""
    cascaded = rejected[rejected["caused_by"].notna()].drop_duplicates(["entity", "source_id", "caused_by"])
    if cascaded.empty:
        return pd.Series(pd.NA, index=rejected.index, dtype="string")
    summaries: dict[str, str] = {}
    for root, group in cascaded.groupby("caused_by", sort=False):
        parts = []
        for entity, rows in sorted(
            group.groupby("entity", sort=False), key=lambda item: BLOCKED_ORDER.get(item[0], 99)
        ):
            label = BLOCKED_LABELS.get(entity, entity)
            text = f"{len(rows)} {label}"
            if entity == "sections":
                ids = rows["source_id"].dropna().tolist()
                text += " (" + ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "") + ")"
            parts.append(text)
        summaries[root] = ", ".join(parts)
    own_root = rejected["entity"] + ":" + rejected["source_id"].fillna("(no id)")
    blocks = own_root.map(summaries).astype("string")
    return blocks.where(rejected["caused_by"].isna(), pd.NA)
