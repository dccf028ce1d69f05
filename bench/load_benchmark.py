"""Benchmark: diff + load of a large district into the reference Learning server, full then 1% changed.

    PYTHONPATH=plugins .venv/bin/python -m bench.load_benchmark --users 200000 --rosters 1000000
    PYTHONPATH=plugins .venv/bin/python -m bench.load_benchmark --users 20000 --rosters 100000 \
        --staging-url postgresql+psycopg2://... --learning-database-url postgresql+psycopg2://...

Writes two runs of ``learning_*`` rows straight into staging (streamed in chunks: memory
stays bounded at any size, the way transform writes them), then for each run times
``compute_changes`` and ``load_run`` against a reference Learning server started for the
purpose (HTTPS, its own SQLite database), and prints rows/s, Learning requests and rows
sent versus rows changed, as JSON. The second run changes about 1% of the rows: renamed
users, new students with rosters, dropped roster rows, students who left.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sandbox.learning.testing import running_learning
from sis_learning.diff import check_safety, compute_changes
from sis_learning.hooks.learning import LearningHook
from sis_learning.load import load_run
from sis_learning.staging.base import bulk_insert, create_all, delete_run_rows, get_engine
from sis_learning.staging.learning import LEARNING_TABLES
from tests.load.district_rows import make_config

CHUNK_ROWS = 20_000
DISTRICT_ID = "benchmark"


class SyntheticDistrict:
    """A district described by counts; rows are generated on the fly, never held whole.

    ``changed_every`` = 100 changes one row in a hundred in the second run.
    """

    def __init__(self, users: int, rosters: int, schools: int = 50, changed_every: int | None = None):
        self.schools = [str(1000 + index) for index in range(schools)]
        self.teachers = max(schools, users // 20)
        self.parents = users // 20
        self.students = users - self.teachers - self.parents
        self.classes = self.teachers * 5
        self.students_per_class = max(1, (rosters - self.classes) // self.classes)
        self.changed_every = changed_every

    def _changed(self, index: int) -> bool:
        return self.changed_every is not None and index % self.changed_every == 0

    def _school(self, index: int) -> str:
        return self.schools[index % len(self.schools)]

    def _left(self, student: int) -> bool:
        # In the changed run, one student in (10 x changed_every) has left the district.
        return self.changed_every is not None and student % (10 * self.changed_every) == 5

    def organizations(self) -> Iterator[dict]:
        for school in self.schools:
            yield {"organization_id": school, "name": f"School {school}"}

    def users(self) -> Iterator[dict]:
        for index in range(self.teachers):
            yield self._user(f"2{index:07d}", "T", self._school(index), "Teacher", f"T{index}", index)
        for index in range(self.students):
            if not self._left(index):
                yield self._user(f"3{index:07d}", "S", self._school(index), "Student", f"S{index}", index)
        for index in range(self.parents):
            yield self._user(f"4{index:07d}", "P", self._school(index), "Parent", f"P{index}", index)
        if self.changed_every:
            for index in range(self.students // (10 * self.changed_every)):
                yield self._user(f"6{index:07d}", "S", self._school(index), "Newcomer", f"N{index}", index)

    def _user(self, external_id: str, user_type: str, school: str, first: str, last: str, index: int) -> dict:
        if user_type == "S" and self._changed(index + 1):
            last += " Renamed"
        return {
            "external_id": external_id,
            "first_name": first,
            "last_name": last,
            "login": f"u{external_id}",
            "email": f"u{external_id}@example.org",
            "user_type": user_type,
            "organization_id": school,
            "enabled": True,
            "sso_email_address": None,
            "password_temporary": True,
            "login_generated": False,
        }

    def user_levels(self) -> Iterator[dict]:
        for index in range(self.students):
            if not self._left(index):
                yield {"external_id": f"3{index:07d}", "level_id": str(index % 12 + 1)}

    def class_rows(self) -> Iterator[dict]:
        for index in range(self.classes):
            teacher = index // 5
            yield {
                "class_id": f"5{index:07d}",
                "name": f"Course {index} ({index % 5 + 1}) - 1(A)",
                "code": f"C{index % 400}",
                "year": "3500",
                "teacher_id": f"2{teacher:07d}",
                "organization_id": self._school(teacher),
            }

    def rosters(self) -> Iterator[dict]:
        roster_index = 0
        for index in range(self.classes):
            class_id = f"5{index:07d}"
            yield {"class_id": class_id, "user_type": "T", "user_id": f"2{index // 5:07d}", "role": "teacher"}
            for offset in range(self.students_per_class):
                student = (index * self.students_per_class + offset) * 7 % self.students
                roster_index += 1
                if self._left(student) or (self._changed(roster_index + 3)):
                    continue  # left the district, or dropped the class
                yield {"class_id": class_id, "user_type": "S", "user_id": f"3{student:07d}", "role": "student"}
            if self.changed_every and index % self.changed_every == 0:
                newcomers = self.students // (10 * self.changed_every)
                if newcomers:
                    yield {
                        "class_id": class_id,
                        "user_type": "S",
                        "user_id": f"6{index % newcomers:07d}",
                        "role": "student",
                    }

    def parent_links(self) -> Iterator[dict]:
        for index in range(self.parents):
            child = index * 3 % self.students
            if not self._left(child):
                yield {"parent_id": f"4{index:07d}", "child_id": f"3{child:07d}"}

    def entity_rows(self) -> dict[str, Iterator[dict]]:
        return {
            "organizations": self.organizations(),
            "users": self.users(),
            "user_levels": self.user_levels(),
            "classes": self.class_rows(),
            "rosters": self.rosters(),
            "parent_links": self.parent_links(),
        }


def write_run(engine, district: SyntheticDistrict, run_id: str) -> dict[str, int]:
    counts = {}
    with engine.begin() as connection:
        for entity, rows in district.entity_rows().items():
            table = LEARNING_TABLES[entity]
            delete_run_rows(connection, table, DISTRICT_ID, run_id)
            chunk, total = [], 0
            for row in rows:
                chunk.append({"district_id": DISTRICT_ID, "run_id": run_id, **row})
                if len(chunk) == CHUNK_ROWS:
                    total += bulk_insert(connection, table, chunk)
                    chunk = []
            total += bulk_insert(connection, table, chunk)
            counts[entity] = total
    return counts


def measure_run(engine, config, run_id: str, hook: LearningHook, in_flight: int, diff_only: bool = False) -> dict:
    started = time.perf_counter()
    changes = compute_changes(engine, config, run_id)
    diff_seconds = time.perf_counter() - started
    rows = sum(sum(actions.values()) for actions in changes.values())
    print(
        json.dumps({"run": run_id, "rows": rows, "diff_seconds": round(diff_seconds, 2)}), file=sys.stderr, flush=True
    )
    if diff_only:
        return {
            "rows_in_run": rows,
            "diff_seconds": round(diff_seconds, 2),
            "diff_rows_per_second": round(rows / diff_seconds),
        }
    check_safety(engine, config, run_id, approve_mass_changes=True)
    summary = load_run(engine, config, run_id, hook, max_batches_in_flight=in_flight)
    total_seconds = time.perf_counter() - started
    return {
        "rows_in_run": rows,
        "diff_seconds": round(diff_seconds, 2),
        "diff_rows_per_second": round(rows / diff_seconds),
        "load_seconds": summary["seconds"],
        "seconds_waiting_for_learning": summary["seconds_waiting_for_learning"],
        "seconds_recording_results": summary["seconds_recording_results"],
        "total_seconds": round(total_seconds, 2),
        "rows_per_second_end_to_end": round(rows / total_seconds),
        "rows_sent_per_second": round(summary["rows_sent"] / summary["seconds"]) if summary["seconds"] else None,
        "learning_requests": summary["requests"],
        "rows_sent": summary["rows_sent"],
        "rows_changed": summary["rows_changed"],
        "changes": {
            entity: {action: count for action, count in actions.items() if count} for entity, actions in changes.items()
        },
        "refused": sum(counts["refused"] for counts in summary["counts"].values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--rosters", type=int, default=1_000_000)
    parser.add_argument("--schools", type=int, default=50)
    parser.add_argument("--changed-every", type=int, default=100, help="1 row in N changes in the second run")
    parser.add_argument("--staging-url", default=None, help="default: a SQLite file in a temporary directory")
    parser.add_argument("--in-flight", type=int, default=2, help="Learning batches in flight at once")
    parser.add_argument("--diff-only", action="store_true", help="time writing and diffing the full run, then stop")
    parser.add_argument(
        "--learning-database-url",
        default=None,
        help="the reference Learning server's database (default: its own SQLite file)",
    )
    arguments = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="benchmark-load-"))
    engine = create_all(get_engine(arguments.staging_url or f"sqlite:///{work / 'staging.sqlite'}"))
    config = make_config(DISTRICT_ID, default_password="env:BENCHMARK_DEFAULT_PASSWORD")
    os.environ.setdefault("BENCHMARK_DEFAULT_PASSWORD", secrets.token_urlsafe(12))
    report: dict = {"staging": engine.dialect.name, "users": arguments.users, "rosters_target": arguments.rosters}
    token = secrets.token_urlsafe(24)
    report["learning_database"] = (arguments.learning_database_url or "sqlite").split(":", 1)[0]
    with running_learning(domains={DISTRICT_ID: token}, database_url=arguments.learning_database_url) as learning:
        hook = LearningHook.from_settings(
            learning.base_url, token, learning.ca_bundle, max_concurrent_requests=arguments.in_flight
        )
        full = SyntheticDistrict(arguments.users, arguments.rosters, arguments.schools)
        started = time.perf_counter()
        report["full_rows_written"] = write_run(engine, full, "full")
        report["full_staging_write_seconds"] = round(time.perf_counter() - started, 2)
        report["full"] = measure_run(engine, config, "full", hook, arguments.in_flight, arguments.diff_only)
        print(json.dumps(report, indent=2), flush=True)
        if arguments.diff_only:
            return 0

        changed = SyntheticDistrict(arguments.users, arguments.rosters, arguments.schools, arguments.changed_every)
        started = time.perf_counter()
        report["incremental_rows_written"] = write_run(engine, changed, "incremental")
        report["incremental_staging_write_seconds"] = round(time.perf_counter() - started, 2)
        report["incremental"] = measure_run(engine, config, "incremental", hook, arguments.in_flight)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
