"""The row rules of the source document, entity by entity, and ``evaluate`` that applies them all.

Exclusions (left out by design) come first, then the suites' column rules, then the rules
across tables (references, usernames, unique logins and import ids); the cross-entity
checks and the cascade live in ``cascade.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sis_learning.config import DistrictConfig
from sis_learning.validate.cascade import (
    check_enrollments,
    check_parent_links,
    check_section_teachers,
    check_sections,
)
from sis_learning.validate.outcomes import (
    ENTITIES,
    EXCLUDED,
    REJECTED,
    EntityOutcome,
    blank,
    fill_value,
    has_sso_email,
    lookup,
    numeric_id_order,
    sorted_by_id,
    value,
)
from sis_learning.validate.suites import run_suites


def selected_school_ids(config: DistrictConfig, schools: pd.DataFrame) -> set[str]:
    """The Schools.DCID of the schools the district selected (by id or by school number)."""
    pairs = (
        (str(school_id), None if pd.isna(number) else str(number))
        for school_id, number in zip(schools["school_id"], schools["school_number"], strict=True)
        if not pd.isna(school_id)
    )
    chosen, _ = config.select_schools(pairs)
    return set(chosen)


def teacher_organization_school(staff: pd.DataFrame, selected: set[str]) -> pd.Series:
    """The staff member's organization: the home school if selected, else the first selected affiliation."""
    home = staff["school_id"].where(staff["school_id"].isin(selected))
    affiliations = staff["school_ids"].fillna("").str.split(",")
    exploded = affiliations.explode().str.strip()
    exploded = exploded[exploded.isin(selected)]
    first_affiliation = exploded.groupby(level=0).first()
    return home.fillna(first_affiliation.reindex(staff.index)).astype("string")


@dataclass
class RunValidation:
    """Everything validate decided for one run (also what transform re-derives from the tables)."""

    outcomes: dict[str, EntityOutcome]
    suite_results: list[dict]


