"""The row rules of the source document, entity by entity, and ``evaluate`` that applies them all.

``RULES`` is the catalogue: one row per rule validate (and extract and load) can give a
staged row, with its outcome and the line of the source document
(``../shared/seed/000_6a89dbd85c7bbcf5.txt``, "PowerSchool SIS v10.1+ integration") it
implements, quoted. docs/validation-and-mapping.md lists the same rows, and
tests/validate/test_rule_catalogue.py holds the three together: every rule the code names is
in ``RULES``, every quote is on the line it cites, every row is in the docs.

Exclusions (left out by design) come first, then the suites' column rules, then the rules
across tables (references, usernames, unique logins and import ids); the cross-entity
checks and the cascade live in ``cascade.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sis_learning.config import DistrictConfig
from sis_learning.mapping import LOGIN_MAX_LENGTH
from sis_learning.validate.cascade import (
    check_enrollments,
    check_parent_links,
    check_section_teachers,
    check_sections,
)
from sis_learning.validate.outcomes import (
    ENTITIES,
    EXCLUDED,
    REASON_VALUE_MAX_LENGTH,
    REJECTED,
    EntityOutcome,
    ReasonText,
    blank,
    fill_value,
    has_sso_email,
    lookup,
    numeric_id_order,
    reason_series,
    sorted_by_id,
    value,
)
from sis_learning.validate.suites import run_suites


@dataclass(frozen=True)
class Rule:
    """One rule: its name (``rejected_rows.rule`` ...), the entities it judges, its outcomes,
    the source document's line it implements (``quote`` is on ``line``; ``lines`` are every
    line the docs cite), or None where the rule is Learning's own answer."""

    name: str
    entities: tuple[str, ...]
    # Sorted: a frozenset's repr follows the process's string hash seed, and validate's
    # fingerprint holds each rule's repr (a new process must find the same fingerprint).
    outcomes: tuple[str, ...]
    line: int | None
    quote: str | None
    lines: tuple[int, ...] = ()


def _rule(
    names: str, entities: str, outcomes: str, line: int | None, quote: str | None, lines: tuple[int, ...] = ()
) -> list[Rule]:
    return [
        Rule(
            name,
            tuple(entities.split()),
            tuple(sorted(set(outcomes.split()))),
            line,
            quote,
            lines or ((line,) if line else ()),
        )
        for name in names.split()
    ]


