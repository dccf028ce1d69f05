"""The district generator: deterministic, referentially sound, and every case the import rules exist for."""

from __future__ import annotations

import time

import pytest

from sandbox.powerschool import datasets, generator, store


def dump(path):
    with store.DatasetStore(path) as dataset:
        return {table: list(dataset.rows(table)) for table in store.SIS_TABLES}


def test_same_seed_same_district_other_seed_other_district(tmp_path):
    generator.generate(tmp_path / "a.sqlite", size="tiny", seed=5)
    generator.generate(tmp_path / "b.sqlite", size="tiny", seed=5)
    generator.generate(tmp_path / "c.sqlite", size="tiny", seed=6)
    assert dump(tmp_path / "a.sqlite") == dump(tmp_path / "b.sqlite")
    assert dump(tmp_path / "a.sqlite")["students"] != dump(tmp_path / "c.sqlite")["students"]


def test_tiny_is_generated_well_under_a_second(tmp_path):
    started = time.perf_counter()
    generator.generate(tmp_path / "tiny.sqlite", size="tiny", seed=1)
    assert time.perf_counter() - started < 1.0


def test_unknown_size_and_existing_target_are_refused(tmp_path):
    with pytest.raises(store.DatasetError, match="unknown dataset size"):
        generator.generate(tmp_path / "x.sqlite", size="XXL", seed=1)
    (tmp_path / "exists.sqlite").write_text("")
    with pytest.raises(store.DatasetError, match="already exists"):
        generator.generate(tmp_path / "exists.sqlite", size="tiny", seed=1)


@pytest.fixture(
    scope="module",
    params=[("tiny", False), ("demo", False), ("tiny", True), ("demo", True)],
    ids=["tiny", "demo", "tiny-irregular", "demo-irregular"],
)
def district(request):
    size, irregular = request.param
    with store.DatasetStore(datasets.resolve_dataset(size, seed=1, irregularities=irregular)) as dataset:
        yield size, dataset


@pytest.fixture(scope="module", params=["tiny", "demo"])
def irregular_district(request):
    with store.DatasetStore(datasets.resolve_dataset(request.param, seed=1, irregularities=True)) as dataset:
        yield request.param, dataset


def scalar(dataset, sql, parameters=()):
    return next(iter(dataset.query(sql, parameters)[0].values()))


def test_sizes(district):
    size, dataset = district
    profile = generator.SIZES[size]
    assert dataset.count("schools") == profile.schools
    assert dataset.count("students") == profile.students
    cc_per_student = dataset.count("cc") / dataset.count("students")
    assert 4 <= cc_per_student <= 6


def test_referential_integrity(district):
    _, dataset = district
    orphans = {
        "cc students": "SELECT count(*) FROM cc WHERE studentid NOT IN (SELECT id FROM students)",
        "cc sections": "SELECT count(*) FROM cc WHERE abs(sectionid) NOT IN (SELECT id FROM sections)",
        "cc terms": "SELECT count(*) FROM cc c JOIN sections s ON s.id = abs(c.sectionid) WHERE c.termid <> s.termid",
        "section terms": "SELECT count(*) FROM sections s WHERE NOT EXISTS "
        "(SELECT 1 FROM terms t WHERE t.schoolid = s.schoolid AND t.id = s.termid)",
        "section courses": "SELECT count(*) FROM sections s WHERE NOT EXISTS "
        "(SELECT 1 FROM courses c WHERE c.schoolid = s.schoolid AND c.course_number = s.course_number)",
        "section teachers": "SELECT count(*) FROM sections WHERE teacher <> 0 "
        "AND teacher NOT IN (SELECT id FROM teachers)",
        "lead rows": "SELECT count(*) FROM sections s WHERE s.teacher <> 0 "
        "AND NOT EXISTS (SELECT 1 FROM sectionteacher st "
        "WHERE st.sectionid = s.id AND st.teacherid = s.teacher AND st.roleid = 1)",
        "sectionteacher": "SELECT count(*) FROM sectionteacher WHERE sectionid NOT IN (SELECT id FROM sections) "
        "OR teacherid NOT IN (SELECT id FROM teachers) OR roleid NOT IN (SELECT id FROM roledef)",
        "guardianstudent": "SELECT count(*) FROM guardianstudent WHERE studentsdcid NOT IN (SELECT dcid FROM students) "
        "OR guardianid NOT IN (SELECT guardianid FROM guardian)",
        "accounts": "SELECT count(*) FROM guardian WHERE accountidentifier IS NOT NULL AND accountidentifier NOT IN "
        "(SELECT pcas_accounttoken FROM pcas_account)",
        "students school": "SELECT count(*) FROM students WHERE schoolid NOT IN (SELECT school_number FROM schools)",
        "affiliations": "SELECT count(*) FROM teachers t WHERE t.schoolid <> 0 AND NOT EXISTS (SELECT 1 FROM "
        "teacher_schools ts WHERE ts.teacherid = t.id AND ts.schoolid = t.schoolid)",
        "district office staff without a school": "SELECT count(*) FROM teachers t WHERE t.schoolid = 0 AND "
        "(SELECT count(*) FROM teacher_schools ts WHERE ts.teacherid = t.id) < 2",
    }
    assert {name: scalar(dataset, sql) for name, sql in orphans.items()} == dict.fromkeys(orphans, 0)


