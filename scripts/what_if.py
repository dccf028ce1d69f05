"""`make what-if`: a past run's staged inputs through another mappings folder or district settings.

Runs validate and transform on the staged SIS rows of a past run (in a scratch copy: the
staging database is only read), compares the Learning rows with what that run produced,
and writes a report (var/what-if/<district>/<run>/<time>/index.html, a CSV per entity,
rejections.csv, summary.json). Nothing is sent to Learning.

    make what-if WHAT_IF_ARGS="--mappings /tmp/my-mappings"
    make what-if WHAT_IF_ARGS="--set co_teacher_class_limit=2"
    .venv/bin/python scripts/what_if.py mydistrict --run 'scheduled__2026-...' \\
        --settings /tmp/mydistrict.yaml --mappings /tmp/my-mappings

The staging database is SIS_LEARNING_STAGING_URL, or for the demo district the demo's
(var/demo/staging.sqlite, left by `make demo`). Exit status 0 whether or not anything
differs; 2 when the run, the mappings or the settings cannot be used.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]
DEMO_STAGING = REPO_ROOT / "var" / "demo" / "staging.sqlite"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("district_id", nargs="?", default="demo")
    parser.add_argument(
        "--run",
        help="the run whose staged inputs to use (default: the latest run that got past "
        "transform, success or previewed)",
    )
    parser.add_argument("--mappings", help="another mappings folder (default include/mappings)")
    parser.add_argument("--settings", help="another district YAML for this district (e.g. an edited copy)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one district setting (dotted, YAML value), e.g. co_teacher_class_limit=2",
    )
    parser.add_argument("--keep-scratch", action="store_true", help="keep the scratch database and Data Docs")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    if "SIS_LEARNING_STAGING_URL" not in os.environ and arguments.district_id == "demo" and DEMO_STAGING.exists():
        os.environ["SIS_LEARNING_STAGING_URL"] = f"sqlite:///{DEMO_STAGING}"

    from sis_learning.config import load_district, load_district_by_id
    from sis_learning.exceptions import SisLearningError
    from sis_learning.staging.base import get_engine
    from sis_learning.what_if import format_text, latest_run, parse_setting, run_what_if, with_settings

    try:
        base = load_district_by_id(arguments.district_id)
        config = load_district(arguments.settings) if arguments.settings else base
        overrides = dict(parse_setting(item) for item in arguments.set)
        if overrides:
            config = with_settings(config, overrides)
        engine = get_engine()
        run_id = arguments.run or latest_run(engine, base.district_id)
        if not run_id:
            print(
                f"No run of {base.district_id} in staging to start from: run an import (or make demo) first, "
                "or give --run",
                file=sys.stderr,
            )
            return 2
        result = run_what_if(
            engine,
            base,
            run_id,
            mappings_dir=arguments.mappings,
            config=config,
            settings=overrides or ({"file": arguments.settings} if arguments.settings else {}),
            keep_scratch=arguments.keep_scratch,
        )
    except (SisLearningError, ValueError, FileNotFoundError) as error:
        print(f"what-if: {error}", file=sys.stderr)
        return 2
    print(format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
