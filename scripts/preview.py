"""`make preview`: a preview (dry run) of the demo district's import; nothing is sent to Learning.

Starts the sandboxes on the demo's state (var/demo/: the staging database and the Learning
domain `make demo` left, or empty ones), runs `sis_import__demo` with the DAG parameter
``preview=true`` (extract, validate, transform and diff as a real run does, then the
change set written as a report instead of the load), and prints where the report is:
``var/previews/demo/<run>/index.html``, a CSV per entity and ``summary.json``.

    make preview                        # the demo district
    make preview PREVIEW_ARGS=--email   # also email the totals to the district's contacts
                                        # (the SMTP catcher: var/demo/mailbox/)

On a real deployment the same preview is a trigger of the district's DAG:
``airflow dags trigger sis_import__<district> --conf '{"preview": true}'`` (or the
"preview" box of the trigger form in the Airflow UI).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]
STATE_DIR = REPO_ROOT / "var" / "demo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--email", action="store_true", help="email the preview's totals to the district's contacts")
    arguments = parser.parse_args()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    os.environ["SIS_LEARNING_STAGING_URL"] = f"sqlite:///{STATE_DIR / 'staging.sqlite'}"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    from airflow.dag_processing.dagbag import DagBag

    from scripts.demo_environment import demo_services

    print("Starting the sandboxes on the demo's state (var/demo/) ...", flush=True)
    with demo_services(state_dir=STATE_DIR) as services:
        os.environ.update(services.env)
        dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "sis_import.py")).dags["sis_import__demo"]
        print("Running sis_import__demo with preview=true (nothing is sent to Learning) ...", flush=True)
        dag_run = dag.test(run_conf={"preview": True, "email_preview": arguments.email})

        from sis_learning.config import load_district_by_id
        from sis_learning.report import build_summary, format_text
        from sis_learning.staging.base import get_engine

        summary = build_summary(get_engine(), load_district_by_id("demo"), dag_run.run_id)
        print(format_text(summary))
        if summary.status != "previewed":
            print("The preview did not finish: see the summary above.")
            return 1
        report = Path(summary.preview_report or "")
        print(f"\nReport: {report}\n  one CSV per entity beside it, and summary.json")
        if arguments.email:
            print(f"  emailed to the district's contacts: {STATE_DIR / 'mailbox'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
