"""Deterministic, seeded generator of realistic PowerSchool districts (tiny to 200,000 students).

Every case an import rule of the source document exists for occurs in every size:
inactive students (enroll status not 0) and inactive staff ("only active"), sections with no
teacher and in terms before the import start year ("only active sections with a teacher, in
terms from the import start year on"), students and teachers without a username (the
username rule and "autogenerate usernames"), teachers co-teaching 24, 25, 26 and 30 sections
(the 25-class co-teacher limit), guardians with and without a Parent Portal account ("parents
with a portal account"), emails on the district's Google domains and elsewhere (SSO), names
with accents, apostrophes and non-Latin scripts, the same username in two schools, and
dropped enrollments (negative CC.SectionID).

Rows are written straight to SQLite in batches, so the large district is never held in memory.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.powerschool import store
from sandbox.powerschool.irregularities import Irregularities

# Bump when the generated data changes: cached datasets are keyed by it.
GENERATOR_VERSION = 6
# Generated districts carry the irregularities of real ones (irregularities.py) unless
# asked otherwise, so every test, the demo and the benchmark see them (issue 22);
# POWERSCHOOL_SANDBOX_IRREGULARITIES=on|off overrides it.
IRREGULARITIES_BY_DEFAULT = True

DISTRICT = {
    "district_name": "Demo Unified School District",
    "district_timezone": "America/Chicago",
    "google_domains": ["students.demo-usd.org", "demo-usd.org"],
    "office365_domains": [],
    "import_start_year": 2025,
    "school_years": [2023, 2024, 2025],
    "powerschool_version": "24.7.0.0",
}
STUDENT_DOMAIN, STAFF_DOMAIN = "students.demo-usd.org", "demo-usd.org"


@dataclass(frozen=True)
class SizeProfile:
    schools: int
    students: int
    class_size: int  # average students per current-year section


SIZES: dict[str, SizeProfile] = {
    "tiny": SizeProfile(schools=3, students=60, class_size=8),
    "demo": SizeProfile(schools=4, students=600, class_size=20),
    "S": SizeProfile(schools=10, students=5_000, class_size=24),
    "M": SizeProfile(schools=50, students=50_000, class_size=25),
    "L": SizeProfile(schools=200, students=200_000, class_size=25),
}
CURRENT_ENROLLMENTS = (4, 5, 5)  # sections per student in the current year (4.67 on average; 5.2 with prior years)
CO_TEACHING_LOADS = (30, 26, 25, 24)  # the co-teacher cap is 25: below, at, just above, well above

# Id spaces differ per table so that confusing an internal ID with a DCID (or one table's
# id with another's) produces a reference to nothing instead of a plausible wrong row.
SCHOOL_DCID_OFFSET = 10
TERM_DCID_OFFSET = 7_000
COURSE_DCID_OFFSET = 20_000
SECTION_DCID_OFFSET = 300_000
TEACHER_DCID_OFFSET = 3_000
USERS_DCID_OFFSET = 50_000
STUDENT_DCID_OFFSET = 1_000_000
STUDENT_NUMBER_OFFSET = 300_000
CC_DCID_OFFSET = 5_000_000
GUARDIAN_ID_OFFSET = 700_000

FIRST_NAMES = [
    "James",
    "Mary",
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Ethan",
    "Sophia",
    "Mason",
    "Isabella",
    "Lucas",
    "Mia",
    "Aiden",
    "Harper",
    "Elijah",
    "Amelia",
    "Logan",
    "Evelyn",
    "Benjamin",
    "Abigail",
    "Jacob",
    "Emily",
    "Michael",
    "Ella",
    "Daniel",
    "Grace",
    "Henry",
    "Chloe",
    "Jackson",
    "Aria",
    "Samuel",
    "Layla",
    "Sebastian",
    "Riley",
    "David",
    "Zoey",
    "Carter",
    "Nora",
    "Wyatt",
    "Lily",
    "Jayden",
    "Hannah",
    "John",
    "Madison",
    "Owen",
    "Ellie",
    "Dylan",
    "Avery",
    "Luke",
]
FIRST_NAMES_ACCENTED = [
    "José",
    "Zoë",
    "Chloé",
    "Renée",
    "François",
    "Björn",
    "Søren",
    "Łukasz",
    "Inés",
    "Mónica",
    "André",
    "Jérôme",
    "Anaïs",
    "D'Andre",
    "Ke'Shawn",
    "Mary-Kate",
    "Siobhán",
]
FIRST_NAMES_NON_LATIN = ["王芳", "Дмитрий", "Анна", "محمد", "فاطمة", "さくら", "민준", "서연", "Ελένη", "नेहा"]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
]
LAST_NAMES_ACCENTED = [
    "O'Brien",
    "D'Angelo",
    "O'Connor",
    "N'Diaye",
    "Núñez",
    "Peña",
    "Müller",
    "Dvořák",
    "Łukaszewski",
    "Søndergaard",
    "García-López",
    "Smith-Jones",
    "Van der Berg",
    "St. John",
]
LAST_NAMES_NON_LATIN = ["李", "Иванова", "Петров", "الحسن", "佐藤", "김", "Παπαδόπουλος", "כהן"]
PLACES = [
    "Lincoln",
    "Jefferson",
    "Riverside",
    "Oak Grove",
    "Maple",
    "Hillcrest",
    "Lakeview",
    "Cedar",
    "Washington",
    "Sunnyvale",
    "Pine Ridge",
    "Brookside",
    "Highland",
    "Meadow",
    "Fairview",
    "Westwood",
]
SUBJECTS = {
    "elementary": ["Homeroom", "Reading", "Mathematics", "Science", "Art", "Music", "Physical Education"],
    "middle": ["English", "Math", "Life Science", "U.S. History", "Español I", "Band", "Art & Design", "P.E."],
    "high": [
        "English 9",
        "English 10",
        "Algebra I",
        "Geometry",
        "Biology",
        "Chemistry",
        "World History",
        "Español II",
        "Français I",
        "AP Calculus AB",
        "Computer Science",
        "Choir",
        "Health",
    ],
}
RELATIONSHIPS = ["Mother", "Father", "Guardian", "Grandparent", "Stepparent"]


def ascii_fold(text: str | None) -> str:
    """Lower-case ASCII letters and digits of a name ('Núñez' -> 'nunez', 'O'Brien' -> 'obrien')."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(character for character in decomposed if character.isascii() and character.isalnum()).lower()


# The fixture tables, plus teacher_schools (the fixture's teachers.school_affiliations).
WRITTEN_COLUMNS = {**store.TABLE_COLUMNS, "teacher_schools": ("teacherid", "schoolid")}


class _BatchWriter:
    """Buffers rows per table and writes them in large executemany batches."""

    BATCH = 20_000

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection
        self.buffers: dict[str, list[tuple[Any, ...]]] = {}
        self.counts: dict[str, int] = {}

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        buffer = self.buffers.setdefault(table, [])
        buffer.append(row)
        if len(buffer) >= self.BATCH:
            self.flush(table)

    def flush(self, table: str | None = None) -> None:
        for name in [table] if table else list(self.buffers):
            rows = self.buffers.get(name) or []
            if not rows:
                continue
            columns = WRITTEN_COLUMNS[name]
            placeholders = ",".join("?" * len(columns))
            self.connection.executemany(f"INSERT INTO {name} ({','.join(columns)}) VALUES ({placeholders})", rows)
            self.counts[name] = self.counts.get(name, 0) + len(rows)
            rows.clear()


@dataclass
class _School:
    id: int
    dcid: int
    number: int
    level: str
    low_grade: int
    high_grade: int


def _school_level(index: int) -> tuple[str, int, int]:
    return [("elementary", 0, 5), ("middle", 6, 8), ("high", 9, 12)][index % 3]


class _Generator:
    def __init__(self, connection: sqlite3.Connection, size: str, seed: int):
        if size not in SIZES:
            raise store.DatasetError(f"unknown dataset size {size!r}; choose one of {', '.join(SIZES)}")
        self.profile = SIZES[size]
        self.size, self.seed = size, seed
        self.random = random.Random(f"powerschool-sandbox:{size}:{seed}")
        self.writer = _BatchWriter(connection)
        self.connection = connection
        self.next_id: dict[str, int] = {}
        self.inactive_teachers: dict[int, list[int]] = {}
        self.accounts = 0

    def new_id(self, table: str) -> int:
        value = self.next_id.get(table, 0) + 1
        self.next_id[table] = value
        return value

    # -- names ---------------------------------------------------------------------------
    def first_name(self) -> str:
        roll = self.random.random()
        if roll < 0.04:
            return self.random.choice(FIRST_NAMES_NON_LATIN)
        if roll < 0.12:
            return self.random.choice(FIRST_NAMES_ACCENTED)
        return self.random.choice(FIRST_NAMES)

    def last_name(self) -> str:
        roll = self.random.random()
        if roll < 0.04:
            return self.random.choice(LAST_NAMES_NON_LATIN)
        if roll < 0.12:
            return self.random.choice(LAST_NAMES_ACCENTED)
        return self.random.choice(LAST_NAMES)

    def token(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    # -- the district ----------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        schools = self.schools()
        self.roles()
        terms = self.terms(schools)
        students_per_school = self.split(self.profile.students, len(schools))
        sections_by_school: dict[int, dict[int, list[tuple[int, int]]]] = {}
        teachers_by_school: dict[int, list[int]] = {}
        for school, student_count in zip(schools, students_per_school, strict=True):
            average = sum(CURRENT_ENROLLMENTS) / len(CURRENT_ENROLLMENTS)
            current_sections = max(8, math.ceil(student_count * average / self.profile.class_size))
            teachers_by_school[school.number] = self.teachers(school, current_sections)
            sections_by_school[school.number] = self.courses_and_sections(
                school, terms[school.number], current_sections, teachers_by_school[school.number]
            )
        self.co_teaching(schools, sections_by_school, teachers_by_school)
        self.duplicate_teacher_username(schools)
        for school, student_count in zip(schools, students_per_school, strict=True):
            self.students(school, student_count, sections_by_school[school.number], terms[school.number])
        self.writer.flush()
        self.duplicate_student_username(schools)
        self.teacher_categories()
        self.writer.flush()
        return dict(self.writer.counts)

    @staticmethod
    def split(total: int, parts: int) -> list[int]:
        base, extra = divmod(total, parts)
        return [base + (1 if index < extra else 0) for index in range(parts)]

    def schools(self) -> list[_School]:
        schools = []
        for index in range(self.profile.schools):
            level, low, high = _school_level(index)
            place = PLACES[index % len(PLACES)] + ("" if index < len(PLACES) else f" {index // len(PLACES) + 1}")
            if index == 1:
                place = "Peña"  # an accented school name
            if index == 2:
                place = "St. Mary's"  # an apostrophe in a school name
            name = f"{place} {level.title()} School"
            school = _School(index + 1, SCHOOL_DCID_OFFSET + index + 1, 100 * (index + 1), level, low, high)
            abbreviation = "".join(word[0] for word in name.split() if word[0].isalpha()).upper()
            self.writer.add("schools", (school.id, school.dcid, school.number, name, abbreviation, low, high))
            schools.append(school)
        return schools

    def roles(self) -> None:
        for role_id, name in store.ROLE_NAMES.items():
            self.writer.add("roledef", (role_id, name))

    def terms(self, schools: list[_School]) -> dict[int, dict[int, list[tuple[int, str, str]]]]:
        """Per school and school year: [(Terms.ID, first day, last day)] for year, S1, S2."""
        result: dict[int, dict[int, list[tuple[int, str, str]]]] = {}
        for school in schools:
            per_year = result.setdefault(school.number, {})
            for year in DISTRICT["school_years"]:
                year_id = year - 1990
                periods = [
                    (
                        year_id * 100,
                        f"{year}-{year + 1}",
                        f"{str(year)[2:]}-{str(year + 1)[2:]}",
                        f"{year}-08-15",
                        f"{year + 1}-06-05",
                        1,
                        1,
                    ),
                    (year_id * 100 + 1, "Semester 1", "S1", f"{year}-08-15", f"{year}-12-19", 2, 0),
                    (year_id * 100 + 2, "Semester 2", "S2", f"{year + 1}-01-05", f"{year + 1}-06-05", 2, 0),
                ]
                per_year[year] = []
                for term_id, name, abbreviation, first_day, last_day, portion, is_year in periods:
                    dcid = TERM_DCID_OFFSET + self.new_id("terms")
                    self.writer.add(
                        "terms",
                        (
                            term_id,
                            dcid,
                            school.number,
                            name,
                            abbreviation,
                            first_day,
                            last_day,
                            year_id,
                            portion,
                            is_year,
                        ),
                    )
                    per_year[year].append((term_id, first_day, last_day))
        return result

    def teachers(self, school: _School, current_sections: int) -> list[int]:
        """Active lead teachers of a school (Teachers.ID); also writes inactive and non-teaching staff."""
        active: list[int] = []
        count = max(4, math.ceil(current_sections / 5))
        for position in range(count + 2):
            teacher_id = self.new_id("teachers")
            first, last, middle = self.first_name(), self.last_name(), None
            if self.random.random() < 0.3:
                middle = self.random.choice(FIRST_NAMES)
            # position 0 of every school is inactive (status 2); one in 25 has no username.
            status = 2 if position == 0 or self.random.random() < 0.03 else 1
            staff_status = 1 if position < count else 2  # the last two are non-teaching staff
            login = f"{ascii_fold(first)[:1] or 't'}{ascii_fold(last) or 'staff'}{teacher_id}"
            if position == 1 or self.random.random() < 0.03:
                teacher_login = admin_login = None
            else:
                teacher_login = login
                admin_login = login if self.random.random() < 0.9 else f"adm.{login}"
            roll = self.random.random()
            if position == 2:
                email = f"{login}@gmail.com"  # a teacher whose email is off the district's domains
            elif roll < 0.9:
                email = f"{login}@{STAFF_DOMAIN}"
            elif roll < 0.96:
                email = f"{login}@outlook.com"
            else:
                email = None
            self.writer.add(
                "teachers",
                (
                    teacher_id,
                    TEACHER_DCID_OFFSET + teacher_id,
                    USERS_DCID_OFFSET + teacher_id,
                    school.number,
                    first,
                    last,
                    middle,
                    teacher_login,
                    admin_login,
                    email,
                    status,
                    staff_status,
                ),
            )
            self.writer.add("teacher_schools", (teacher_id, school.number))
            if status == 1 and staff_status == 1:
                active.append(teacher_id)
            elif status == 2:
                self.inactive_teachers.setdefault(school.number, []).append(teacher_id)
        return active

    def courses_and_sections(
        self,
        school: _School,
        terms: dict[int, list[tuple[int, str, str]]],
        current_sections: int,
        teachers: list[int],
    ) -> dict[int, list[tuple[int, int]]]:
        """Write courses and sections; return per year [(Sections.ID, Terms.ID)]."""
        subjects = SUBJECTS[school.level]
        course_numbers = []
        for index, subject in enumerate(subjects):
            course_id = self.new_id("courses")
            # Half the course numbers are digit-only (they come back as JSON numbers, quirk 3).
            number = (
                f"{school.number * 10 + index}" if index % 2 == 0 else f"{subject[:3].upper()}{school.number + index}"
            )
            number = ascii_fold(number).upper() or str(course_id)
            self.writer.add("courses", (course_id, COURSE_DCID_OFFSET + course_id, number, subject, school.number))
            course_numbers.append(number)
        inactive_teacher = self.inactive_teachers[school.number][0]
        result: dict[int, list[tuple[int, int]]] = {}
        for year, periods in terms.items():
            result[year] = []
            count = current_sections if year == DISTRICT["import_start_year"] else max(4, current_sections // 3)
            for index in range(count):
                section_id = self.new_id("sections")
                roll = self.random.random()
                term_id = periods[0][0] if roll < 0.6 else periods[1][0] if roll < 0.8 else periods[2][0]
                if index == 0:
                    lead = 0  # every school and year has a section without a teacher
                elif index == 1 and year == DISTRICT["import_start_year"]:
                    lead = inactive_teacher  # a section whose lead teacher is no longer active
                else:
                    lead = teachers[index % len(teachers)] if self.random.random() > 0.02 else 0
                period = index % 7 + 1
                expression = f"{period}(A)" if self.random.random() < 0.85 else f"{period}-{period + 1}(A-B)"
                section_number = str(index + 1) if index % 3 else f"{chr(65 + index % 26)}{index + 1}"
                course = course_numbers[index % len(course_numbers)]
                self.writer.add(
                    "sections",
                    (
                        section_id,
                        SECTION_DCID_OFFSET + section_id,
                        school.number,
                        course,
                        section_number,
                        expression,
                        expression.replace("(A)", ""),
                        term_id,
                        lead,
                    ),
                )
                if lead:
                    self.section_teacher(section_id, lead, 1, periods[0][1], periods[0][2])
                result[year].append((section_id, term_id))
        return result

    def section_teacher(self, section_id: int, teacher_id: int, role_id: int, start: str, end: str) -> None:
        row_id = self.new_id("sectionteacher")
        priority = 1 if role_id == 1 else 2
        self.writer.add("sectionteacher", (row_id, section_id, teacher_id, role_id, start, end, 1.0, priority))

    def co_teaching(self, schools: list[_School], sections_by_school: dict, teachers_by_school: dict) -> None:
        """Co-teachers as PowerSchool stores them: SectionTeacher rows with the Co-teacher role."""
        current_year = DISTRICT["import_start_year"]
        current = [
            section_id for school in schools for section_id, _ in sections_by_school[school.number][current_year]
        ]
        # The loads around the 25-class cap go to itinerant co-teachers (a special-education
        # or language specialist), based at the first school and affiliated with every school.
        start, end = f"{current_year}-08-15", f"{current_year + 1}-06-05"
        for load in CO_TEACHING_LOADS:
            teacher_id = self.new_id("teachers")
            first, last = self.first_name(), self.last_name()
            login = f"{ascii_fold(first)[:1] or 't'}{ascii_fold(last) or 'staff'}{teacher_id}"
            self.writer.add(
                "teachers",
                (
                    teacher_id,
                    TEACHER_DCID_OFFSET + teacher_id,
                    USERS_DCID_OFFSET + teacher_id,
                    schools[0].number,
                    first,
                    last,
                    None,
                    login,
                    login,
                    f"{login}@{STAFF_DOMAIN}",
                    1,
                    1,
                ),
            )
            for school in schools:
                self.writer.add("teacher_schools", (teacher_id, school.number))
            for section_id in self.random.sample(current, min(load, len(current))):
                self.section_teacher(section_id, teacher_id, 2, start, end)
        for school in schools:
            teachers = teachers_by_school[school.number]
            for section_id, _ in sections_by_school[school.number][current_year]:
                roll = self.random.random()
                if roll < 0.08:
                    self.section_teacher(section_id, self.random.choice(teachers), 2, start, end)
                elif roll < 0.10:
                    self.section_teacher(section_id, self.random.choice(teachers), 3, start, end)

    def duplicate_teacher_username(self, schools: list[_School]) -> None:
        """Give a teacher of the second school the username of a teacher of the first (same-username case)."""
        self.writer.flush()
        if len(schools) < 2:
            return
        rows = self.connection.execute(
            "SELECT id, schoolid, teacherloginid FROM teachers WHERE status = 1 AND teacherloginid IS NOT NULL "
            "AND schoolid IN (?, ?) ORDER BY id",
            (schools[0].number, schools[1].number),
        ).fetchall()
        first = next(row for row in rows if row[1] == schools[0].number)
        second = next(row for row in rows if row[1] == schools[1].number)
        self.connection.execute(
            "UPDATE teachers SET teacherloginid = ?, loginid = ? WHERE id = ?", (first[2], first[2], second[0])
        )

    def students(
        self,
        school: _School,
        count: int,
        sections: dict[int, list[tuple[int, int]]],
        terms: dict[int, list[tuple[int, str, str]]],
    ) -> None:
        current_year = DISTRICT["import_start_year"]
        term_days = {term_id: (first, last) for periods in terms.values() for term_id, first, last in periods}
        current = sections[current_year]
        previous = sections[current_year - 1]
        family: list[int] = []
        for position in range(count):
            student_id = self.new_id("students")
            dcid = STUDENT_DCID_OFFSET + student_id
            number = str(STUDENT_NUMBER_OFFSET + student_id)
            forced = {0: ("José", "Núñez"), 1: ("Siobhán", "O'Brien"), 2: ("王芳", "李"), 3: ("Дмитрий", "Иванова")}
            first, last = forced.get(position) or (self.first_name(), self.last_name())
            middle = self.random.choice(FIRST_NAMES) if self.random.random() < 0.4 else None
            grade = self.random.randint(school.low_grade, school.high_grade)
            status_roll = self.random.random()
            # positions 4..8 of every school cover each inactive status at least once
            status = {4: -1, 5: 2, 6: 3, 7: 4}.get(position)
            if status is None:
                status = (
                    0
                    if status_roll < 0.9
                    else -1
                    if status_roll < 0.92
                    else 2
                    if status_roll < 0.96
                    else 3
                    if status_roll < 0.99
                    else 4
                )
            entry, exit_ = f"{current_year}-08-15", f"{current_year + 1}-06-05"
            if status == -1:
                entry = f"{current_year + 1}-01-05"
            elif status == 2:
                exit_ = f"{current_year}-10-{self.random.randint(1, 28):02d}"
            elif status == 3:
                entry, exit_ = f"{current_year - 1}-08-15", f"{current_year}-06-01"
            login_base = f"{ascii_fold(first) or 's'}.{ascii_fold(last) or number}"
            web_id: str | None = f"{login_base}{student_id}"
            if position in (8, 9) or self.random.random() < 0.03:
                web_id = None
            roll = self.random.random()
            if position == 8:
                email = None  # no username and no Google email: the username rule's failing case
            elif position == 9:
                email = f"{login_base}{student_id}@{STUDENT_DOMAIN}"  # no username but a Google email
            elif web_id and roll < 0.75:
                email = f"{web_id}@{STUDENT_DOMAIN}"
            elif web_id and roll < 0.85:
                email = f"{web_id}@gmail.com"
            else:
                email = None
            self.writer.add(
                "students",
                (
                    student_id,
                    dcid,
                    number,
                    first,
                    middle,
                    last,
                    web_id,
                    school.number,
                    grade,
                    status,
                    entry,
                    exit_,
                    email,
                ),
            )
            if status != -1:
                self.enrollments(student_id, school, status, current, previous, term_days, exit_)
            family = self.guardians(dcid, last, family)

    def enrollments(
        self,
        student_id: int,
        school: _School,
        status: int,
        current: list[tuple[int, int]],
        previous: list[tuple[int, int]],
        term_days: dict[int, tuple[str, str]],
        exit_date: str,
    ) -> None:
        chosen = self.random.sample(current, min(len(current), self.random.choice(CURRENT_ENROLLMENTS)))
        if self.random.random() < 0.5 and previous:
            chosen.append(self.random.choice(previous))
        for section_id, term_id in chosen:
            cc_id = self.new_id("cc")
            entered, left = term_days[term_id]
            # A transfer-out drops every current enrollment; otherwise 3% are dropped (schedule changes).
            dropped = (status == 2 and left > exit_date) or self.random.random() < 0.03
            if dropped:
                left = exit_date if status == 2 else entered[:8] + "28"
            self.writer.add(
                "cc",
                (
                    cc_id,
                    CC_DCID_OFFSET + cc_id,
                    student_id,
                    -section_id if dropped else section_id,
                    school.number,
                    term_id,
                    entered,
                    left,
                ),
            )

    def guardians(self, student_dcid: int, student_last_name: str, family: list[int]) -> list[int]:
        """Link a student to guardians; siblings (one in five) share the previous student's guardians."""
        if family and self.random.random() < 0.2:
            guardians = family
        else:
            guardians = []
            for _ in range(2 if self.random.random() < 0.7 else 1):
                guardian_id = GUARDIAN_ID_OFFSET + self.new_id("guardian")
                first = self.first_name()
                last = student_last_name if self.random.random() < 0.8 else self.last_name()
                account = None
                if self.random.random() < 0.75:
                    account = self.token()
                    username = f"{ascii_fold(first)[:1] or 'p'}{ascii_fold(last) or 'parent'}{guardian_id}"
                    self.accounts += 1
                    # one account in twenty is disabled (every district, however small, has some)
                    enabled = 0 if self.accounts % 20 == 3 else 1
                    self.writer.add("pcas_account", (account, username, enabled))
                    if self.random.random() < 0.9:
                        domain = self.random.choice(["gmail.com", "yahoo.com", "outlook.com", "icloud.com"])
                        self.writer.add("pcas_emailcontact", (account, f"{username}@{domain}"))
                self.writer.add("guardian", (guardian_id, first, last, account))
                guardians.append(guardian_id)
        for guardian_id in guardians:
            self.writer.add("guardianstudent", (guardian_id, student_dcid, self.random.choice(RELATIONSHIPS)))
        return guardians

    def duplicate_student_username(self, schools: list[_School]) -> None:
        """Give an active student of the second school the username of one of the first school."""
        if len(schools) < 2:
            return
        pick = (
            "SELECT id, student_web_id FROM students WHERE schoolid = ? AND enroll_status = 0 "
            "AND student_web_id IS NOT NULL ORDER BY id LIMIT 1 OFFSET 2"
        )
        first = self.connection.execute(pick, (schools[0].number,)).fetchone()
        second = self.connection.execute(pick, (schools[1].number,)).fetchone()
        self.connection.execute("UPDATE students SET student_web_id = ? WHERE id = ?", (first[1], second[0]))

    def teacher_categories(self) -> None:
        for position, name in enumerate(["Classwork", "Homework", "Quiz", "Test"], start=1):
            self.writer.add("teachercategory", (position, None, name, "district", 1, position, "blue", None))
        # a retired district category: listed with isactive false, refused for new assignments
        self.writer.add("teachercategory", (5, None, "Participation", "district", 0, 5, "grey", "Retired"))
        category_id = 100
        for (users_dcid,) in self.connection.execute(
            "SELECT users_dcid FROM teachers WHERE id % 7 = 0 ORDER BY id"
        ).fetchall():
            for position, name in enumerate(["Labs", "Projects"], start=1):
                category_id += 1
                self.writer.add("teachercategory", (category_id, users_dcid, name, "user", 1, position, "green", None))


def irregularities_default() -> bool:
    """Whether a district is generated with irregularities when the caller does not say."""
    setting = os.environ.get("POWERSCHOOL_SANDBOX_IRREGULARITIES", "").strip().lower()
    if setting in ("on", "1", "true", "yes"):
        return True
    if setting in ("off", "0", "false", "no"):
        return False
    if setting:
        raise store.DatasetError(f"POWERSCHOOL_SANDBOX_IRREGULARITIES must be on or off, not {setting!r}")
    return IRREGULARITIES_BY_DEFAULT


def generate(path: Path, *, size: str, seed: int, irregularities: bool | None = None) -> dict[str, Any]:
    """Generate a district of ``size`` into a new SQLite file at ``path``; return row counts and timing.

    ``irregularities`` (default: :func:`irregularities_default`) applies irregularities.py:
    what real districts have and a tidy generator would not.
    """
    if irregularities is None:
        irregularities = irregularities_default()
    path = Path(path)
    if path.exists():
        raise store.DatasetError(f"{path} already exists; the generator writes new files only")
    started = time.perf_counter()
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        store.create_schema(connection)
        counts = _Generator(connection, size, seed).run()
        store.create_indexes(connection)
        found: dict[str, int] = {}
        if irregularities:
            found = Irregularities(connection, f"{size}:{seed}").apply()
            counts = {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in counts}
        info = {
            **DISTRICT,
            "name": size,
            "seed": seed,
            "size": size,
            "generator_version": GENERATOR_VERSION,
            "source": "generator",
            "irregularities": found,
        }
        store.write_info(connection, info)
        connection.commit()
        connection.execute("ANALYZE")
        connection.commit()
    finally:
        connection.close()
    return {"counts": counts, "seconds": round(time.perf_counter() - started, 2)}
