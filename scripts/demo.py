"""`make demo`: the demo district's import, end to end, on the embedded default.

Starts the PowerSchool SIS simulator (generated demo district, HTTPS), the reference
Learning server and an SMTP catcher; runs `sis_import__demo` with `dag.test()` (real
Airflow tasks, in this process) and staging in SQLite; then changes a few things in the
SIS (a student enrolled in a section, an enrollment dropped, a student renamed), runs the
import again, and prints what each run did and where to look: only files that are there after
it exits (the sandboxes' addresses are printed as what they are: gone when it ends). Each
`make demo` starts from a clean demo state under var/demo/ (SIS_LEARNING_DEMO_DIR moves it),
so it can be run any number of times.
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
STATE_DIR = Path(os.environ.get("SIS_LEARNING_DEMO_DIR") or REPO_ROOT / "var" / "demo")
DATASET = os.environ.get("SIS_LEARNING_DEMO_DATASET", "demo")  # the simulator's district (tests: tiny)


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
        say(f"The run failed: see the summary below and the failure email in {STATE_DIR / 'mailbox'}/.")
    return dag_run.run_id


def print_summary(run_id: str) -> None:
    from sis_learning.config import load_district_by_id
    from sis_learning.report import build_summary, format_text
    from sis_learning.staging.base import get_engine

    summary = build_summary(get_engine(), load_district_by_id("demo"), run_id)
    summary.run_url = None  # no Airflow UI runs here (make airflow has one)
    say(format_text(summary))


def main() -> int:
    prepare_state()
    from airflow.dag_processing.dagbag import DagBag

    from scripts.demo_environment import apply_everyday_changes, demo_services

    say("Starting the sandboxes (PowerSchool SIS simulator, reference Learning, SMTP catcher) ...")
    with demo_services(dataset=DATASET, state_dir=STATE_DIR) as services:
        os.environ.update(services.env)
        say("  (these addresses answer only while the demo runs)")
        say(f"  PowerSchool SIS simulator: {services.powerschool.base_url}")
        say(f"  Reference Learning:        {services.learning.base_url}")
        say(f"  SMTP catcher:              {services.smtp.host}:{services.smtp.port}")
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

        emails = len(services.smtp.mailbox.messages)
    # Printed after the sandboxes stopped: every path below is there now.
    say("\n=== Where to look (the sandboxes have stopped; these files stay) ===")
    for line in where_to_look(second, emails):
        say(line)
    return 0


def where_to_look(run_id: str, emails: int) -> list[str]:
    """What the demo left behind, each path checked to exist."""
    from sis_learning.import_tasks import validation_results_dir

    staging = STATE_DIR / "staging.sqlite"
    data_docs = validation_results_dir("demo", run_id) / "data_docs" / "index.html"
    mailbox = STATE_DIR / "mailbox"
    places = [
        ("Staged tables (SQLite, docs/staged-tables.md)", staging),
        ("Data Docs of the second run (open in a browser)", data_docs),
        ("What Learning holds now (the reference server's SQLite database)", STATE_DIR / "learning.sqlite"),
    ]
    if emails:
        places.append((f"Emails ({emails}, one .eml file each)", mailbox))
    lines = [f"  {label}:\n    {path}" for label, path in places if path.exists()]
    if not emails:
        lines.append("  Emails: none were sent (a run that succeeds sends none; a failed one emails the district)")
    lines.append(
        "  Why is a student, teacher, parent or class not in Learning? make explain ID=<number, login or email>"
    )
    lines.append("  The Airflow UI with the same DAGs (and make score, grade push): make airflow")
    return lines


if __name__ == "__main__":
    sys.exit(main())
