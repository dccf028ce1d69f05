"""`make demo`: the demo district's import, end to end, on the embedded default.

Starts the PowerSchool SIS simulator (generated demo district, HTTPS), the reference
Learning server and an SMTP catcher; runs `sis_import__demo` with `dag.test()` (real
Airflow tasks, in this process) and staging in SQLite; then changes a few things in the
SIS (a student enrolled in a section, an enrollment dropped, a student renamed), runs the
import again, and prints what each run did and where to look. Each `make demo` starts
from a clean demo state under var/demo/, so it can be run any number of times.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]
STATE_DIR = REPO_ROOT / "var" / "demo"


def say(message: str = "") -> None:
    print(message, flush=True)


def prepare_state() -> None:
    if STATE_DIR.exists():
        shutil.rmtree(STATE_DIR)
    STATE_DIR.mkdir(parents=True)
    os.environ["SIS_LEARNING_STAGING_URL"] = f"sqlite:///{STATE_DIR / 'staging.sqlite'}"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    airflow = Path(sys.executable).parent / "airflow"
    say("Preparing Airflow's metadata database (airflow db migrate) ...")
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_import(dag, label: str) -> str:
    from airflow.utils.state import DagRunState

    say(f"\n=== {label}: running {dag.dag_id} ===")
    started = time.monotonic()
    dag_run = dag.test()
    state = dag_run.state
    say(f"{dag.dag_id} finished: {state} in {time.monotonic() - started:.1f}s (run id {dag_run.run_id})")
    if state != DagRunState.SUCCESS:
        say("The run failed: see the summary below and the failure email in var/demo/mailbox/.")
    return dag_run.run_id


def print_summary(run_id: str) -> None:
    from sis_learning.config import load_district_by_id
    from sis_learning.report import build_summary, format_text
    from sis_learning.staging.base import get_engine

    summary = build_summary(get_engine(), load_district_by_id("demo"), run_id)
    say(format_text(summary))


def main() -> int:
    prepare_state()
    from airflow.dag_processing.dagbag import DagBag

    from scripts.demo_environment import apply_everyday_changes, demo_services

    say("Starting the sandboxes (PowerSchool SIS simulator, reference Learning, SMTP catcher) ...")
    with demo_services(state_dir=STATE_DIR) as services:
        os.environ.update(services.env)
        say(f"  PowerSchool SIS simulator: {services.powerschool.base_url} (CA {services.powerschool.ca_bundle})")
        say(f"  Reference Learning:        {services.learning.base_url}")
        say(f"  SMTP catcher:              {services.smtp.host}:{services.smtp.port} -> {STATE_DIR / 'mailbox'}")
        dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
        if dagbag.import_errors:
            say(f"DAG import errors: {dagbag.import_errors}")
            return 1
        dag = dagbag.dags["sis_import__demo"]

        first = run_import(dag, "First import")
        print_summary(first)

        say("\n=== Changing the SIS between imports ===")
        for line in apply_everyday_changes(services.powerschool, services.learning):
            say(f"  {line}")

        second = run_import(dag, "Second import (only the changes are sent)")
        print_summary(second)

        learning = services.learning
        say("\n=== Where to look ===")
        say(f"  Staged tables (SQLite): {STATE_DIR / 'staging.sqlite'}  (docs/staged-tables.md)")
        say(f"    sqlite3 {STATE_DIR / 'staging.sqlite'} \"SELECT entity, rule, COUNT(*) FROM rejected_rows GROUP BY 1, 2\"")
        say("  Validation results and Data Docs: var/validation/demo/")
        say(f"  Learning state (reference server): {learning.base_url}/api/v1/users (token in the demo's env)")
        say(f"  Emails: {STATE_DIR / 'mailbox'}")
        say("  Airflow UI with the same DAGs: make airflow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
