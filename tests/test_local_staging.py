"""Which staging database `make explain` and `make retention` read at a checkout, and that neither creates one.

After `make demo` a person runs `make explain ID=...`: the demo staged into var/demo/staging.sqlite,
`make airflow` into var/staging.sqlite. The commands read the one with the latest import run
(the one written last when neither has a run), and a command that
finds no database says so instead of creating an empty one (which, being the newest file, would
then hide the demo's from every later command).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from scripts import demo_environment, explain, retention
from sis_learning.staging.base import create_all
from sis_learning.staging.runs import SyncRun


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("SIS_LEARNING_STAGING_URL", raising=False)
    airflow, demo = tmp_path / "var" / "staging.sqlite", tmp_path / "var" / "demo" / "staging.sqlite"
    monkeypatch.setattr(demo_environment, "LOCAL_STAGING_FILES", (airflow, demo))
    return airflow, demo


def write(path: Path, when: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(path).close()
    path.touch()
    os.utime(path, (when, when))


def test_the_most_recently_written_staging_database_is_the_one_read(checkout):
    airflow, demo = checkout
    assert demo_environment.local_staging_url() == f"sqlite:///{airflow}"  # nothing yet: the default's place
    write(airflow, 1_000_000)
    write(demo, 2_000_000)
    assert demo_environment.local_staging_url() == f"sqlite:///{demo}"
    # SQLite in WAL mode writes the -wal file first: a run of `make airflow` that has not checkpointed counts.
    write(airflow.with_name("staging.sqlite-wal"), 3_000_000)
    assert demo_environment.local_staging_url() == f"sqlite:///{airflow}"


def staged_run(path: Path, run_id: str, started: datetime, finished: datetime | None) -> None:
    """A staging database holding one import run, as the pipeline writes it."""
    engine = create_all(create_engine(f"sqlite:///{path}"))
    with engine.begin() as connection:
        connection.execute(
            insert(SyncRun.__table__).values(
                district_id="demo", run_id=run_id, started_at=started, finished_at=finished, counts={}, durations={}
            )
        )
    engine.dispose()


def test_the_database_with_the_latest_run_is_read_even_after_a_look_at_the_other(checkout):
    airflow, demo = checkout
    airflow.parent.mkdir(parents=True, exist_ok=True)
    demo.parent.mkdir(parents=True, exist_ok=True)
    staged_run(demo, "demo_run", datetime(2026, 12, 7, 6, 0), datetime(2026, 12, 7, 6, 1))
    staged_run(airflow, "scheduled__2026-12-07T09:00", datetime(2026, 12, 7, 9, 0), datetime(2026, 12, 7, 9, 2))
    # The README's SQL run on the demo's file afterwards: a read that rewrites the file (WAL
    # checkpoint on close) and leaves it the most recently modified of the two.
    with closing(sqlite3.connect(demo)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("SELECT count(*) FROM sync_runs").fetchall()
    os.utime(demo, (4_000_000_000, 4_000_000_000))
    assert demo_environment.local_staging_url() == f"sqlite:///{airflow}"
    # Looking does not move the choice either: the read-only look writes neither file.
    before = (airflow.stat().st_mtime, demo.stat().st_mtime)
    assert demo_environment.local_staging_url() == f"sqlite:///{airflow}"
    assert (airflow.stat().st_mtime, demo.stat().st_mtime) == before
    # A run still going counts by its start: the demo run now is the latest.
    staged_run(demo, "demo_run_2", datetime(2026, 12, 7, 10, 0), None)
    os.utime(demo, (1_000_000, 1_000_000))
    assert demo_environment.local_staging_url() == f"sqlite:///{demo}"


def test_the_staging_url_setting_wins(checkout, monkeypatch):
    _, demo = checkout
    write(demo, 2_000_000)
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", "postgresql+psycopg://someone@db/staging")
    assert demo_environment.local_staging_url() == "postgresql+psycopg://someone@db/staging"


@pytest.mark.parametrize(
    "command, arguments, said",
    [
        (retention, ["--dry-run"], "No staging database at {path}: nothing to remove."),
        (retention, [], "No staging database at {path}: nothing to remove."),
        (explain, ["300154"], "No staging database at {path} yet: `make demo`, or a run in `make airflow`, fills one."),
    ],
)
def test_a_command_without_a_staging_database_says_so_and_creates_none(checkout, capsys, command, arguments, said):
    airflow, demo = checkout
    assert command.main(arguments) == 0
    assert capsys.readouterr().out.strip() == said.format(path=airflow)
    assert not airflow.exists() and not demo.exists()


def test_make_retention_after_make_demo_reads_the_demos_staging(checkout, capsys):
    airflow, demo = checkout
    write(demo, 2_000_000)
    assert retention.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"Staging: sqlite:///{demo}" in out and "retention for demo: would remove 0 staged rows" in out
    assert not airflow.exists()