def test_internal_ids_and_dcids_differ(district):
    _, dataset = district
    for table in ("students", "sections", "teachers", "cc", "schools", "terms", "courses"):
        assert scalar(dataset, f"SELECT count(*) FROM {table} WHERE id = dcid") == 0, table
    assert scalar(dataset, "SELECT count(*) FROM teachers WHERE users_dcid = dcid") == 0


def test_every_case_the_import_rules_exist_for(district):
    _, dataset = district
    counts = {
        "inactive students": "SELECT count(*) FROM students WHERE enroll_status <> 0",
        "each inactive status": "SELECT count(DISTINCT enroll_status) - 1 FROM students",
        "inactive staff": "SELECT count(*) FROM teachers WHERE status <> 1",
        "sections without a teacher": "SELECT count(*) FROM sections WHERE teacher = 0",
        "current sections without a teacher": "SELECT count(*) FROM sections s JOIN terms t ON t.schoolid = s.schoolid "
        "AND t.id = s.termid WHERE s.teacher = 0 AND t.yearid = 35",
        "sections led by an inactive teacher": "SELECT count(*) FROM sections s JOIN teachers t ON t.id = s.teacher "
        "WHERE t.status = 2",
        "sections before 2025": "SELECT count(*) FROM sections s JOIN terms t ON t.schoolid = s.schoolid "
        "AND t.id = s.termid WHERE t.yearid < 35",
        "students without username": "SELECT count(*) FROM students WHERE student_web_id IS NULL AND enroll_status = 0",
        "students without username or email": "SELECT count(*) FROM students WHERE student_web_id IS NULL "
        "AND email IS NULL AND enroll_status = 0",
        "students without username but a Google email": "SELECT count(*) FROM students WHERE student_web_id IS NULL "
        "AND email LIKE '%@students.demo-usd.org' AND enroll_status = 0",
        "active teachers without username": "SELECT count(*) FROM teachers WHERE teacherloginid IS NULL AND status = 1",
        "guardians without portal account": "SELECT count(*) FROM guardian WHERE accountidentifier IS NULL",
        "guardians with portal account": "SELECT count(*) FROM guardian WHERE accountidentifier IS NOT NULL",
        "disabled portal accounts": "SELECT count(*) FROM pcas_account WHERE isenabled = 0",
        "dropped enrollments": "SELECT count(*) FROM cc WHERE sectionid < 0",
        "student usernames in two schools": "SELECT count(*) FROM (SELECT student_web_id FROM students WHERE "
        "student_web_id IS NOT NULL GROUP BY student_web_id "
        "HAVING count(DISTINCT schoolid) > 1)",
        "teacher usernames in two schools": "SELECT count(*) FROM (SELECT teacherloginid FROM teachers WHERE "
        "teacherloginid IS NOT NULL GROUP BY teacherloginid "
        "HAVING count(DISTINCT schoolid) > 1)",
        "staff emails on the district domain": "SELECT count(*) FROM teachers WHERE email_addr LIKE '%@demo-usd.org'",
        "staff emails elsewhere": "SELECT count(*) FROM teachers WHERE email_addr NOT LIKE '%@demo-usd.org'",
        "student emails elsewhere": "SELECT count(*) FROM students WHERE email NOT LIKE '%@students.demo-usd.org'",
        "multi-school staff": "SELECT count(*) FROM (SELECT teacherid FROM teacher_schools GROUP BY teacherid "
        "HAVING count(*) > 1)",
        "support staff rows": "SELECT count(*) FROM sectionteacher WHERE roleid = 3",
        "user categories": "SELECT count(*) FROM teachercategory WHERE categorytype = 'user'",
    }
    found = {name: scalar(dataset, sql) for name, sql in counts.items()}
    assert found["each inactive status"] == 4
    assert [name for name, value in found.items() if value == 0] == []


