"""The Learning end state the source document's rules give for the simulator's data (the oracle).

Worked out straight from the SIS tables of the simulator's live dataset (the
``DatasetStore`` over the copy the server serves, so admin changes are seen), with plain
Python restating the rules of the source document (../shared/seed/000_*.txt), never with
the pipeline's validate/transform code:

- organizations: the selected schools (Schools.DCID, Schools.Name);
- students: enroll_status 0 ("only ... Students with an 'Active' enrollment status"),
  user_type S, external_id Students.DCID, login Students.Student_Web_ID (when blank: the
  Google/O365 email, else a generated one: "an imported user without a username or
  Google Apps or Office 365 email address will not fail"), organization Schools.DCID,
  sso_email_address = the email when its domain is a district Google/O365 domain;
- teachers: Active staff (Teachers.Status 1) of a selected school, user_type T,
  external_id Teachers.DCID, "imported even with no class";
- parents: guardians with an enabled Parent Portal account (PCAS_Account) linked to an
  imported student, user_type P, external_id Guardian.GuardianID, login PCAS username,
  email PCAS_EmailContact; parent-child links between imported users only;
- user levels: Students.Grade_Level per imported student;
- classes: sections in a term of the import start year or later, with a lead teacher
  who is imported ("courses must be active and have a teacher assigned"), name
  "Course_Name (Section_Number) - Expression", code Courses.Course_Number, year
  Terms.DCID, teacher_id Teachers.DCID, organization Schools.DCID;
- rosters: enrollments not dropped (CC.SectionID > 0) of imported students in imported
  classes (student), the lead teacher (teacher), the other current SectionTeacher rows of
  imported teachers (co-teacher; "current teachers only": a row that ended is not rostered),
  a co-teacher in at most 25 classes, kept by the documented rule (latest term first, then
  lowest section id).

Learning's own uniqueness rule (a login is unique in a domain, case-insensitively): when
users share a SIS username, the first (teachers, then students, then parents, each by DCID)
keeps it and the others come in without it ("an imported user without a username ... will not
fail to be imported" with autogeneration on, line 109): their Google / Office 365 email is
their login, else a generated one. A username longer than Learning's 100 characters is
treated the same way. Nobody fails then; ``expected_state`` still takes ``failed_users``
(read from rejected_rows by the test) and removes them and what depends on them (their
classes, roster rows and links), for a district that does not autogenerate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sandbox.powerschool.store import DatasetStore

CO_TEACHER_CLASS_LIMIT = 25
LOGIN_MAX_LENGTH = 100  # Learning's


@dataclass
class DistrictRules:
    """The demo district's settings the rules depend on (include/districts/demo.yaml)."""

    import_start_year: int = 2025
    sso_domains: tuple[str, ...] = ("students.demo-usd.org", "demo-usd.org")
    schools: str | tuple[int, ...] = "all"
    timezone: str = "America/Chicago"
    today: str | None = None  # the run's day in the district (YYYY-MM-DD); None: today


@dataclass
class Oracle:
    organizations: dict[str, str]
    # A user is identified by type and DCID ("S:5", "T:5", "P:5": PowerSchool's id sequences
    # overlap), as Learning keys them; user levels, classes' teacher_id and links use the DCID.
    users: dict[str, dict[str, Any]]  # "<user_type>:<external_id>" -> expected fields (login None = generated)
    user_levels: dict[str, str]
    classes: dict[str, dict[str, str]]
    rosters: dict[tuple[str, str], str]  # (class_id, "<user_type>:<user_id>") -> role
    parent_links: set[tuple[str, str]]
    # What the test needs beside the end state
    source_logins: dict[str, str] = field(default_factory=dict)  # user key -> SIS username (lower case)
    user_school: dict[str, set[str]] = field(default_factory=dict)  # user key -> allowed organization ids
    co_teacher_placements: dict[str, list[str]] = field(default_factory=dict)  # teacher -> classes, cap order


def blank(value: Any) -> bool:
    return value is None or str(value).strip() == ""


