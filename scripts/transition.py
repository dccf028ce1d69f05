"""Move a district's existing Learning users onto their Import IDs before its first import.

    make transition-demo                         # the whole story on the sandboxes (below)
    scripts/transition.py plan mydistrict [--run RUN_ID] [--csv district.csv]
    scripts/transition.py apply mydistrict --plan PLAN_ID --approve

``plan`` reads every user of the district's Learning domain (its Airflow connection
``learning.connection_id``) and matches each to a SIS record of a run's Learning-shaped
rows (default: the district's latest preview or successful run; trigger a preview first:
``airflow dags trigger sis_import__mydistrict --conf '{"preview": true}'``) by SSO email,
else login, else the district's CSV (``user_type,old_id,new_id``). It writes nothing to
Learning: the report (var/transitions/<district>/<plan>/index.html, matches.csv) is for
the district to review. ``apply --approve`` then gives the matched users their Import IDs
in Learning; ambiguous and unmatched users are left as they are.

``demo`` (``make transition-demo``): fresh sandboxes under var/transition-demo/, a preview
of the demo district, a Learning domain seeded with users from before the integration
(Google emails, SIS logins, an earlier integration's ids with the district's CSV, former
staff, a conflict), the plan, its approval, and the first import, which updates the
matched users instead of creating duplicates.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]
DEMO_DIR = REPO_ROOT / "var" / "transition-demo"


def plan(arguments: argparse.Namespace) -> int:
    from sis_learning.config import load_district_by_id
    from sis_learning.hooks.district import learning_hook
    from sis_learning.staging.base import get_engine
    from sis_learning.transition import format_text, latest_transformed_run, plan_transition

    config = load_district_by_id(arguments.district_id)
    engine = get_engine()
    run_id = arguments.run or latest_transformed_run(engine, config.district_id)
    if not run_id:
        print(
            f"No preview or successful run of {config.district_id} in staging: trigger a preview first "
            f"(airflow dags trigger {config.import_dag_id} --conf '{{\"preview\": true}}')",
            file=sys.stderr,
        )
        return 2
    result = plan_transition(engine, config, learning_hook(config).admin_users(), run_id, arguments.csv)
    print(format_text(result, engine))
    print(
        f"Review it, then approve: scripts/transition.py apply {config.district_id} --plan {result.plan_id} --approve"
    )
    return 0


def apply(arguments: argparse.Namespace) -> int:
    from sis_learning.config import load_district_by_id
    from sis_learning.hooks.district import learning_hook
    from sis_learning.staging.base import get_engine
    from sis_learning.transition import apply_transition, format_text

    if not arguments.approve:
        print(
            "apply writes Import IDs into Learning: add --approve once the district has reviewed the plan",
            file=sys.stderr,
        )
        return 2
    config = load_district_by_id(arguments.district_id)
    engine = get_engine()
    result = apply_transition(engine, config, arguments.plan, learning_hook(config))
    print(format_text(result, engine))
    return 0


def demo(_arguments: argparse.Namespace) -> int:
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir(parents=True)
    os.environ["SIS_LEARNING_STAGING_URL"] = f"sqlite:///{DEMO_DIR / 'staging.sqlite'}"
    os.environ["SIS_LEARNING_PREVIEWS_DIR"] = str(DEMO_DIR / "previews")
    os.environ["SIS_LEARNING_TRANSITIONS_DIR"] = str(DEMO_DIR / "transitions")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    from airflow.dag_processing.dagbag import DagBag
    from sqlalchemy import text

    from scripts.demo_environment import demo_services, seed_existing_users
    from sis_learning.config import load_district_by_id
    from sis_learning.hooks.learning import LearningHook
    from sis_learning.staging.base import get_engine
    from sis_learning.transition import apply_transition, format_text, plan_transition, sis_users

    with demo_services(state_dir=DEMO_DIR) as services:
        os.environ.update(services.env)
        dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "sis_import.py")).dags["sis_import__demo"]
        print("1. A preview of the demo district's import (the SIS side of the matching) ...", flush=True)
        preview = dag.test(run_conf={"preview": True, "email_preview": False})
        engine = get_engine()
        config = load_district_by_id("demo")
        with engine.connect() as connection:
            organizations = [
                dict(row._mapping)
                for row in connection.execute(
                    text(
                        "SELECT organization_id, name FROM learning_organizations "
                        "WHERE district_id = 'demo' AND run_id = :r "
                        "ORDER BY organization_id"
                    ),
                    {"r": preview.run_id},
                )
            ]
        learning = services.learning
        kinds = seed_existing_users(
            learning, "demo", organizations, sis_users(engine, "demo", preview.run_id), DEMO_DIR / "district.csv"
        )
        print(
            f"2. The Learning domain already has {sum(map(len, kinds.values()))} users from before the "
            f"integration; the district's CSV: {DEMO_DIR / 'district.csv'}"
        )
        hook = LearningHook.from_settings(learning.base_url, services.learning_token, learning.ca_bundle)
        result = plan_transition(engine, config, hook.admin_users(), preview.run_id, DEMO_DIR / "district.csv")
        print("3. The plan (nothing written to Learning yet):\n" + format_text(result, engine))
        result = apply_transition(engine, config, result.plan_id, hook)
        print("4. Approved and applied:\n" + format_text(result, engine))
        print("5. The first import ...", flush=True)
        first = dag.test(run_conf={"preview": False, "email_preview": False})
        with engine.connect() as connection:
            updated = connection.execute(
                text(
                    "SELECT COUNT(*) FROM change_set c JOIN transition_matches t ON t.district_id = c.district_id "
                    "AND c.key = t.user_type || ':' || t.new_import_id WHERE c.district_id = 'demo' AND c.run_id = :r "
                    "AND c.entity = 'users' AND t.plan_id = :p AND t.status = 'applied' "
                    "AND c.learning_result = 'updated'"
                ),
                {"r": first.run_id, "p": result.plan_id},
            ).scalar()
        users = learning.admin_users("demo")
        keys = [(user["user_type"], user["external_id"]) for user in users if user["external_id"]]
        print(
            f"   {first.state}: the {updated} users moved onto their Import IDs were updated, not created; "
            f"{len(users)} users in Learning, {len(keys) - len(set(keys))} duplicates; "
            f"{sum(1 for user in users if not user['external_id'])} left without an Import ID for the district "
            "(unmatched or ambiguous)"
        )
        print(f"Report: {result.html_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    planning = commands.add_parser("plan", help="match the domain's existing users; writes nothing to Learning")
    planning.add_argument("district_id")
    planning.add_argument(
        "--run", help="the run whose learning_users are the SIS side (default: latest preview or successful run)"
    )
    planning.add_argument("--csv", help="the district's CSV of old and new ids: user_type,old_id,new_id")
    planning.set_defaults(run_command=plan)
    applying = commands.add_parser("apply", help="give the plan's matched users their Import IDs in Learning")
    applying.add_argument("district_id")
    applying.add_argument("--plan", required=True)
    applying.add_argument("--approve", action="store_true", help="the district reviewed the plan and approves it")
    applying.set_defaults(run_command=apply)
    demoing = commands.add_parser("demo", help="the whole story on the sandboxes (var/transition-demo/)")
    demoing.set_defaults(run_command=demo)
    arguments = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    return arguments.run_command(arguments)


if __name__ == "__main__":
    sys.exit(main())
