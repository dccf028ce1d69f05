"""Measure validate + transform on a large synthetic staged run (not a pytest test).

Generates the stg_* rows of one district run directly (no extract), vectorised and in
bounded chunks, then runs ``validate_run`` and ``transform_run`` in a fresh child
process and reports their wall time and that process's peak RSS:

    .venv/bin/python -m tests.transform.benchmark_large_district \
        --students 200000 --enrollments 1000000 \
        [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres | --url sqlite:///var/bench.sqlite]

With a PostgreSQL server URL, a scratch database is created and dropped afterwards.
About 1% of the rows carry problems (missing names, bad emails, dropped enrollments,
inactive students, parents without a portal account) so every path does real work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from sis_learning.staging.base import bulk_insert, create_all, get_engine
from sis_learning.staging.source import STAGED_SOURCE_TABLES

DISTRICT_ID = "bench_district"
RUN_ID = "manual__benchmark"
CHUNK_ROWS = 100_000


def _insert(engine, entity: str, frame: pd.DataFrame) -> None:
    frame = frame.assign(district_id=DISTRICT_ID, run_id=RUN_ID)
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        chunk = chunk.astype(object).where(chunk.notna(), None)
        bulk_insert(engine, STAGED_SOURCE_TABLES[entity], chunk.to_dict("records"))


def generate(engine, students: int, enrollments: int, seed: int = 7) -> dict[str, int]:
    """Stage a district: ~4,000 students per school, ~25 students per section, 5 sections per teacher."""
    rng = np.random.default_rng(seed)
    schools = max(1, students // 4000)
    school_ids = np.array([str(100 + n) for n in range(schools)])
    _insert(
        engine,
        "schools",
        pd.DataFrame(
            {"school_id": school_ids, "school_number": school_ids, "name": [f"School {n}" for n in range(schools)]}
        ),
    )
    terms = pd.DataFrame(
        {
            "term_id": [f"{3500 + n}{k}" for n in range(schools) for k in (0, 1)],
            "school_id": np.repeat(school_ids, 2),
            "start_year": 2025,
            "start_date": ["2025-08-15", "2026-01-10"] * schools,
        }
    )
    _insert(engine, "terms", terms)
    courses_per_school = 200
    course_ids = np.array([str(700000 + n) for n in range(schools * courses_per_school)])
    _insert(
        engine,
        "courses",
        pd.DataFrame(
            {
                "course_id": course_ids,
                "school_id": np.repeat(school_ids, courses_per_school),
                "course_number": [f"C{n}" for n in range(len(course_ids))],
                "course_name": [f"Course {n % 500}" for n in range(len(course_ids))],
            }
        ),
    )

    sections = max(1, enrollments // 25)
    teachers = max(1, sections // 5)
    staff_ids = np.array([str(200000 + n) for n in range(teachers)])
    staff_school = school_ids[np.arange(teachers) % schools]
    staff = pd.DataFrame(
        {
            "staff_id": staff_ids,
            "first_name": "Pat",
            "last_name": [f"Teacher{n}" for n in range(teachers)],
            "teacher_username": [f"t{n}" for n in range(teachers)],
            "email": [f"t{n}@district.org" for n in range(teachers)],
            "school_id": staff_school,
            "school_ids": staff_school,
            "status": 1,
        }
    )
    staff.loc[staff.index % 200 == 0, "teacher_username"] = None  # generated logins
    _insert(engine, "staff", staff)

    section_ids = np.array([str(4000000 + n) for n in range(sections)])
    section_school_index = np.arange(sections) % schools
    section_teacher_index = np.arange(sections) % teachers
    section_frame = pd.DataFrame(
        {
            "section_id": section_ids,
            "school_id": school_ids[section_school_index],
            "course_id": course_ids[
                section_school_index * courses_per_school + (np.arange(sections) // schools) % courses_per_school
            ],
            "term_id": [f"{3500 + s}{n % 2}" for s, n in zip(section_school_index, range(sections), strict=True)],
            "section_number": (np.arange(sections) % 9 + 1).astype(str),
            "expression": "1(A)",
            "staff_id": staff_ids[section_teacher_index],
        }
    )
    _insert(engine, "sections", section_frame)
    leads = pd.DataFrame({"section_id": section_ids, "staff_id": section_frame["staff_id"], "role": "Lead Teacher"})
    co_rows = rng.choice(sections, size=sections // 10, replace=False)
    co = pd.DataFrame(
        {"section_id": section_ids[co_rows], "staff_id": staff_ids[(co_rows + 7) % teachers], "role": "Co-teacher"}
    )
    _insert(engine, "section_teachers", pd.concat([leads, co], ignore_index=True))

    student_ids = np.array([str(3000000 + n) for n in range(students)])
    student_school_index = np.arange(students) % schools
    student_frame = pd.DataFrame(
        {
            "student_id": student_ids,
            "first_name": "Sam",
            "last_name": [f"Student{n}" for n in range(students)],
            "student_username": [f"s{n}" for n in range(students)],
            "email": [f"s{n}@students.district.org" for n in range(students)],
            "school_id": school_ids[student_school_index],
            "grade_level": (np.arange(students) % 13),
            "enroll_status_code": 0,
        }
    )
    problem = rng.random(students)
    student_frame.loc[problem < 0.002, "first_name"] = None
    student_frame.loc[(problem >= 0.002) & (problem < 0.004), "email"] = "not an email"
    student_frame.loc[(problem >= 0.004) & (problem < 0.014), "enroll_status_code"] = 2
    student_frame.loc[(problem >= 0.014) & (problem < 0.02), "student_username"] = None
    _insert(engine, "students", student_frame)

    # Students take sections of their own school.
    sections_of_school = [np.flatnonzero(section_school_index == s) for s in range(schools)]
    enrollment_student = rng.integers(0, students, size=enrollments)
    school_of_row = student_school_index[enrollment_student]
    pick = rng.random(enrollments)
    enrollment_section = np.empty(enrollments, dtype=np.int64)
    for s in range(schools):
        rows = np.flatnonzero(school_of_row == s)
        candidates = sections_of_school[s]
        enrollment_section[rows] = candidates[(pick[rows] * len(candidates)).astype(np.int64)]
    _insert(
        engine,
        "section_enrollments",
        pd.DataFrame(
            {
                "enrollment_id": np.arange(9000000, 9000000 + enrollments).astype(str),
                "section_id": section_ids[enrollment_section],
                "student_id": student_ids[enrollment_student],
                "dropped": rng.random(enrollments) < 0.03,
            }
        ),
    )

    guardians = int(students * 0.75)
    guardian_rows = pd.DataFrame(
        {
            "guardian_id": np.repeat(np.arange(6000000, 6000000 + guardians).astype(str), 2)[:students],
            "student_id": student_ids[: min(students, guardians * 2)],
        }
    )
    guardian_rows = guardian_rows.assign(
        first_name="Alex",
        last_name="Parent" + guardian_rows["guardian_id"],
        portal_username="p" + guardian_rows["guardian_id"],
        portal_enabled=True,
        email="p" + guardian_rows["guardian_id"] + "@mail.example.com",
    )
    guardian_rows.loc[rng.random(len(guardian_rows)) < 0.2, "portal_username"] = None
    _insert(engine, "guardians", guardian_rows)
    return {
        "schools": schools,
        "sections": sections,
        "staff": teachers,
        "students": students,
        "section_enrollments": enrollments,
        "section_teachers": len(leads) + len(co),
        "guardian_rows": len(guardian_rows),
    }


def measure(url: str, results_dir: str) -> None:
    """Child process: run validate and transform once, print timings and peak RSS as JSON."""
    from sis_learning import transform, validate
    from tests.validate.staged_rows import district_config

    engine = create_all(get_engine(url))
    config = district_config(
        district_id=DISTRICT_ID,
        sso_domains={"google": ["students.district.org"]},
        validation_thresholds={"default": 0.05},
    )
    # Wall time and this process's CPU time: on a shared machine the CPU time is the
    # steadier figure (the database server's own CPU is not in it).
    started, cpu = time.perf_counter(), time.process_time()
    validated = validate.validate_run(engine, config, RUN_ID, Path(results_dir))
    validate_seconds, validate_cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    validate.check_thresholds(engine, config, RUN_ID)
    guard_seconds = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    transformed = transform.transform_run(engine, config, RUN_ID)
    transform_seconds, transform_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        json.dumps(
            {
                "load_average": round(os.getloadavg()[0], 1),
                "validate_seconds": round(validate_seconds, 1),
                "validate_cpu_seconds": round(validate_cpu, 1),
                "threshold_guard_seconds": round(guard_seconds, 2),
                "transform_seconds": round(transform_seconds, 1),
                "transform_cpu_seconds": round(transform_cpu, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "validated": validated,
                "transformed": transformed,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--results-dir", default="var/bench/validation")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(arguments.url, arguments.results_dir)
        return

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url, scratch, admin = arguments.url, None, None
    if url.startswith("postgresql"):
        scratch = f"sis_learning_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{scratch}"'))
        url = make_url(url).set(database=scratch).render_as_string(hide_password=False)
    try:
        started = time.perf_counter()
        engine = create_all(get_engine(url))
        staged = generate(engine, arguments.students, arguments.enrollments)
        engine.dispose()
        print(json.dumps({"staged": staged, "generate_seconds": round(time.perf_counter() - started, 1)}), flush=True)
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.transform.benchmark_large_district",
                "--measure",
                "--url",
                url,
                "--results-dir",
                arguments.results_dir,
            ],
            check=True,
        )
        del child
    finally:
        if scratch and admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
