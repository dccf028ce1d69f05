"""The irregularities every real PowerSchool district has, applied to a generated district.

The generator writes a tidy district; ``apply`` then makes it look like a real one
(issue 22), deterministically for a seed, in every size, each irregularity at least
once and counted (the dataset info's ``irregularities``):

- ``overlapping_ids``: DCIDs come from one sequence per table, so some students share
  their Students.DCID with a teacher's Teachers.DCID, some guardians' GuardianID with a
  teacher's, and teachers' Users.DCID with students' DCIDs;
- ``bad_emails``: emails that are not addresses (``none``, ``n/a``, ``x@``), with
  surrounding spaces, in upper case, and missing ones;
- ``prek_without_grade_level``: pre-K students in elementary schools with no grade level;
- ``duplicate_full_names``: two different students with the same first and last name;
- ``same_web_id_two_schools``: a Student_Web_ID held by students of two schools;
- ``district_office_staff``: staff whose home school is the District Office (SchoolID 0,
  not a school anyone can select), affiliated with two schools;
- ``lead_teacher_replaced``: a section whose lead teacher left mid-year (the old
  SectionTeacher row ends 2025-12-19, the new lead's starts 2026-01-05);
- ``ended_co_teachers``: co-teacher SectionTeacher rows that ended (2025-10-31);
- ``transfers_between_schools``: students who moved from one school to another in
  October (their CC rows at the old school dropped, the new school's active);
- ``guardian_children_two_schools``: a guardian with children in two schools;
- ``empty_expression``: sections whose expression (period) is empty (NULL);
- ``re_enrolled_after_drop``: students dropped from a section in September and enrolled in
  it again: the first CC row dropped (negative SectionID), a new CC row for the same section.

Counted beside them (the generator writes these in every district, tidy or not):
``names_with_apostrophes``, ``names_with_diacritics``, ``names_in_non_latin_scripts``
(people whose first or last name holds them) and ``missing_emails``.

Everything is done in SQL on the finished dataset, so a district with irregularities is
the same district as without them, plus these changes.
"""

from __future__ import annotations

import math
import random
import sqlite3
import unicodedata
from typing import Any

CURRENT_YEAR = 2025
TRANSFER_DATE = f"{CURRENT_YEAR}-10-15"
LEAD_LEFT, LEAD_STARTED = f"{CURRENT_YEAR}-12-19", f"{CURRENT_YEAR + 1}-01-05"
CO_TEACHER_ENDED = f"{CURRENT_YEAR}-10-31"
DROPPED_ON, RE_ENROLLED_ON = f"{CURRENT_YEAR}-09-12", f"{CURRENT_YEAR}-09-22"
BAD_EMAILS = ("none", "n/a", "x@", "spaces", "upper", "missing")
# Students at these positions of their school carry the generator's forced cases (names,
# every enroll status, no username): irregularities leave them as they are.
FORCED_POSITIONS = 10


def name_kinds(name: str) -> set[str]:
    """Which of apostrophes, diacritics and non-Latin letters a name holds."""
    kinds = set()
    if "'" in name or "\u2019" in name:
        kinds.add("names_with_apostrophes")
    for character in name:
        if not character.isalpha() or character.isascii():
            continue
        if unicodedata.name(character, "").startswith("LATIN"):
            kinds.add("names_with_diacritics")
        else:
            kinds.add("names_in_non_latin_scripts")
    return kinds


def _share(total: int, ratio: float, least: int) -> int:
    return min(total, max(least, math.ceil(total * ratio)))