def evaluate(
    config: DistrictConfig,
    frames: dict[str, pd.DataFrame],
    results_dir: Path,
    as_of: str | None = None,
    run_name: str | None = None,
) -> RunValidation:
    """Apply every rule to the staged frames; no database access (tests call it directly too).

    ``as_of`` is the run's date in the district's time zone (``YYYY-MM-DD``): a section
    teacher whose assignment ended before it is not rostered. Without it, only assignments
    that ended before their term did are. ``run_name`` (the Airflow run id) names the run in the Data Docs.
    """
    outcomes: dict[str, EntityOutcome] = {}

    schools = EntityOutcome("schools", frames["schools"], frames["schools"]["school_id"])
    selected = selected_school_ids(config, schools.frame)
    schools.exclude(
        ~schools.frame["school_id"].isin(selected),
        "school_not_selected",
        "the district did not select this school for the import",
    )
    outcomes["schools"] = schools

    terms_frame = frames["terms"].drop_duplicates("term_id")
    terms = EntityOutcome("terms", terms_frame, terms_frame["term_id"])
    start_year = pd.to_numeric(terms.frame["start_year"], errors="coerce")
    terms.exclude(
        start_year < config.import_start_year,
        "term_before_import_start_year",
        fill_value(
            f"the term starts in {{value}}, before the import start year {config.import_start_year}",
            terms.frame["start_year"],
        ),
    )
    outcomes["terms"] = terms

    courses_frame = frames["courses"].drop_duplicates("course_id")
    outcomes["courses"] = EntityOutcome("courses", courses_frame, courses_frame["course_id"])

    staff = EntityOutcome("staff", frames["staff"], frames["staff"]["staff_id"])
    staff.frame["organization_school_id"] = teacher_organization_school(staff.frame, selected)
    # A status PowerSchool sent empty ("" is its null) is not "active": a missing value must
    # not fall through the comparison (a nullable ``ne`` gives NA, which a mask reads as False).
    staff_status = pd.to_numeric(staff.frame["status"], errors="coerce")
    staff.exclude(
        staff_status.isna(),
        "inactive_staff",
        "the teacher has no status in PowerSchool (not known to be active; only active staff are imported)",
    )
    staff.exclude(
        staff_status.ne(1),
        "inactive_staff",
        "the teacher is not active in PowerSchool (only active staff are imported)",
    )
    staff.exclude(
        staff.frame["organization_school_id"].isna(),
        "school_not_selected",
        "the teacher is not affiliated with a school the district selected",
    )
    outcomes["staff"] = staff

    students = EntityOutcome("students", frames["students"], frames["students"]["student_id"])
    status_code = pd.to_numeric(students.frame["enroll_status_code"], errors="coerce")
    students.exclude(
        status_code.isna(),
        "inactive_enrollment",
        "the student has no enroll status in PowerSchool (not known to be 0, Active); only active students are "
        "imported",
    )
    students.exclude(
        status_code.ne(0),
        "inactive_enrollment",
        fill_value(
            "the student's enroll status is {value}, not 0 (Active); only active students are imported",
            students.frame["enroll_status_code"],
        ),
    )
    staged_school_ids = set(schools.frame["school_id"].dropna())
    students.exclude(
        students.frame["school_id"].isin(staged_school_ids) & ~students.frame["school_id"].isin(selected),
        "school_not_selected",
        "the student's school is not selected for the import",
    )
    outcomes["students"] = students

    guardians_frame = sorted_by_id(frames["guardians"], "student_id")
    guardians_frame = guardians_frame.drop_duplicates("guardian_id")
    guardians = EntityOutcome("guardians", guardians_frame, guardians_frame["guardian_id"])
    if config.ignore_parents:
        guardians.exclude(
            pd.Series(True, index=guardians.frame.index), "ignore_parents", "the district ignores parents from the SIS"
        )
    guardians.exclude(
        blank(guardians.frame["portal_username"]),
        "no_portal_account",
        "the parent has no Parent Portal account (a parent needs one to be imported)",
    )
    guardians.exclude(
        guardians.frame["portal_enabled"].fillna(False).astype(bool).eq(False),
        "portal_account_disabled",
        "the parent's Parent Portal account is disabled",
    )
    outcomes["guardians"] = guardians

    sections = EntityOutcome("sections", frames["sections"], frames["sections"]["section_id"])
    section_frame = sections.frame
    sections.exclude(
        ~section_frame["school_id"].isin(selected),
        "school_not_selected",
        "the section's school is not selected for the import",
    )
    term_of_section = lookup(section_frame["term_id"], terms, "term_id")
    sections.exclude(
        term_of_section["status"].eq(EXCLUDED),
        "term_before_import_start_year",
        "the section's term "
        + value(section_frame["term_id"])
        + " starts before the import start year "
        + str(config.import_start_year),
    )
    sections.exclude(
        blank(section_frame["staff_id"]),
        "no_teacher",
        "the section has no lead teacher (only sections with a teacher are imported)",
    )

    enrollments_frame = frames["section_enrollments"]
    enrollments = EntityOutcome("section_enrollments", enrollments_frame, enrollments_frame["enrollment_id"])
    enrollments.exclude(
        enrollments.frame["dropped"].fillna(False).astype(bool), "dropped_enrollment", "the student dropped the section"
    )

    # Column-level suites run on the rows still in scope (exclusions already applied).
    pending_suites = {
        "schools": schools,
        "terms": terms,
        "courses": outcomes["courses"],
        "staff": staff,
        "students": students,
        "guardians": guardians,
        "sections": sections,
        "section_enrollments": enrollments,
    }
    teachers_frame = frames["section_teachers"].reset_index(drop=True)
    links_frame = frames["guardians"].reset_index(drop=True)
    suite_frames = {entity: outcome.frame[outcome.ok] for entity, outcome in pending_suites.items()}
    suite_frames["section_teachers"] = teachers_frame
    suite_frames["parent_links"] = links_frame
    failures, suite_results = run_suites(suite_frames, results_dir, config.district_id, run_name=run_name)
    for entity, outcome in pending_suites.items():
        outcome.apply_suite(failures[entity])

    # Row-level rules GE cannot express: references, usernames, unique logins.
    students.reject(
        ~students.frame["school_id"].isin(staged_school_ids) | students.frame["school_id"].isna(),
        "school_reference",
        "the student's school "
        + value(students.frame["school_id"], "(none)")
        + " is not a school PowerSchool returned",
    )
    # A rejected school (its organization cannot be created) holds back what belongs to it.
    for outcome, column, what in (
        (students, "school_id", "student's school"),
        (staff, "organization_school_id", "teacher's school"),
        (sections, "school_id", "section's school"),
    ):
        school = lookup(outcome.frame[column], schools, "school_id")
        outcome.reject(
            school["status"].eq(REJECTED),
            "school_rejected",
            "the " + what + " " + value(outcome.frame[column]) + " failed: " + value(school["why"]),
            caused_by=school["root"],
        )
    for outcome, username_column in ((staff, "teacher_username"), (students, "student_username")):
        if not config.autogenerate_usernames:
            has_sso = has_sso_email(config, outcome.frame["email"])
            outcome.reject(
                blank(outcome.frame[username_column]) & ~has_sso,
                "username_missing",
                "the user has no username and no Google Apps / Office 365 email, and the district does "
                "not autogenerate usernames",
            )
    _reject_duplicate_users(staff, students, guardians)

    check_sections(sections, terms, outcomes["courses"], staff)
    outcomes["sections"] = sections
    check_enrollments(enrollments, sections, students)
    outcomes["section_enrollments"] = enrollments
    teachers = check_section_teachers(
        config, teachers_frame, sections, staff, terms, failures["section_teachers"], as_of
    )
    outcomes["section_teachers"] = teachers
    links = check_parent_links(links_frame, guardians, students, failures["parent_links"])
    outcomes["parent_links"] = links
    return RunValidation(outcomes={entity: outcomes[entity] for entity in ENTITIES}, suite_results=suite_results)


