"""`make explain ID=<id>`: why is this student, teacher, parent or class (not) in Learning?

    make explain ID=1000154                  # a DCID, student number, Teachers.ID, section DCID ...
    make explain ID=ava.gonzalez11 DISTRICT=demo
    make explain ID=someone@demo-usd.org

Answers from the staged tables of the district's latest finished import
(``SIS_LEARNING_STAGING_URL``; unset: whichever of var/staging.sqlite, which `make airflow`
fills, and var/demo/staging.sqlite, which `make demo` fills, holds the latest import run).
When staging has no trace of the record, PowerSchool is asked for that one record through the district's Airflow
connection (``AIRFLOW_CONN_POWERSCHOOL_<DISTRICT>``, or the sandboxes `make airflow` is
running). The logic is ``sis_learning.explain``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]
# Written by `make airflow` (SIS_LEARNING_STANDALONE_DIR moves its state, as there).
SANDBOXES_FILE = (
    Path(os.environ.get("SIS_LEARNING_STANDALONE_DIR") or REPO_ROOT / "var" / "standalone") / "sandboxes.json"
)


def powerschool_connection(config) -> bool:
    """True when the district's PowerSchool connection is there (set from make airflow's sandboxes if need be)."""
    name = f"AIRFLOW_CONN_{config.powerschool.connection_id.upper()}"
    if os.environ.get(name):
        return True
    try:
        sandboxes = json.loads(SANDBOXES_FILE.read_text())
    except (OSError, ValueError):
        return False
    if sandboxes.get("district_id") != config.district_id:
        return False
    powerschool = sandboxes["powerschool"]
    os.environ[name] = json.dumps(
        {
            "conn_type": "http",
            "host": powerschool["base_url"],
            "login": powerschool["client_id"],
            "password": powerschool["client_secret"],
            "extra": {"ca_bundle": powerschool["ca_bundle"]},
        }
    )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("identifier", help="a DCID, number, login or email")
    parser.add_argument("--district", default="demo")
    arguments = parser.parse_args(argv)
    from scripts.demo_environment import local_staging_url, missing_sqlite_file
    from sis_learning.config import load_district_by_id
    from sis_learning.explain import explain
    from sis_learning.staging.base import get_engine

    config = load_district_by_id(arguments.district)
    url = local_staging_url()
    if (missing := missing_sqlite_file(url)) is not None:
        print(f"No staging database at {missing} yet: `make demo`, or a run in `make airflow`, fills one.")
        return 0
    engine = get_engine(url)  # read only: a missing table is "no finished import yet"
    hook = None
    if powerschool_connection(config):
        from sis_learning.hooks.district import powerschool_hook

        hook = powerschool_hook(config)
    print(f"Staging: {engine.url.render_as_string(hide_password=True)}")
    print(explain(engine, config, arguments.identifier, hook).text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