def test_co_teaching_loads_around_the_cap(district):
    _, dataset = district
    loads = [
        row["n"]
        for row in dataset.query(
            "SELECT teacherid, count(DISTINCT sectionid) AS n FROM sectionteacher WHERE roleid = 2 GROUP BY teacherid"
        )
    ]
    assert {24, 25, 26, 30} <= set(loads)


def test_terms_cover_three_school_years_with_yearid_from_start_year(district):
    _, dataset = district
    rows = dataset.query("SELECT DISTINCT yearid, id, substr(firstday, 1, 4) AS year FROM terms WHERE isyearrec = 1")
    assert {row["yearid"] for row in rows} == {33, 34, 35}
    assert all(row["id"] == row["yearid"] * 100 and int(row["year"]) - 1990 == row["yearid"] for row in rows)


def test_names_in_several_scripts(district):
    _, dataset = district
    names = {row["last_name"] for row in dataset.rows("students")} | {
        row["first_name"] for row in dataset.rows("students")
    }
    assert any("'" in name for name in names)
    assert any(any(ord(character) > 0x2E80 for character in name) for name in names)  # CJK, Hangul
    assert any(any(0x0400 <= ord(character) <= 0x04FF for character in name) for name in names)  # Cyrillic
    assert any(any(character in "áéíóúñüöøł" for character in name) for name in names)


def test_dataset_info_describes_the_district(district):
    size, dataset = district
    info = dataset.info()
    assert info["import_start_year"] == 2025
    assert info["google_domains"] == ["students.demo-usd.org", "demo-usd.org"]
    assert info["size"] == size and info["generator_version"] == generator.GENERATOR_VERSION