def _reject_shared_values(users: list[tuple[EntityOutcome, pd.Series, str]], rule: str, what: str, why: str) -> None:
    """Reject every user whose value (login, import id) an earlier user already has.

    Learning keeps one user per login and per import id in a domain, so the first keeps
    it: teachers, then students, then parents, each by id (numerically). ``users`` is
    (outcome, the value per row, label) in that order; only rows still ok take part.
    """
    candidates = []
    for rank, (outcome, values, label) in enumerate(users):
        keep = outcome.ok & values.notna() & values.ne("")
        candidates.append((rank, outcome, label, values[keep]))
    # Only a value held by two rows or more can be taken: the rest (nearly every user) skip
    # the sort below.
    everything = pd.concat([values for *_rest, values in candidates], ignore_index=True)
    held_twice = everything.duplicated(keep=False).to_numpy()
    if not held_twice.any():
        return
    parts = []
    start = 0
    for rank, outcome, label, values in candidates:
        mine = held_twice[start : start + len(values)]
        start += len(values)
        values = values[mine]
        parts.append(
            pd.DataFrame(
                {
                    "value": values.to_numpy(),
                    "rank": rank,
                    "label": label,
                    "order": numeric_id_order(outcome.source_id[values.index]).to_numpy(),
                    "source_id": outcome.source_id[values.index].to_numpy(),
                    "row": values.index,
                }
            )
        )
    shared = pd.concat(parts, ignore_index=True).sort_values(["value", "rank", "order"], kind="stable")
    first = shared.drop_duplicates("value").set_index("value")
    duplicates = shared[shared.duplicated("value", keep="first")]
    for rank, (outcome, _values, _label) in enumerate(users):
        mine = duplicates[duplicates["rank"] == rank]
        if mine.empty:
            continue
        owner = first.loc[mine["value"]]
        rows = mine["row"].to_numpy()
        mask = pd.Series(False, index=outcome.frame.index)
        mask[rows] = True
        reason = pd.Series(pd.NA, index=outcome.frame.index, dtype="string")
        reason[rows] = (
            f"the {what} '"
            + mine["value"].astype(str).to_numpy()
            + "' is already used by "
            + owner["label"].astype(str).to_numpy()
            + " "
            + owner["source_id"].astype(str).to_numpy()
            + f"; {why}"
        )
        outcome.reject(mask, rule, reason)


def _reject_duplicate_users(staff: EntityOutcome, students: EntityOutcome, guardians: EntityOutcome) -> None:
    """Logins are unique in a Learning domain (case-insensitive).

    Teachers', students' and parents' DCIDs come from different PowerSchool tables and
    may coincide: that is no conflict, Learning identifies a user by type and import id.
    """

    def login(outcome: EntityOutcome, column: str) -> pd.Series:
        return outcome.frame[column].str.strip().str.lower()

    people = (
        (staff, "teacher_username", "teacher"),
        (students, "student_username", "student"),
        (guardians, "portal_username", "parent"),
    )
    _reject_shared_values(
        [(outcome, login(outcome, column), label) for outcome, column, label in people],
        "login_unique",
        "login",
        "Learning logins are unique",
    )
