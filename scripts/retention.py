"""`make retention`: remove a district's staged rows older than its retention settings.

    make retention                        # the demo district, its YAML's retention settings
    make retention DISTRICT=springfield DRY_RUN=1     # count only: what would go
    make retention DISTRICT=springfield DAYS=7        # this once, keep a week of detail

The import's report task does this after every successful run; this is for a staging
database that grew before retention existed, or to keep less once. Staging is
``SIS_LEARNING_STAGING_URL`` (unset: whichever of var/staging.sqlite, the one `make airflow`
and the DAGs use, and var/demo/staging.sqlite, `make demo`'s, holds the latest import run;
as `make explain`).
What is removed and what is always kept: docs/staged-tables.md, "Retention"; the logic is
``sis_learning.staging.retention``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--district", default="demo")
    parser.add_argument("--dry-run", action="store_true", help="count what would be removed; remove nothing")
    parser.add_argument("--days", type=float, help="keep this many days of detail rows (default: the YAML's)")
    parser.add_argument("--changes-days", type=float, help="keep this many days of changes sent (default: the YAML's)")
    arguments = parser.parse_args(argv)
    from scripts.demo_environment import local_staging_url, missing_sqlite_file
    from sis_learning.config import load_district_by_id
    from sis_learning.staging.base import create_all, get_engine
    from sis_learning.staging.retention import prune

    config = load_district_by_id(arguments.district)
    days = arguments.days if arguments.days is not None else config.retention.days
    changes_days = arguments.changes_days if arguments.changes_days is not None else config.retention.changes_days
    if days is not None and changes_days is not None and changes_days < days:
        changes_days = days  # what was sent is kept at least as long as the rest (as the YAML requires)
    for value, name in ((days, "--days"), (changes_days, "--changes-days")):
        if value is not None and value <= 0:
            parser.error(f"{name} must be more than 0")
    url = local_staging_url()
    if (missing := missing_sqlite_file(url)) is not None:  # nothing staged: never create an empty database
        print(f"No staging database at {missing}: nothing to remove.")
        return 0
    engine = create_all(get_engine(url))
    print(f"Staging: {engine.url.render_as_string(hide_password=True)}")
    print(prune(engine, config.district_id, days, changes_days, dry_run=arguments.dry_run).text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