IRREGULARITY_ORACLES = {
    # each irregularity of a real district, counted independently of the generator
    "overlapping_ids": "SELECT (SELECT count(*) FROM students WHERE dcid IN (SELECT dcid FROM teachers) "
    "OR dcid IN (SELECT guardianid FROM guardian)) "
    "+ (SELECT count(*) FROM guardian WHERE guardianid IN (SELECT dcid FROM teachers))",
    "bad_emails": "SELECT (SELECT count(*) FROM students WHERE email IN ('none', 'n/a', 'x@') OR email <> trim(email) "
    "OR email <> lower(email)) + (SELECT count(*) FROM teachers WHERE email_addr IN ('none', 'n/a', 'x@') "
    "OR email_addr <> trim(email_addr) OR email_addr <> lower(email_addr)) + (SELECT count(*) FROM "
    "pcas_emailcontact WHERE emailaddress IS NULL OR emailaddress IN ('none', 'n/a', 'x@') "
    "OR emailaddress <> trim(emailaddress) OR emailaddress <> lower(emailaddress))",
    "prek_without_grade_level": "SELECT count(*) FROM students WHERE grade_level IS NULL AND enroll_status = 0",
    "duplicate_full_names": "SELECT count(*) FROM (SELECT first_name, last_name FROM students WHERE enroll_status = 0 "
    "GROUP BY first_name, last_name HAVING count(*) > 1)",
    "same_web_id_two_schools": "SELECT count(*) FROM (SELECT student_web_id FROM students WHERE student_web_id IS NOT "
    "NULL GROUP BY student_web_id HAVING count(DISTINCT schoolid) > 1)",
    "district_office_staff": "SELECT count(*) FROM teachers t WHERE t.schoolid = 0 AND t.status = 1 AND "
    "(SELECT count(*) FROM teacher_schools ts WHERE ts.teacherid = t.id) >= 2",
    "lead_teacher_replaced": "SELECT count(*) FROM sections s WHERE (SELECT count(*) FROM sectionteacher st WHERE "
    "st.sectionid = s.id AND st.roleid = 1) = 2 AND EXISTS (SELECT 1 FROM sectionteacher st "
    "WHERE st.sectionid = s.id AND st.roleid = 1 AND st.teacherid = s.teacher "
    "AND st.start_date = '2026-01-05') AND EXISTS (SELECT 1 FROM sectionteacher st WHERE "
    "st.sectionid = s.id AND st.roleid = 1 AND st.teacherid <> s.teacher "
    "AND st.end_date = '2025-12-19')",
    "ended_co_teachers": "SELECT count(*) FROM sectionteacher WHERE roleid = 2 AND end_date = '2025-10-31'",
    "transfers_between_schools": "SELECT count(*) FROM students s WHERE s.enroll_status = 0 AND s.entrydate = "
    "'2025-10-15' AND EXISTS (SELECT 1 FROM cc WHERE cc.studentid = s.id AND "
    "cc.sectionid < 0 AND cc.schoolid <> s.schoolid AND cc.dateleft = '2025-10-15')",
    "re_enrolled_after_drop": "SELECT count(*) FROM cc d JOIN cc n ON n.studentid = d.studentid "
    "AND n.sectionid = -d.sectionid AND n.termid = d.termid AND n.id > d.id AND n.dcid > d.dcid "
    "WHERE d.sectionid < 0 AND d.dateleft = '2025-09-12' AND n.dateenrolled = '2025-09-22'",
    "guardian_children_two_schools": "SELECT count(*) FROM "
    "(SELECT gs.guardianid FROM guardianstudent gs JOIN students s "
    "ON s.dcid = gs.studentsdcid GROUP BY gs.guardianid "
    "HAVING count(DISTINCT s.schoolid) > 1)",
    "empty_expression": "SELECT count(*) FROM sections WHERE expression IS NULL",
    "names_with_apostrophes": "SELECT count(*) FROM (SELECT first_name || ' ' || last_name AS name FROM students "
    "UNION ALL SELECT first_name || ' ' || last_name FROM teachers UNION ALL "
    "SELECT firstname || ' ' || lastname FROM guardian) WHERE name LIKE '%''%'",
    "missing_emails": "SELECT (SELECT count(*) FROM students WHERE email IS NULL) + (SELECT count(*) FROM teachers "
    "WHERE email_addr IS NULL) + (SELECT count(*) FROM pcas_account WHERE pcas_accounttoken NOT IN "
    "(SELECT pcas_accounttoken FROM pcas_emailcontact WHERE emailaddress IS NOT NULL))",
}
# Counted in Python: which letters a name holds.
NAME_SCRIPTS = ("names_with_diacritics", "names_in_non_latin_scripts")


def people_with(dataset, kind: str) -> int:
    import unicodedata

    names = [
        row["name"]
        for row in dataset.query(
            "SELECT coalesce(first_name, '') || ' ' || coalesce(last_name, '') AS name FROM students UNION ALL "
            "SELECT coalesce(first_name, '') || ' ' || coalesce(last_name, '') FROM teachers UNION ALL "
            "SELECT coalesce(firstname, '') || ' ' || coalesce(lastname, '') FROM guardian"
        )
    ]
    latin = kind == "names_with_diacritics"
    return sum(
        1
        for name in names
        if any(
            character.isalpha()
            and not character.isascii()
            and unicodedata.name(character, "").startswith("LATIN") == latin
            for character in name
        )
    )