class Irregularities:
    def __init__(self, connection: sqlite3.Connection, seed: str):
        self.connection = connection
        self.random = random.Random(f"powerschool-irregularities:{seed}")
        self.seed = seed
        self.counts: dict[str, int] = {}

    def rows(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, parameters).fetchall()

    def value(self, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
        return self.connection.execute(sql, parameters).fetchone()[0]

    def apply(self) -> dict[str, int]:
        self.empty_expression()
        self.lead_teacher_replaced()
        self.ended_co_teachers()
        self.district_office_staff()
        self.prek_without_grade_level()
        self.duplicate_full_names()
        self.transfers_between_schools()
        self.guardian_children_two_schools()
        self.bad_emails()
        self.overlapping_ids()  # after the others that find rows by the generator's DCIDs
        self.re_enrolled_after_drop()  # its own random stream: the others' choices stay as they were
        self.count_names_and_missing_emails()
        self.counts["same_web_id_two_schools"] = self.value(
            "SELECT count(*) FROM (SELECT student_web_id FROM students WHERE student_web_id IS NOT NULL "
            "GROUP BY student_web_id HAVING count(DISTINCT schoolid) > 1)"
        )
        return dict(sorted(self.counts.items()))

    # -- helpers ---------------------------------------------------------------------------
    def ordinary_students(self, where: str = "", parameters: tuple[Any, ...] = ()) -> list[tuple[int, int]]:
        """(id, school number) of active students with a username past each school's forced positions."""
        return self.rows(
            "SELECT id, schoolid FROM (SELECT *, "
            "row_number() OVER (PARTITION BY schoolid ORDER BY id) AS position FROM students) "
            f"WHERE position > {FORCED_POSITIONS} AND enroll_status = 0 AND student_web_id IS NOT NULL "
            + (f"AND {where} " if where else "")
            + "ORDER BY id",
            parameters,
        )

    def current_sections(self, where: str = "") -> list[tuple[int, int, int]]:
        """(id, school number, lead Teachers.ID) of current-year sections with a lead teacher."""
        first_term = (CURRENT_YEAR - 1990) * 100
        return self.rows(
            "SELECT id, schoolid, teacher FROM sections WHERE teacher <> 0 AND termid >= ? "
            + (f"AND {where} " if where else "")
            + "ORDER BY id",
            (first_term,),
        )

    def next_id(self, table: str, column: str = "id") -> int:
        return self.value(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}")

    # -- the irregularities ----------------------------------------------------------------
    def empty_expression(self) -> None:
        sections = self.current_sections()
        chosen = self.random.sample(sections, _share(len(sections), 0.02, 2))
        self.connection.executemany(
            "UPDATE sections SET expression = NULL, external_expression = NULL WHERE id = ?",
            [(section_id,) for section_id, *_ in chosen],
        )
        self.counts["empty_expression"] = len(chosen)

    def lead_teacher_replaced(self) -> None:
        """The old lead's SectionTeacher row ends before the winter break; a colleague's starts after."""
        active = {}
        for teacher_id, school in self.rows("SELECT id, schoolid FROM teachers WHERE status = 1 AND staffstatus = 1"):
            active.setdefault(school, []).append(teacher_id)
        # (not a section led by an inactive teacher: the generator keeps one on purpose)
        sections = [
            row
            for row in self.current_sections(
                "expression IS NOT NULL AND teacher IN (SELECT id FROM teachers WHERE status = 1)"
            )
            if len(active.get(row[1], [])) > 1
        ]
        chosen = self.random.sample(sections, _share(len(sections), 0.01, 2))
        next_row = self.next_id("sectionteacher")
        for section_id, school, old_lead in chosen:
            new_lead = self.random.choice([teacher for teacher in active[school] if teacher != old_lead])
            (end,) = self.rows("SELECT end_date FROM sectionteacher WHERE sectionid = ? AND roleid = 1", (section_id,))[
                0
            ]
            self.connection.execute(
                "UPDATE sectionteacher SET end_date = ? WHERE sectionid = ? AND roleid = 1", (LEAD_LEFT, section_id)
            )
            self.connection.execute(
                "INSERT INTO sectionteacher (id, sectionid, teacherid, roleid, start_date, end_date, allocation, "
                "priorityorder) VALUES (?, ?, ?, 1, ?, ?, 1.0, 1)",
                (next_row, section_id, new_lead, LEAD_STARTED, end),
            )
            next_row += 1
            self.connection.execute("UPDATE sections SET teacher = ? WHERE id = ?", (new_lead, section_id))
        self.counts["lead_teacher_replaced"] = len(chosen)

    def ended_co_teachers(self) -> None:
        # Not the itinerant co-teachers (their loads of 24, 25, 26 and 30 classes test the cap).
        rows = self.rows(
            "SELECT id FROM sectionteacher WHERE roleid = 2 AND teacherid IN (SELECT teacherid FROM sectionteacher "
            "WHERE roleid = 2 GROUP BY teacherid HAVING count(*) < 20) ORDER BY id"
        )
        chosen = self.random.sample(rows, _share(len(rows), 0.15, 1))
        self.connection.executemany(
            "UPDATE sectionteacher SET end_date = ? WHERE id = ?", [(CO_TEACHER_ENDED, row_id) for (row_id,) in chosen]
        )
        self.counts["ended_co_teachers"] = len(chosen)

    def district_office_staff(self) -> None:
        """Home school: the District Office (SchoolID 0, no Schools row); affiliated with two schools."""
        schools = [number for (number,) in self.rows("SELECT school_number FROM schools ORDER BY school_number")]
        teachers = self.rows(
            "SELECT t.id, t.schoolid FROM teachers t WHERE t.status = 1 AND t.staffstatus = 1 "
            "AND t.teacherloginid IS NOT NULL "
            "AND (SELECT count(*) FROM teacher_schools ts WHERE ts.teacherid = t.id) = 1 "
            "ORDER BY t.id"
        )
        chosen = self.random.sample(teachers, min(len(teachers), max(2, len(schools) // 2)))
        for teacher_id, home in chosen:
            other = schools[(schools.index(home) + 1) % len(schools)]
            self.connection.execute("UPDATE teachers SET schoolid = 0 WHERE id = ?", (teacher_id,))
            self.connection.execute(
                "INSERT OR IGNORE INTO teacher_schools (teacherid, schoolid) VALUES (?, ?)", (teacher_id, other)
            )
        self.counts["district_office_staff"] = len(chosen)

    def prek_without_grade_level(self) -> None:
        elementary = [number for (number,) in self.rows("SELECT school_number FROM schools WHERE low_grade = 0")]
        chosen = []
        for school in elementary:
            students = self.ordinary_students("schoolid = ?", (school,))
            chosen += self.random.sample(students, _share(len(students), 0.02, 1))
        self.connection.executemany(
            "UPDATE students SET grade_level = NULL WHERE id = ?", [(student_id,) for student_id, _school in chosen]
        )
        self.counts["prek_without_grade_level"] = len(chosen)

    def duplicate_full_names(self) -> None:
        students = self.ordinary_students("grade_level IS NOT NULL")
        by_school: dict[int, list[int]] = {}
        for student_id, school in students:
            by_school.setdefault(school, []).append(student_id)
        pairs = []
        for ids in by_school.values():  # in every school, one pair; more in large ones
            for _ in range(_share(len(ids), 0.005, 1) if len(ids) >= 4 else 0):
                pairs.append(tuple(self.random.sample(ids, 2)))
        if len(by_school) > 1:  # and one pair across two schools
            first, second = list(by_school)[:2]
            pairs.append((self.random.choice(by_school[first]), self.random.choice(by_school[second])))
        for original, copy in pairs:
            self.connection.execute(
                "UPDATE students SET first_name = (SELECT first_name FROM students WHERE id = ?), "
                "last_name = (SELECT last_name FROM students WHERE id = ?) WHERE id = ?",
                (original, original, copy),
            )
        self.counts["duplicate_full_names"] = len(pairs)

    def transfers_between_schools(self) -> None:
        """Moved in October: the old school's current CC rows dropped, the new school's from the move on."""
        schools = [number for (number,) in self.rows("SELECT school_number FROM schools ORDER BY school_number")]
        if len(schools) < 2:
            return
        students = self.ordinary_students("grade_level IS NOT NULL")
        chosen = self.random.sample(students, _share(len(students), 0.01, 2))
        first_term = (CURRENT_YEAR - 1990) * 100
        next_cc = self.next_id("cc")
        cc_dcid = self.next_id("cc", "dcid")
        for student_id, school in chosen:
            old_school = schools[(schools.index(school) + 1) % len(schools)]
            old_sections = self.rows(
                "SELECT id, termid FROM sections WHERE schoolid = ? AND termid >= ? ORDER BY id",
                (old_school, first_term),
            )
            for section_id, term_id in self.random.sample(old_sections, min(2, len(old_sections))):
                self.connection.execute(
                    "INSERT INTO cc (id, dcid, studentid, sectionid, schoolid, termid, dateenrolled, dateleft) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        next_cc,
                        cc_dcid,
                        student_id,
                        -section_id,
                        old_school,
                        term_id,
                        f"{CURRENT_YEAR}-08-15",
                        TRANSFER_DATE,
                    ),
                )
                next_cc, cc_dcid = next_cc + 1, cc_dcid + 1
            self.connection.execute("UPDATE students SET entrydate = ? WHERE id = ?", (TRANSFER_DATE, student_id))
            self.connection.execute(
                "UPDATE cc SET dateenrolled = ? WHERE studentid = ? AND sectionid > 0 AND termid >= ? "
                "AND dateenrolled < ?",
                (TRANSFER_DATE, student_id, first_term, TRANSFER_DATE),
            )
        self.counts["transfers_between_schools"] = len(chosen)

    def re_enrolled_after_drop(self) -> None:
        """Dropped from a section and enrolled in it again (a schedule change undone).

        As PowerSchool does it: the student's CC row is dropped (SectionID negated, DateLeft the
        day of the drop) and the re-enrollment is a new CC row (a new ID and DCID) for the same
        section and term, from the day of the return to the row's old DateLeft. The student is in
        the class; the dropped row must not take them out of it, nor count twice.
        """
        first_term = (CURRENT_YEAR - 1990) * 100
        pick = random.Random(f"powerschool-irregularities:re-enrolled:{self.seed}")
        rows = self.rows(
            "SELECT cc.id, cc.dcid, cc.studentid, cc.sectionid, cc.schoolid, cc.termid, cc.dateleft FROM cc "
            "JOIN students s ON s.id = cc.studentid WHERE s.enroll_status = 0 AND s.entrydate <> ? "
            "AND cc.sectionid > 0 AND cc.termid >= ? AND cc.dateenrolled < ? AND cc.dateleft > ? "
            "AND cc.studentid IN (SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY schoolid ORDER BY id) "
            f"AS position FROM students) WHERE position > {FORCED_POSITIONS}) ORDER BY cc.id",
            (TRANSFER_DATE, first_term, DROPPED_ON, RE_ENROLLED_ON),
        )
        first_row: dict[int, tuple[Any, ...]] = {}
        for row in rows:
            first_row.setdefault(row[2], row)  # one section per student: their lowest CC row
        candidates = list(first_row.values())
        chosen = sorted(pick.sample(candidates, _share(len(candidates), 0.005, 2)) if candidates else [])
        next_cc = self.next_id("cc")
        cc_dcid = self.next_id("cc", "dcid")
        for cc_id, _dcid, student_id, section_id, school, term_id, left in chosen:
            self.connection.execute(
                "UPDATE cc SET sectionid = ?, dateleft = ? WHERE id = ?", (-section_id, DROPPED_ON, cc_id)
            )
            self.connection.execute(
                "INSERT INTO cc (id, dcid, studentid, sectionid, schoolid, termid, dateenrolled, dateleft) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (next_cc, cc_dcid, student_id, section_id, school, term_id, RE_ENROLLED_ON, left),
            )
            next_cc, cc_dcid = next_cc + 1, cc_dcid + 1
        self.counts["re_enrolled_after_drop"] = len(chosen)

    def guardian_children_two_schools(self) -> None:
        links = self.rows(
            "SELECT gs.guardianid, s.schoolid FROM guardianstudent gs JOIN students s ON s.dcid = gs.studentsdcid "
            "JOIN guardian g ON g.guardianid = gs.guardianid WHERE g.accountidentifier IS NOT NULL "
            "AND s.enroll_status = 0 ORDER BY gs.rowid"
        )
        schools_of: dict[int, set[int]] = {}
        for guardian_id, school in links:
            schools_of.setdefault(guardian_id, set()).add(school)
        single = [guardian_id for guardian_id, schools in schools_of.items() if len(schools) == 1]
        students = self.ordinary_students()
        chosen = self.random.sample(single, _share(len(single), 0.01, 2))
        for guardian_id in chosen:
            home = next(iter(schools_of[guardian_id]))
            child = self.random.choice([student_id for student_id, school in students if school != home])
            dcid = self.value("SELECT dcid FROM students WHERE id = ?", (child,))
            self.connection.execute(
                "INSERT INTO guardianstudent (guardianid, studentsdcid, relationship) VALUES (?, ?, 'Mother')",
                (guardian_id, dcid),
            )
        self.counts["guardian_children_two_schools"] = len(chosen)

    def bad_emails(self) -> None:
        """A few percent of emails are not addresses; every kind in every table."""
        total = 0
        for table, key, column, where in (
            ("students", "id", "email", "student_web_id IS NOT NULL AND enroll_status = 0"),
            ("teachers", "id", "email_addr", "teacherloginid IS NOT NULL AND status = 1"),
            ("pcas_emailcontact", "rowid", "emailaddress", "1 = 1"),
        ):
            rows = self.rows(
                f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL AND {where} ORDER BY {key}"
            )
            if table == "students":
                positions = {student_id for student_id, _ in self.ordinary_students()}
                rows = [row for row in rows if row[0] in positions]
            chosen = self.random.sample(rows, _share(len(rows), 0.03, len(BAD_EMAILS)))
            for number, (row_key, email) in enumerate(chosen):
                kind = BAD_EMAILS[number % len(BAD_EMAILS)]
                messy = {
                    "none": "none",
                    "n/a": "n/a",
                    "x@": "x@",
                    "spaces": f"  {email} ",
                    "upper": email.upper(),
                    "missing": None,
                }[kind]
                self.connection.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (messy, row_key))
            total += len(chosen)
        self.counts["bad_emails"] = total

    def count_names_and_missing_emails(self) -> None:
        """Counted, not made: the generator already writes these for every district.

        People (students, teachers, guardians) whose first or last name holds an apostrophe,
        a Latin letter with a diacritic, or letters of a non-Latin script; and missing emails
        (students, teachers, Parent Portal accounts without an email contact).
        """
        counts = {"names_with_apostrophes": 0, "names_with_diacritics": 0, "names_in_non_latin_scripts": 0}
        for first, last in self.rows(
            "SELECT first_name, last_name FROM students UNION ALL "
            "SELECT first_name, last_name FROM teachers UNION ALL "
            "SELECT firstname, lastname FROM guardian"
        ):
            name = f"{first or ''} {last or ''}"
            kinds = name_kinds(name)
            for kind in kinds:
                counts[kind] += 1
        self.counts.update(counts)
        self.counts["missing_emails"] = self.value(
            "SELECT (SELECT count(*) FROM students WHERE email IS NULL) + (SELECT count(*) FROM teachers "
            "WHERE email_addr IS NULL) + (SELECT count(*) FROM pcas_account pa WHERE NOT EXISTS (SELECT 1 FROM "
            "pcas_emailcontact pe WHERE pe.pcas_accounttoken = pa.pcas_accounttoken AND pe.emailaddress IS NOT NULL))"
        )

    def overlapping_ids(self) -> None:
        """One DCID sequence per table: the numbers of students, teachers, users and guardians meet.

        Teachers.DCID continue from a few percent below the last Students.DCID, GuardianIDs from
        a few below the last Teachers.DCID, and Users.DCID start at the first Students.DCID.
        """
        students = self.value("SELECT count(*) FROM students")
        first_student, last_student = self.rows("SELECT min(dcid), max(dcid) FROM students")[0]
        overlap = _share(students, 0.03, 2)
        teacher_base = last_student - overlap  # Teachers.ID 1 gets the DCID of the overlap's first student
        teachers = self.value("SELECT max(id) FROM teachers")
        old_users = {
            users_dcid: teacher_id for teacher_id, users_dcid in self.rows("SELECT id, users_dcid FROM teachers")
        }
        self.connection.execute("UPDATE teachers SET dcid = ? + id", (teacher_base,))
        self.connection.execute("UPDATE teachers SET users_dcid = ? + id", (first_student - 1,))
        self.connection.executemany(
            "UPDATE teachercategory SET users_dcid = ? WHERE users_dcid = ?",
            [(first_student - 1 + teacher_id, users_dcid) for users_dcid, teacher_id in sorted(old_users.items())],
        )
        shared_guardians = max(1, min(3, teachers // 4))
        guardian_base = teacher_base + teachers - shared_guardians  # the first guardians share the last teachers' DCIDs
        old_first = self.value("SELECT min(guardianid) FROM guardian")
        self.connection.execute("UPDATE guardian SET guardianid = guardianid - ? + ?", (old_first - 1, guardian_base))
        self.connection.execute(
            "UPDATE guardianstudent SET guardianid = guardianid - ? + ?", (old_first - 1, guardian_base)
        )
        self.counts["overlapping_ids"] = self.value(
            "SELECT (SELECT count(*) FROM students WHERE dcid IN (SELECT dcid FROM teachers) "
            "OR dcid IN (SELECT guardianid FROM guardian)) "
            "+ (SELECT count(*) FROM guardian WHERE guardianid IN (SELECT dcid FROM teachers))"
        )
