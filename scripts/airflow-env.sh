# Sourced by the Makefile and scripts: Airflow runs from the repository.
# Home in an ignored folder, SQLite metadata by default, examples off, dags/plugins here.
# Set SIS_LEARNING_METADATA_URL (a SQLAlchemy URL) to use PostgreSQL for Airflow's
# metadata, and SIS_LEARNING_STAGING_URL for the staged tables.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO_ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO_ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO_ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__UNIT_TEST_MODE="${AIRFLOW__CORE__UNIT_TEST_MODE:-False}"
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${SIS_LEARNING_METADATA_URL:-sqlite:///$AIRFLOW_HOME/airflow.db}"
# SQLite metadata: a writer waits up to 60 s for the file instead of failing after 5 s
# ("database is locked" under load: a 500 on Trigger, a task retried); plugins/sis_learning/airflow_sqlite.py.
# Not for PostgreSQL, also when inherited from a shell that sourced this for SQLite (the Celery stack's tests).
SIS_LEARNING_SQLITE_CONNECT_ARGS=sis_learning.airflow_sqlite.CONNECT_ARGS
for name in AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC; do
  if [ -z "${SIS_LEARNING_METADATA_URL:-}" ]; then
    export "$name=$SIS_LEARNING_SQLITE_CONNECT_ARGS"
  elif [ "${!name:-}" = "$SIS_LEARNING_SQLITE_CONNECT_ARGS" ]; then
    unset "$name"
  fi
done
# Re-parse DAG files every 5 s (default 30): a grade push run is not held back by a stale
# "max active runs reached" flag set during a parse (docs/grade-push.md).
export AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="${AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL:-5}"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$AIRFLOW_HOME/logs"
# Warnings an operator cannot act on, silenced by their exact text (nothing else): Airflow's plugin
# loader reads plugins/.airflowignore with pathspec's GitWildMatchPattern, deprecated in pathspec 1.x
# (every task process printed it first); dag.test()'s in-process API client (the demo, the tests)
# warns about httpx in starlette's TestClient. With any PYTHONWARNINGS set, Airflow leaves
# DeprecationWarnings at Python's default (shown only for __main__); `ruff --select AIR3` reports
# our own uses of deprecated Airflow APIs.
SIS_LEARNING_QUIET_WARNINGS='ignore:GitWildMatchPattern:DeprecationWarning,ignore:Using `httpx` with `starlette.testclient`'
export PYTHONWARNINGS="${PYTHONWARNINGS:-$SIS_LEARNING_QUIET_WARNINGS}"
export PYTHONPATH="$REPO_ROOT/plugins:$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$AIRFLOW_HOME"