def test_irregular_districts_carry_every_irregularity_counted_in_their_info(irregular_district):
    _size, dataset = irregular_district
    counted = dataset.info()["irregularities"]
    assert set(counted) == set(IRREGULARITY_ORACLES) | set(NAME_SCRIPTS)
    found = {name: scalar(dataset, sql) for name, sql in IRREGULARITY_ORACLES.items()}
    found.update({kind: people_with(dataset, kind) for kind in NAME_SCRIPTS})
    assert all(value > 0 for value in found.values()), found
    # what the info says is what the dataset holds (duplicate names and shared guardians
    # may also occur by chance, so the info is a lower bound there)
    for name in (
        "overlapping_ids",
        "prek_without_grade_level",
        "district_office_staff",
        "lead_teacher_replaced",
        "ended_co_teachers",
        "transfers_between_schools",
        "re_enrolled_after_drop",
        "empty_expression",
        "same_web_id_two_schools",
        "names_with_apostrophes",
        "missing_emails",
        *NAME_SCRIPTS,
    ):
        assert counted[name] == found[name], name
    assert (
        found["duplicate_full_names"] >= 1
        and found["guardian_children_two_schools"] >= counted["guardian_children_two_schools"]
    )
    # a few percent of students share their DCID with a teacher, and guardians with a teacher
    students = dataset.count("students")
    shared = scalar(dataset, "SELECT count(*) FROM students WHERE dcid IN (SELECT dcid FROM teachers)")
    assert 0 < shared <= max(2, 0.05 * students)
    assert scalar(dataset, "SELECT count(*) FROM guardian WHERE guardianid IN (SELECT dcid FROM teachers)") > 0
    assert scalar(dataset, "SELECT count(*) FROM teachers WHERE users_dcid IN (SELECT dcid FROM students)") > 0
    kinds = {row["email"] for row in dataset.query("SELECT email FROM students WHERE email IN ('none', 'n/a', 'x@')")}
    assert kinds == {"none", "n/a", "x@"}


def test_irregularities_are_deterministic_and_off_leaves_the_tidy_district(tmp_path):
    generator.generate(tmp_path / "a.sqlite", size="tiny", seed=3, irregularities=True)
    generator.generate(tmp_path / "b.sqlite", size="tiny", seed=3, irregularities=True)
    generator.generate(tmp_path / "c.sqlite", size="tiny", seed=3, irregularities=False)
    assert dump(tmp_path / "a.sqlite") == dump(tmp_path / "b.sqlite")
    tidy = dump(tmp_path / "c.sqlite")
    assert tidy != dump(tmp_path / "a.sqlite")
    with store.DatasetStore(tmp_path / "c.sqlite") as dataset:
        assert dataset.info()["irregularities"] == {}
        assert scalar(dataset, "SELECT count(*) FROM students WHERE dcid IN (SELECT dcid FROM teachers)") == 0
    assert len(tidy["students"]) == generator.SIZES["tiny"].students


@pytest.mark.slow
def test_a_50000_student_district_in_bounded_time_and_memory(tmp_path):
    """M scale in a separate process: CPU time and peak memory stay small (rows stream to SQLite)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    started = os.times()
    output = subprocess.run(
        [sys.executable, "-m", "sandbox.powerschool", "generate", "--size", "M", "--out", str(tmp_path / "m.sqlite")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    finished = os.times()
    report = json.loads(output)
    cpu_seconds = (finished.children_user - started.children_user) + (
        finished.children_system - started.children_system
    )
    assert report["rows"]["students"] == 50_000
    assert report["rows"]["cc"] >= 250_000
    # Bounds, not timings: far above what streaming needs (L measured ~70 MB, ~14 s of CPU) and far
    # below what holding the district whole would take, so they hold on a loaded machine too.
    assert report["peak_rss_mb"] < 1024
    assert cpu_seconds < 120