USERS = "staff students guardians"
IDS = (154, 189, 206, 223, 224, 232, 241, 253)
# fmt: off
RULES: tuple[Rule, ...] = tuple(
    rule
    for rows in (
        # -- left out by design: what the source document does not import --------------------------
        _rule("school_not_selected", "schools staff students sections", "excluded", 59,
              "Select the School(s) that you want to import data from"),
        _rule("term_before_import_start_year", "terms sections", "excluded", 59, "set the Import Start Year"),
        _rule("inactive_enrollment", "students", "excluded", 169,
              "we will only currently pull Students with an 'Active' enrollment status"),
        _rule("inactive_staff", "staff", "excluded", 172, "We will pull in Teachers who are Active"),
        _rule("ignore_parents", "guardians", "excluded", 64, "Ignore Parents from SIS", (64, 15)),
        _rule("no_portal_account portal_account_disabled", "guardians", "excluded", 216,
              "a Parent needs to have a Parent Portal account set up in PowerSchool SIS in order to be included"),
        _rule("no_imported_child", "guardians", "excluded", 216,
              "students with associated guardians will be brought into your Learning domain", (216, 219)),
        _rule("parent_not_imported child_not_imported duplicate_parent_link", "parent_links", "excluded", 223,
              "parent_id Guardian.GuardianID", (219, 223, 224)),
        _rule("no_teacher teacher_not_active teacher_not_imported", "sections", "excluded", 248,
              "PowerSchool courses must be active and have a teacher assigned"),
        _rule("dropped_enrollment student_not_imported duplicate_enrollment", "section_enrollments", "excluded",
              253, "class_id section_enrollment/section_id Sections.DCID", (253, 254)),
        _rule("section_not_imported", "section_enrollments section_teachers", "excluded", 253,
              "class_id section_enrollment/section_id Sections.DCID", (253, 254)),
        _rule("co_teacher_not_imported duplicate_co_teacher co_teacher_class_limit", "section_teachers",
              "excluded", 16, "Co-Teachers will be imported into a maximum of 25 classes for each Teacher"),
        _rule("section_teacher_ended", "section_teachers", "excluded", 248, "have a teacher assigned", (16, 248)),
        # -- the one failure the document names, and its cascade ---------------------------------
        _rule("username_missing", "staff students", "rejected", 109,
              "an imported user without a username or Google Apps or Office 365 email address will not fail "
              "to be imported"),
        _rule("teacher_rejected section_rejected student_rejected staff_rejected child_rejected parent_rejected "
              "school_rejected term_rejected course_rejected",
              "sections section_enrollments section_teachers students staff guardians parent_links", "rejected",
              109, "If the user fails and is the owner of a class, roster and class creation will also fail"),
        # -- what Learning cannot hold: rows it could not key, name or place --------------------------
        _rule("missing_source_id non_integer_source_id duplicate_source_id id_present id_unique",
              "schools terms courses staff students guardians sections section_enrollments section_teachers "
              "parent_links", "rejected", 154, "external_id student/id Students.DCID", IDS),
        _rule("non_integer_value", "students staff terms", "rejected", 169, "enroll_status is equal to 0",
              (169, 172, 59)),
        _rule("first_name_present first_name_length", USERS, "rejected", 155,
              "first_name student/name/first_name Students.First_Name", (155, 190, 207)),
        _rule("last_name_present last_name_length", USERS, "rejected", 156,
              "last_name student/name/last_name Students.Last_Name", (156, 191, 208)),
        _rule("name_present", "schools", "rejected", 233, "name school/name Schools.Name"),
        _rule("start_year_present", "terms", "rejected", 59, "set the Import Start Year"),
        _rule("course_name_present section_number_present class_name_length", "courses sections", "rejected",
              242, "Courses.Course_Name (Sections.Section_Number) - Sections.Expression"),
        _rule("course_number_present", "courses", "rejected", 243, "code course/course_number Courses.Course_Number"),
        _rule("school_reference", "students", "rejected", 161,
              "organization_id student/school_enrollment/school/id Schools.DCID", (161, 232)),
        _rule("term_reference", "sections", "rejected", 244, "year section/term_id Terms.DCID"),
        _rule("course_reference", "sections", "rejected", 243, "code course/course_number Courses.Course_Number",
              (242, 243)),
        _rule("section_reference", "section_enrollments section_teachers", "rejected", 253,
              "class_id section_enrollment/section_id Sections.DCID"),
        _rule("student_reference", "section_enrollments", "rejected", 254,
              "user_id section_enrollment/student_id Students.DCID"),
        _rule("staff_reference", "section_teachers", "rejected", 245, "teacher_id section/staff_id Teachers.DCID"),
        _rule("child_reference", "parent_links", "rejected", 224, "child_id Students.DCID", (223, 224)),
        _rule("learning_refused", "schools staff students guardians sections section_enrollments "
              "section_teachers parent_links", "rejected", None, None),
        # -- a field imported without its value (warnings) ------------------------------------------
        _rule("login_unique login_length", USERS, "warning rejected", 109,
              "an imported user without a username or Google Apps or Office 365 email address will not fail "
              "to be imported", (109, 157, 192, 209)),
        _rule("email_format email_length", USERS, "warning", 159,
              "email student/contact_info/email PSM_StudentContact.Email", (159, 163, 194, 198, 211)),
        _rule("grade_level_present", "students", "warning", 181,
              "level_id  student/school_enrollment/grade_level  Students.Grade_Level"),
        _rule("non_integer_value", "students schools terms section_teachers", "warning", None, None),
        _rule("control_characters", USERS, "warning", 155,
              "first_name student/name/first_name Students.First_Name", (155, 156, 157, 190, 191, 192, 207, 208, 209)),
    )
    for rule in rows
)
# fmt: on
RULE_NAMES = frozenset(rule.name for rule in RULES)


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
    held_logins: Callable[[], dict[str, str]] | None = None,
) -> RunValidation:
    """Apply every rule to the staged frames; no database access (tests call it directly too).

    ``as_of`` is the run's date in the district's time zone (``YYYY-MM-DD``): a section
    teacher whose assignment ended before it is not rostered. Without it, only assignments
    that ended before their term did are. ``run_name`` (the Airflow run id) names the run in the Data Docs.
    ``held_logins`` reads the logins Learning holds per user key (``staging.changes.held_logins``),
    asked only when two users share a login: the user who holds it in Learning keeps it.
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
    check_logins(config, staff, students, guardians, held_logins)

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


# The users' SIS usernames: the entity, its username column, its label in reasons, its user type.
USER_LOGINS = (
    ("staff", "teacher_username", "teacher", "T"),
    ("students", "student_username", "student", "S"),
    ("guardians", "portal_username", "parent", "P"),
)
USERNAME_NAMES = {"staff": "teacher username", "students": "student web id", "guardians": "Parent Portal username"}


def check_logins(
    config: DistrictConfig,
    staff: EntityOutcome,
    students: EntityOutcome,
    guardians: EntityOutcome,
    held_logins: Callable[[], dict[str, str]] | None = None,
) -> None:
    """The login rules: only a user left without any login fails (source document, line 109).

    "Make sure the 'Autogenerate usernames at time of import' option is turned on ... Checking
    this option will ensure that an imported user without a username or Google Apps or Office
    365 email address will not fail to be imported" (line 109). So:

    - ``username_missing`` (rejected): no SIS username, no Google / Office 365 email, and the
      district does not autogenerate usernames (teachers and students; a parent without a
      Parent Portal username is not imported at all, line 216);
    - ``login_length`` and ``login_unique``: a SIS username Learning cannot take (longer than
      its 100 characters, or the login of another user: Learning's logins are unique in a
      domain, case-insensitively) is a **warning**: the user is imported without it, with the
      Google / Office 365 email as login, else a generated one (action ``cleared``: transform
      drops the username). Only when the district does not autogenerate and the user has no
      such email is it a rejection, as a missing username is.
    """
    autogenerate = config.autogenerate_usernames
    outcomes = {"staff": staff, "students": students, "guardians": guardians}
    fallback: dict[str, pd.Series] = {}
    for entity, column, _label, _type in USER_LOGINS:
        outcome = outcomes[entity]
        # Parents' emails never become an SSO login (Parent Mappings have no sso_email_address).
        has_sso = (
            has_sso_email(config, outcome.frame["email"])
            if entity != "guardians"
            else pd.Series(False, index=outcome.frame.index)
        )
        fallback[entity] = has_sso | autogenerate
        if entity != "guardians" and not autogenerate:
            outcome.reject(
                blank(outcome.frame[column]) & ~has_sso,
                "username_missing",
                "the user has no username and no Google Apps / Office 365 email, and the district does "
                "not autogenerate usernames",
            )
    # A username longer than Learning takes (characters, not bytes).
    usable: dict[str, pd.Series] = {}
    for entity, column, _label, _type in USER_LOGINS:
        outcome = outcomes[entity]
        username = outcome.frame[column].astype("string").str.strip()
        too_long = username.str.len().gt(LOGIN_MAX_LENGTH).fillna(False).astype(bool)
        _unusable_login(
            config,
            outcome,
            column,
            too_long,
            fallback[entity],
            "login_length",
            f"the {USERNAME_NAMES[entity]} '"
            + value(username)
            + f"' is longer than the {LOGIN_MAX_LENGTH} characters Learning accepts",
        )
        usable[entity] = username.str.lower().mask(too_long)
    _shared_logins(config, outcomes, usable, fallback, held_logins)


def _unusable_login(
    config: DistrictConfig,
    outcome: EntityOutcome,
    column: str,
    mask: pd.Series,
    fallback: pd.Series,
    rule: str,
    reason: str | pd.Series | ReasonText,
) -> None:
    """Warn (imported without the username) where the user still gets a login, else reject."""
    has_sso = (
        has_sso_email(config, outcome.frame["email"])
        if outcome.entity != "guardians"
        else pd.Series(False, index=outcome.frame.index)
    )
    warned = mask & fallback
    if warned.any():
        index = warned[warned].index
        how = pd.Series(
            np.where(
                has_sso[index].to_numpy(),
                ": imported without it, the Google / Office 365 email is the login",
                ": imported without it, with a generated login",
            ),
            index=index,
            dtype="string",
        )
        outcome.warn(warned, rule, column, reason_series(reason, index) + how)
    rejected = mask & ~fallback
    if rejected.any():
        index = rejected[rejected].index
        outcome.reject(
            rejected,
            rule,
            reason_series(reason, index)
            + "; the user has no Google / Office 365 email and the district does not autogenerate usernames",
        )


def _shared_logins(
    config: DistrictConfig,
    outcomes: dict[str, EntityOutcome],
    usable: dict[str, pd.Series],
    fallback: dict[str, pd.Series],
    held_logins: Callable[[], dict[str, str]] | None,
) -> None:
    """``login_unique``: one user per login in a Learning domain (case-insensitive).

    The user who holds the login in Learning already keeps it; else the first: teachers,
    then students, then parents, each by id (numerically). Teachers', students' and
    parents' DCIDs come from different PowerSchool tables and may coincide: that is no
    conflict, Learning identifies a user by type and import id.
    """
    candidates = []
    for rank, (entity, _column, label, user_type) in enumerate(USER_LOGINS):
        outcome = outcomes[entity]
        values = usable[entity]
        keep = outcome.ok & values.notna() & values.ne("")
        candidates.append((rank, entity, label, user_type, values[keep]))
    # Only a login held by two rows or more can be taken: the rest (nearly every user) skip
    # the sort below.
    everything = pd.concat([values for *_rest, values in candidates], ignore_index=True)
    held_twice = everything.duplicated(keep=False).to_numpy()
    if not held_twice.any():
        return
    held = {key: login.strip().lower() for key, login in (held_logins() if held_logins else {}).items()}
    parts = []
    start = 0
    for rank, entity, label, user_type, values in candidates:
        mine = held_twice[start : start + len(values)]
        start += len(values)
        values = values[mine]
        outcome = outcomes[entity]
        source_ids = outcome.source_id[values.index]
        keys = (user_type + ":" + source_ids.astype(str)).to_numpy()
        holds = np.array([held.get(key) == login for key, login in zip(keys, values.to_numpy(), strict=True)])
        parts.append(
            pd.DataFrame(
                {
                    "value": values.to_numpy(),
                    "holder": np.where(holds, 0, 1),
                    "rank": rank,
                    "label": label,
                    "order": numeric_id_order(source_ids).to_numpy(),
                    "source_id": source_ids.to_numpy(),
                    "row": values.index,
                }
            )
        )
    shared = pd.concat(parts, ignore_index=True).sort_values(["value", "holder", "rank", "order"], kind="stable")
    first = shared.drop_duplicates("value").set_index("value")
    duplicates = shared[shared.duplicated("value", keep="first")]
    for rank, (entity, column, _label, _type) in enumerate(USER_LOGINS):
        mine = duplicates[duplicates["rank"] == rank]
        if mine.empty:
            continue
        outcome = outcomes[entity]
        owner = first.loc[mine["value"]]
        rows = mine["row"].to_numpy()
        mask = pd.Series(False, index=outcome.frame.index)
        mask[rows] = True
        reason = pd.Series(pd.NA, index=outcome.frame.index, dtype="string")
        reason[rows] = (
            "the login '"
            + mine["value"].astype(str).str.slice(0, REASON_VALUE_MAX_LENGTH).to_numpy()
            + "' is already used by "
            + owner["label"].astype(str).to_numpy()
            + " "
            + owner["source_id"].astype(str).to_numpy()
            + " (Learning logins are unique)"
        )
        _unusable_login(config, outcome, column, mask, fallback[entity], "login_unique", reason)