def text(value: Any) -> str | None:
    return None if blank(value) else str(value)


def is_address(email: Any) -> bool:
    """An email Learning takes: one @, text before it, a dot in the domain, no spaces inside.

    Surrounding spaces are not part of a value: the SIS field ``"  ann@x.org "`` is the
    address ``ann@x.org`` (every text value is read trimmed).
    """
    if blank(email):
        return False
    email = str(email).strip()
    local, at, domain = email.partition("@")
    return (
        bool(at)
        and bool(local)
        and "@" not in domain
        and "." in domain.strip(".")
        and not any(character.isspace() for character in email)
    )


def address(email: Any) -> str | None:
    """The email as imported (trimmed): an email that is not an address is a warning, imported as none."""
    return str(email).strip() if is_address(email) else None


def sso_email(email: Any, rules: DistrictRules) -> str | None:
    if not is_address(email):
        return None
    domain = str(email).strip().rsplit("@", 1)[1].lower()
    return str(email).strip() if domain in rules.sso_domains else None


def usable_username(username: Any) -> bool:
    """A SIS username Learning can take as it is: present, at most 100 characters."""
    return not blank(username) and len(str(username).strip()) <= LOGIN_MAX_LENGTH


def sis_login(username: Any, email: Any, rules: DistrictRules) -> str | None:
    """The username; else the Google/O365 email (a user with one does not fail); else None (generated)."""
    return (text(username) if usable_username(username) else None) or sso_email(email, rules)


def _candidates(store: DatasetStore, rules: DistrictRules) -> dict[str, Any]:
    """Every row the rules select, before Learning's uniqueness rule."""
    query = store.query
    schools = query("SELECT * FROM schools")
    if rules.schools != "all":
        schools = [s for s in schools if s["dcid"] in rules.schools or s["school_number"] in rules.schools]
    school_dcid = {s["school_number"]: str(s["dcid"]) for s in schools}  # selected schools only

    teachers = {}
    affiliations: dict[int, list[str]] = defaultdict(list)
    for row in query("SELECT * FROM teacher_schools ORDER BY schoolid"):
        if row["schoolid"] in school_dcid:
            affiliations[row["teacherid"]].append(school_dcid[row["schoolid"]])
    for row in query("SELECT * FROM teachers WHERE status = 1"):
        if not affiliations[row["id"]] and row["schoolid"] not in school_dcid:
            continue  # not a staff member of a selected school
        home = school_dcid.get(row["schoolid"])
        teachers[row["id"]] = row | {"organizations": {home} if home else set(affiliations[row["id"]])}

    students = {
        row["id"]: row
        for row in query("SELECT * FROM students WHERE enroll_status = 0")
        if row["schoolid"] in school_dcid
    }

    first_year_id = rules.import_start_year - 1990
    terms = {(row["schoolid"], row["id"]): row for row in query("SELECT * FROM terms")}
    courses = {(row["schoolid"], row["course_number"]): row for row in query("SELECT * FROM courses")}
    sections = {}
    for row in query("SELECT * FROM sections WHERE teacher <> 0"):
        term = terms.get((row["schoolid"], row["termid"]))
        if row["schoolid"] not in school_dcid or term is None or term["yearid"] < first_year_id:
            continue
        sections[row["id"]] = row | {"term": term, "course": courses.get((row["schoolid"], row["course_number"]))}

    enrollments = query("SELECT * FROM cc WHERE sectionid > 0 ORDER BY id")
    section_teachers = query("SELECT * FROM sectionteacher ORDER BY id")

    accounts = {row["pcas_accounttoken"]: row for row in query("SELECT * FROM pcas_account")}
    emails: dict[str, str] = {}
    for row in query("SELECT * FROM pcas_emailcontact ORDER BY rowid"):
        emails.setdefault(row["pcas_accounttoken"], row["emailaddress"])
    guardians = {}
    for row in query("SELECT * FROM guardian"):
        account = accounts.get(row["accountidentifier"]) if row["accountidentifier"] else None
        if account is None or blank(account["username"]) or not account["isenabled"]:
            continue  # "a Parent needs to have a Parent Portal account set up"
        guardians[row["guardianid"]] = row | {
            "username": account["username"],
            "email": emails.get(row["accountidentifier"]),
        }
    guardian_students = query("SELECT * FROM guardianstudent ORDER BY guardianid, studentsdcid")
    return {
        "schools": schools,
        "school_dcid": school_dcid,
        "teachers": teachers,
        "students": students,
        "sections": sections,
        "enrollments": enrollments,
        "section_teachers": section_teachers,
        "guardians": guardians,
        "guardian_students": guardian_students,
    }


