"""Scale measurements for docs/scale-out.md: many districts on the Celery stack, and parse time.

    .venv/bin/python scripts/celery_measure.py parse --districts 1 20 200
    .venv/bin/python scripts/celery_measure.py districts --count 20

``parse``: writes N district YAMLs (copies of the demo district under other ids) to a
temporary folder, points SIS_LEARNING_DISTRICTS_DIR at it and runs ``airflow dags
report`` (a DagBag over dags/, the way the dag-processor loads a file), printing each
DAG file's parse time and DAG count.

``districts``: the same kind of generated districts, run for real on the Celery stack
(scripts/celery_stack.py: two workers, concurrency 4, PostgreSQL, Redis) against one SIS
simulator serving the demo dataset and one reference Learning server with a domain (and
token) per district, on PostgreSQL. First one district alone, then COUNT districts at
once (all unpaused together, as at 06:00 when they share a time zone); prints both
wall-clock times and the per-worker task counts. The generated districts are the demo
district with grade push off (no gradebook watchers), so the figure is the import's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (str(REPO_ROOT / "plugins"), str(REPO_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from scripts.celery_stack import (  # noqa: E402 (the repository's paths first)
    DEFAULT_POSTGRES,
    CeleryStack,
    StackSettings,
    airflow_environment,
    format_report,
    run_dags,
)

TEMPLATE = REPO_ROOT / "include" / "districts" / "demo.yaml"


def district_ids(count: int, prefix: str = "district") -> list[str]:
    return [f"{prefix}_{number:03d}" for number in range(1, count + 1)]


def write_districts(directory: Path, ids: list[str], overrides: dict | None = None) -> None:
    """One YAML per district id: the demo district's settings under its own connections."""
    template = yaml.safe_load(TEMPLATE.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    for district_id in ids:
        config = json.loads(json.dumps(template))
        config["name"] = f"Generated district {district_id}"
        config["powerschool"]["connection_id"] = f"powerschool_{district_id}"
        config["learning"]["connection_id"] = f"learning_{district_id}"
        config["default_password"] = f"env:{district_id.upper()}_DEFAULT_PASSWORD"
        for key, value in (overrides or {}).items():
            section, _, name = key.partition(".")
            if name:
                config.setdefault(section, {})[name] = value
            else:
                config[key] = value
        (directory / f"{district_id}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def measure_parse(counts: list[int]) -> list[dict]:
    results = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="districts-") as folder:
            write_districts(Path(folder), district_ids(count))
            with tempfile.TemporaryDirectory(prefix="airflow-home-") as home:
                env = airflow_environment({"AIRFLOW_HOME": home, "SIS_LEARNING_DISTRICTS_DIR": folder})
                env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"
                subprocess.run(
                    [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                started = time.monotonic()
                report = subprocess.run(
                    [str(Path(sys.executable).parent / "airflow"), "dags", "report", "-o", "json"],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                elapsed = time.monotonic() - started
        rows = json.loads(report.stdout[report.stdout.index("[") :])
        for row in rows:
            row["districts"] = count
        results += rows
        print(f"{count:>4} districts: `airflow dags report` {elapsed:.1f}s in all", flush=True)
        for row in rows:
            print(
                f"       {row['file']:<20} parse {row['duration']:<16} "
                f"dags {row['dag_num']:<4} tasks {row['task_num']}",
                flush=True,
            )
    return results


@contextlib.contextmanager
def district_sandboxes(ids: list[str], learning_database_url: str) -> Iterator[dict[str, str]]:
    """One SIS simulator (demo dataset) for every district, one Learning domain per district."""
    from sandbox.learning.testing import running_learning
    from sandbox.powerschool.testing import running_powerschool
    from sandbox.smtp import running_smtp
    from scripts.demo_environment import connection_env

    tokens = {district_id: secrets.token_urlsafe(24) for district_id in ids}
    with (
        tempfile.TemporaryDirectory(prefix="measure-mailbox-") as mailbox,
        running_powerschool("demo") as powerschool,
        running_learning(domains=tokens, database_url=learning_database_url) as learning,
        running_smtp(mailbox_dir=Path(mailbox)) as smtp,
    ):
        env: dict[str, str] = {}
        for district_id, token in tokens.items():
            env.update(connection_env(district_id, powerschool, learning, token, smtp))
            env[f"{district_id.upper()}_DEFAULT_PASSWORD"] = secrets.token_urlsafe(12)
        yield env


@contextlib.contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_durations(stack: CeleryStack, runs: dict[str, str]) -> tuple[float, float, float]:
    """From the metadata DB: (first start to last end, shortest run, longest run) in seconds."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.metadata_url)
    try:
        with engine.connect() as connection:
            rows = [
                connection.execute(
                    text("SELECT start_date, end_date FROM dag_run WHERE dag_id = :dag_id AND run_id = :run_id"),
                    {"dag_id": dag_id, "run_id": run_id},
                ).one()
                for dag_id, run_id in runs.items()
            ]
    finally:
        engine.dispose()
    spans = [(end - start).total_seconds() for start, end in rows]
    total = (max(end for _, end in rows) - min(start for start, _ in rows)).total_seconds()
    return total, min(spans), max(spans)


def measure_districts(
    count: int, workers: int, concurrency: int, timeout: float, overrides: dict | None = None
) -> None:
    ids = district_ids(count + 1)
    baseline, many = ids[:1], ids[1:]
    name = f"sl_measure_{uuid.uuid4().hex[:6]}"
    with (
        tempfile.TemporaryDirectory(prefix="measure-") as scratch,
        scratch_database(DEFAULT_POSTGRES, f"{name}_learning") as learning_url,
    ):
        districts_dir = Path(scratch) / "districts"
        write_districts(districts_dir, ids, overrides={"grade_push.enabled": False, **(overrides or {})})
        with district_sandboxes(ids, learning_url) as sandbox_env:
            settings = StackSettings(
                name=name,
                workers=workers,
                concurrency=concurrency,
                airflow_home=Path(scratch) / "airflow",
                districts_dir=districts_dir,
                extra_env=sandbox_env,
                fresh=True,
            )
            stack = CeleryStack(settings)
            try:
                with stack:
                    for label, group in (("1 district", baseline), (f"{count} districts", many)):
                        dag_ids = [f"sis_import__{district_id}" for district_id in group]
                        runs, states, seconds = run_dags(stack, dag_ids, timeout=timeout)
                        total, shortest, longest = run_durations(stack, runs)
                        failed = sorted(dag_id for dag_id, state in states.items() if state != "success")
                        print(
                            f"\n=== {label}: {seconds:.1f}s from unpause to the last run finished "
                            f"(runs: first start to last end {total:.1f}s, each {shortest:.1f}-{longest:.1f}s); "
                            f"failed: {failed or 'none'}",
                            flush=True,
                        )
                        print(format_report(stack, runs, states, seconds).splitlines()[-1], flush=True)
                        if os.environ.get("MEASURE_VERBOSE"):
                            print(format_report(stack, runs, states, seconds), flush=True)
            finally:
                stack.drop_databases()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    parse = commands.add_parser("parse", help="DAG file parse time with N district configs")
    parse.add_argument("--districts", type=int, nargs="+", default=[1, 20, 200])
    districts = commands.add_parser("districts", help="one district, then COUNT districts at once, on the Celery stack")
    districts.add_argument("--count", type=int, default=20)
    districts.add_argument("--workers", type=int, default=2)
    districts.add_argument("--concurrency", type=int, default=4)
    districts.add_argument("--timeout", type=float, default=3600)
    districts.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a district setting, e.g. validation_thresholds.default=0.1 (repeatable)",
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "parse":
        measure_parse(arguments.districts)
    else:
        overrides = {key: json.loads(value) for key, _, value in (item.partition("=") for item in arguments.set)}
        measure_districts(arguments.count, arguments.workers, arguments.concurrency, arguments.timeout, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
