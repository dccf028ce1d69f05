"""scripts/airflow-env.sh, the environment every command here runs Airflow in."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONNECT_ARGS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC")


def sourced(command: str, **extra: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in CONNECT_ARGS and not key.startswith("SIS_")}
    env.update(extra)
    return subprocess.run(
        ["bash", "-c", f"source scripts/airflow-env.sh && {command}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_writer_to_the_sqlite_metadata_database_waits_60_s_for_it(tmp_path):
    """`make airflow`'s processes share one SQLite file: a write waits for it rather than fail after 5 s.

    Under load a trigger from the UI answered HTTP 500 ("database is locked") after Python's
    default of 5 s.
    """
    busy = (
        "from airflow import settings; "
        "connection = settings.engine.connect(); "
        "print('busy_timeout', connection.exec_driver_sql('PRAGMA busy_timeout').scalar())"
    )
    result = sourced(f'.venv/bin/python -c "{busy}"', AIRFLOW_HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "busy_timeout 60000" in result.stdout, result.stdout + result.stderr


def test_postgresql_metadata_gets_airflows_own_connection_arguments():
    """A SQLite-only argument (timeout) would break a PostgreSQL connection: it is not set then."""
    shown = "; ".join(f'echo "{name}=${{{name}-unset}}"' for name in CONNECT_ARGS)
    postgresql = "postgresql+psycopg2://airflow@127.0.0.1/airflow"
    result = sourced(shown, SIS_LEARNING_METADATA_URL=postgresql)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{name}=unset" for name in CONNECT_ARGS]
    # Inherited from a process that sourced it for SQLite (scripts/celery_stack.py starts from os.environ).
    inherited = dict.fromkeys(CONNECT_ARGS, "sis_learning.airflow_sqlite.CONNECT_ARGS")
    result = sourced(shown, SIS_LEARNING_METADATA_URL=postgresql, **inherited)
    assert result.stdout.split() == [f"{name}=unset" for name in CONNECT_ARGS]
    result = sourced(shown)
    assert result.stdout.split() == [f"{name}=sis_learning.airflow_sqlite.CONNECT_ARGS" for name in CONNECT_ARGS]