def expected_state(
    dataset_path: Path, rules: DistrictRules | None = None, failed_users: set[str] = frozenset()
) -> Oracle:
    """The Learning end state, minus the users Learning's uniqueness rule failed (and what hangs on them).

    ``failed_users`` holds user keys ("T:5").
    """
    rules = rules or DistrictRules()
    with DatasetStore(dataset_path) as store:
        data = _candidates(store, rules)
    school_dcid = data["school_dcid"]
    oracle = Oracle(
        organizations={str(s["dcid"]): s["name"] for s in data["schools"]},
        users={},
        user_levels={},
        classes={},
        rosters={},
        parent_links=set(),
    )

    teacher_dcid = {}
    for teacher_id, row in data["teachers"].items():
        key = f"T:{row['dcid']}"
        login = sis_login(row["teacherloginid"], row["email_addr"], rules)
        if usable_username(row["teacherloginid"]):
            oracle.source_logins[key] = str(row["teacherloginid"]).strip().lower()
        if key in failed_users:
            continue
        teacher_dcid[teacher_id] = str(row["dcid"])
        oracle.users[key] = {
            "user_type": "T",
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "login": login,
            "email": address(row["email_addr"]),
            "sso_email_address": sso_email(row["email_addr"], rules),
            "enabled": True,
        }
        oracle.user_school[key] = row["organizations"]

    student_dcid = {}
    for student_id, row in data["students"].items():
        key = f"S:{row['dcid']}"
        login = sis_login(row["student_web_id"], row["email"], rules)
        if usable_username(row["student_web_id"]):
            oracle.source_logins[key] = str(row["student_web_id"]).strip().lower()
        if key in failed_users:
            continue
        student_dcid[student_id] = str(row["dcid"])
        oracle.users[key] = {
            "user_type": "S",
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "login": login,
            "email": address(row["email"]),
            "sso_email_address": sso_email(row["email"], rules),
            "enabled": True,
        }
        oracle.user_school[key] = {school_dcid[row["schoolid"]]}
        if not blank(row["grade_level"]):  # no grade level (pre-K): a warning, no user level
            oracle.user_levels[str(row["dcid"])] = str(row["grade_level"])

    imported_students = set(student_dcid.values())
    children: dict[int, list[str]] = defaultdict(list)
    for link in data["guardian_students"]:
        if link["guardianid"] in data["guardians"] and str(link["studentsdcid"]) in imported_students:
            children[link["guardianid"]].append(str(link["studentsdcid"]))
    for guardian_id, row in data["guardians"].items():
        key = f"P:{guardian_id}"
        if not children[guardian_id]:
            continue  # parent-child links only between imported users; a parent comes with a child
        if usable_username(row["username"]):
            oracle.source_logins[key] = row["username"].strip().lower()
        if key in failed_users:
            continue
        oracle.users[key] = {
            "user_type": "P",
            "first_name": row["firstname"],
            "last_name": row["lastname"],
            "login": row["username"] if usable_username(row["username"]) else None,
            "email": address(row["email"]),
            "sso_email_address": None,
            "enabled": True,
        }
        oracle.user_school[key] = set().union(*(oracle.user_school[f"S:{child}"] for child in children[guardian_id]))
        for child in children[guardian_id]:
            oracle.parent_links.add((str(guardian_id), child))

    # One user per login: the first of each group of users sharing a SIS username keeps it, the
    # others come in with their SSO email as login, else a generated one (login None).
    for group in login_collisions(oracle):
        ordered = sorted((key for key in group if key in oracle.users), key=_keeper_order)
        for key in ordered[1:]:
            oracle.users[key]["login"] = oracle.users[key]["sso_email_address"]

    class_of_section = {}
    for section_id, row in data["sections"].items():
        lead = teacher_dcid.get(row["teacher"])
        if lead is None:
            continue  # the lead teacher is not imported: the class cannot be created
        key = str(row["dcid"])
        course = row["course"] or {}
        class_of_section[section_id] = key
        oracle.classes[key] = {
            "name": f"{course.get('course_name')} ({row['section_number']}) - {row['expression'] or ''}",
            "code": str(course.get("course_number")),
            "year": str(row["term"]["dcid"]),
            "teacher_id": lead,
            "organization_id": school_dcid[row["schoolid"]],
        }
        oracle.rosters[(key, f"T:{lead}")] = "teacher"

    for row in data["enrollments"]:
        class_id, student = class_of_section.get(row["sectionid"]), student_dcid.get(row["studentid"])
        if class_id and student:
            oracle.rosters[(class_id, f"S:{student}")] = "student"

    # Co-teachers: current SectionTeacher rows other than the lead, capped at 25 classes per
    # teacher, latest term first (term first day, then year, descending), then lowest section id.
    # A row has ended (the teacher left the section) when its end date is before the run's day
    # or, once the term is over, before the term's last day.
    today = rules.today or datetime.now(ZoneInfo(rules.timezone)).date().isoformat()
    placements: dict[str, set[str]] = defaultdict(set)
    for row in data["section_teachers"]:
        class_id, teacher = class_of_section.get(row["sectionid"]), teacher_dcid.get(row["teacherid"])
        section = data["sections"].get(row["sectionid"])
        if (
            section is not None
            and row["end_date"]
            and row["end_date"] < min(today, section["term"]["lastday"] or today)
        ):
            continue
        if class_id and teacher and oracle.classes[class_id]["teacher_id"] != teacher:
            placements[teacher].add(class_id)
    term_of_class = {class_of_section[s]: data["sections"][s]["term"] for s in class_of_section}
    for teacher, class_ids in placements.items():
        ordered = sorted(
            class_ids, key=lambda c: (_desc(term_of_class[c]["firstday"] or ""), -term_of_class[c]["yearid"], int(c))
        )
        oracle.co_teacher_placements[teacher] = ordered
        for class_id in ordered[:CO_TEACHER_CLASS_LIMIT]:
            oracle.rosters[(class_id, f"T:{teacher}")] = "co-teacher"
    return oracle


def _desc(value: str) -> tuple[int, ...]:
    return tuple(-ord(character) for character in value)


def _keeper_order(key: str) -> tuple[int, int]:
    """Who keeps a shared login: teachers, then students, then parents, each by DCID."""
    user_type, _, external_id = key.partition(":")
    return ("TSP".index(user_type), int(external_id))


def login_collisions(oracle: Oracle) -> list[set[str]]:
    """Groups of oracle users whose SIS usernames are equal (case-insensitively): one keeps it."""
    by_login: dict[str, set[str]] = defaultdict(set)
    for key, login in oracle.source_logins.items():
        by_login[login].add(key)
    return [keys for keys in by_login.values() if len(keys) > 1]


USER_TYPE_OF_ENTITY = {"staff": "T", "students": "S", "guardians": "P"}


def user_key(entity: str, source_id: Any) -> str:
    """The Learning key of a staged user row: staff 5 -> "T:5"."""
    return f"{USER_TYPE_OF_ENTITY[entity]}:{source_id}"


def user_order(key: str) -> tuple[str, int]:
    """Sort user keys by type, then DCID as a number."""
    user_type, _, external_id = key.partition(":")
    return (user_type, int(external_id) if external_id.isdigit() else -1)
