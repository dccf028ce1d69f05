"""How fast the Districts pages read staging with 200 districts of 60 runs each (docs/dashboard.md).

Fills a fresh staging database (PostgreSQL by default: ``--url``; SQLite with
``--url sqlite:///path``) with a synthetic history through the staging models' bulk
insert: per district 60 import runs (sync_runs with the stages' counts), the Learning
snapshot (users, classes, rosters, parent links, schools), each run's change set (the
changed rows; the newest run's with every key, unchanged included, as a real run has),
rejected rows and warnings per run, and a day of grade-push ledger rows. Then it times
the overview query and a district page's queries (median of ``--repeat`` calls, warm).

    .venv/bin/python bench/dashboard_benchmark.py --url postgresql+psycopg2://postgres@127.0.0.1:5432/dash_bench

A figure, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from sis_learning.dashboard import queries  # noqa: E402
from sis_learning.staging.base import bulk_insert, create_all, get_engine  # noqa: E402
from sis_learning.staging.changes import ChangeSet, LearningSnapshot  # noqa: E402
from sis_learning.staging.ledger import GradePushScore  # noqa: E402
from sis_learning.staging.quality import RejectedRow, ValidationWarning  # noqa: E402
from sis_learning.staging.runs import SyncRun  # noqa: E402

NOW = datetime(2026, 12, 5, 12, 0, 0)


def fresh_database(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database).unlink(missing_ok=True)
        return url
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
    return url


def fill(
    engine,
    districts: int,
    runs: int,
    users: int,
    classes: int,
    rosters: int,
    links: int,
    schools: int,
    changed_per_run: int,
    rejected_per_run: int,
    warned_per_run: int,
    scores_per_day: int,
) -> dict[str, int]:
    totals: dict[str, int] = {}

    def insert(model, rows):
        bulk_insert(engine, model, rows)
        totals[model.__tablename__] = totals.get(model.__tablename__, 0) + len(rows)

    for number in range(districts):
        district = f"d{number:03d}"
        run_ids = [f"scheduled__{(NOW - timedelta(hours=12 * (runs - index))).isoformat()}" for index in range(runs)]
        insert(
            SyncRun,
            [
                dict(
                    district_id=district,
                    run_id=run_id,
                    dag_id=f"sis_import__{district}",
                    kind="import",
                    status="success" if index % 15 else "failed",
                    stage="finished" if index % 15 else "safety_guard",
                    started_at=NOW - timedelta(hours=12 * (runs - index)),
                    finished_at=NOW - timedelta(hours=12 * (runs - index), seconds=-95),
                    counts={
                        "learning_users": {"transformed": users + index, "created": 5, "updated": 20, "deactivated": 2},
                        "learning_classes": {"transformed": classes, "updated": 1},
                        "learning_rosters": {"transformed": rosters, "created": 40, "removed": 30},
                        "learning_parent_links": {"transformed": links},
                        "students": {"extracted": users, "rejected": 3},
                    },
                    durations={"load": 12.5},
                    error=None,
                    validation_docs=None,
                )
                for index, run_id in enumerate(run_ids)
            ],
        )
        keys = (
            [("users", f"S:{i}", str(i % schools)) for i in range(users)]
            + [("classes", f"c{i}", str(i % schools)) for i in range(classes)]
            + [("rosters", f"c{i % classes}:S:{i}", str(i % schools)) for i in range(rosters)]
            + [("parent_links", f"P:{i}:S:{i}", None) for i in range(links)]
        )
        insert(
            LearningSnapshot,
            [
                dict(
                    district_id=district,
                    entity=entity,
                    key=key,
                    organization_id=school,
                    content_hash="0" * 64,
                    payload="{}",
                    active=index % 50 != 0,
                    run_id=run_ids[-1],
                    updated_at=NOW,
                )
                for index, (entity, key, school) in enumerate(keys)
            ]
            + [
                dict(
                    district_id=district,
                    entity="organizations",
                    key=str(school),
                    organization_id=str(school),
                    content_hash="0" * 64,
                    payload=json.dumps({"name": f"School {school}"}),
                    active=True,
                    run_id=run_ids[-1],
                    updated_at=NOW,
                )
                for school in range(schools)
            ],
        )
        changes = []
        for index, run_id in enumerate(run_ids):
            newest = index == len(run_ids) - 1
            for position, (entity, key, school) in enumerate(keys if newest else keys[:changed_per_run]):
                action = (
                    ("create", "update", "deactivate" if entity == "users" else "remove")[position % 3]
                    if (position < changed_per_run)
                    else "unchanged"
                )
                changes.append(
                    dict(
                        district_id=district,
                        run_id=run_id,
                        entity=entity,
                        key=key,
                        organization_id=school,
                        action=action,
                        status="skipped" if action == "unchanged" else "accepted",
                        content_hash="0" * 64,
                        payload="{}",
                        learning_result=None,
                        reason=None,
                    )
                )
        insert(ChangeSet, changes)
        insert(
            RejectedRow,
            [
                dict(
                    district_id=district,
                    run_id=run_id,
                    stage="validate",
                    entity="students",
                    source_id=str(i),
                    rule=("login_present", "teacher_reference")[i % 2],
                    reason="the student has no username",
                    blocks=None,
                    caused_by=None,
                    created_at=NOW,
                )
                for run_id in run_ids
                for i in range(rejected_per_run)
            ],
        )
        insert(
            ValidationWarning,
            [
                dict(
                    district_id=district,
                    run_id=run_id,
                    stage="validate",
                    entity="students",
                    source_id=str(i),
                    rule="email_format",
                    field="email",
                    value="x",
                    reason="not an email address",
                    action="cleared",
                    created_at=NOW,
                )
                for run_id in run_ids
                for i in range(warned_per_run)
            ],
        )
        insert(
            GradePushScore,
            [
                dict(
                    district_id=district,
                    gradable_id=f"g{i // 30}",
                    student_id=str(i),
                    assignment_section_id="a",
                    score="9",
                    version=1,
                    cursor=i,
                    status="refused" if i % 100 == 0 else "pushed",
                    refused_version=None,
                    message=None,
                    run_id="push",
                    pushed_at=NOW - timedelta(seconds=40 * i),
                    changed_at=NOW - timedelta(seconds=40 * i + 1 + i % 7),
                    updated_at=NOW - timedelta(seconds=40 * i),
                )
                for i in range(scores_per_day)
            ],
        )
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    return totals


def timed(work, repeat: int) -> float:
    work()  # warm: the first call pays for connections and the planner
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/sis_learning_dashboard_bench")
    parser.add_argument("--districts", type=int, default=200)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--rosters", type=int, default=2500)
    parser.add_argument("--links", type=int, default=500)
    parser.add_argument("--schools", type=int, default=5)
    parser.add_argument("--changed-per-run", type=int, default=100)
    parser.add_argument("--rejected-per-run", type=int, default=20)
    parser.add_argument("--warned-per-run", type=int, default=10)
    parser.add_argument("--scores-per-day", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database (default: drop it at the end)")
    args = parser.parse_args()

    url = fresh_database(args.url)
    engine = create_all(get_engine(url))
    started = time.perf_counter()
    totals = fill(
        engine,
        args.districts,
        args.runs,
        args.users,
        args.classes,
        args.rosters,
        args.links,
        args.schools,
        args.changed_per_run,
        args.rejected_per_run,
        args.warned_per_run,
        args.scores_per_day,
    )
    filled = time.perf_counter() - started
    configured = {
        f"d{n:03d}": {"name": f"District {n}", "import_dag_id": f"sis_import__d{n:03d}"} for n in range(args.districts)
    }
    rows = queries.districts_overview(engine, configured, now=NOW)
    assert len(rows) == args.districts and all(row.last_run for row in rows)
    overview_ms = timed(lambda: queries.districts_overview(engine, configured, now=NOW), args.repeat)
    district_ms = timed(lambda: queries.district_detail(engine, "d100", now=NOW), args.repeat)
    print(
        f"staging: {engine.dialect.name}; filled in {filled:.0f} s: "
        + ", ".join(f"{table} {rows:,}" for table, rows in totals.items())
    )
    print(
        f"Districts page queries ({args.districts} districts x {args.runs} runs): {overview_ms:.0f} ms (median of "
        f"{args.repeat}, warm)"
    )
    print(f"one district page's queries: {district_ms:.0f} ms")
    engine.dispose()
    if not args.keep and make_url(url).get_backend_name() != "sqlite":
        admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
