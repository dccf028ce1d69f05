"""Which staging database `make explain` and `make retention` read at a checkout, and that neither creates one.

After `make demo` a person runs `make explain ID=...`: the demo staged into var/demo/staging.sqlite,
`make airflow` into var/staging.sqlite. The commands read the one written last, and a command that
finds no database says so instead of creating an empty one (which, being the newest file, would
then hide the demo's from every later command).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from scripts import demo_environment, explain, retention


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
