"""Grade push: one DAG per district with grade push enabled (grade_push__<district_id>).

Thin by design: it loops over the validated district configs in sorted order; each DAG
is scheduled by an asset whose watcher (``sis_learning.triggers.GradebookChangeTrigger``,
run by the triggerer) fires when Learning's gradebook change feed has news, and its one
task calls ``sis_learning.grade_push_tasks.push_grades``. No I/O at parse time.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task

from sis_learning.config import DistrictConfig, scan_districts
from sis_learning.triggers import GradebookChangeTrigger

DOC_MD = """
### Grade push for {name} (`{district_id}`)

Writes PowerSchool Learning's gradables and scores into PowerTeacher (Pro, or the
legacy PowerTeacher Gradebook for its sections), as the PowerSchool Learning integration
for SIS 10.1+ describes it: **immediately** (seconds after a teacher saves a change),
only for imported classes and classes linked to them, of organizations with grade push
enabled ({organizations}), and never the other way (no grade is pulled into Learning).

- **Started by** the asset `{asset}`: its watcher polls Learning's change feed every
  {interval}s in the triggerer (no worker slot held while waiting) and records an asset
  event when there are changes after the ledger cursor.
- **push_grades** (pool `{pool}`, first in line for a free slot): takes the district's
  ledger lease (runs may overlap; their writes do not), reads the feed from the cursor,
  creates each new gradable's PowerTeacher assignment at once (PowerTeacher Pro, category
  `{category}` if the district has it, else the teacher's first; or the legacy
  PowerTeacher Gradebook for its sections), updates it when the gradable is edited,
  deletes it when the gradable is deleted (or reports it when it has grades), writes and
  clears scores (batched), for imported classes and classes linked to them, records
  everything in the ledger (`grade_push_assignments`, `grade_push_scores`,
  `grade_push_cursor`) and counts in `sync_runs` (kind `grade_push`).
- Scores PowerTeacher refuses (HTTP 409) and assignments it keeps are recorded with its
  message and listed in one email per run to {emails}; the rest is written.

Config: `{source}`. Design: docs/grade-push.md.
"""


MAX_ACTIVE_RUNS = 8


def gradebook_asset(config: DistrictConfig) -> Asset:
    district_id = config.district_id
    return Asset(
        name=f"learning_gradebook__{district_id}",
        uri=f"x-sis-learning://learning-gradebook/{district_id}",
        group="sis_learning",
        watchers=[
            AssetWatcher(
                name=f"learning_gradebook_changes__{district_id}",
                trigger=GradebookChangeTrigger(
                    district_id=district_id,
                    learning_conn_id=config.learning.connection_id,
                    poll_interval_seconds=config.grade_push.poll_interval_seconds,
                ),
            )
        ],
    )


def grade_push_dag(config: DistrictConfig) -> DAG:
    district_id = config.district_id
    asset = gradebook_asset(config)
    with DAG(
        dag_id=config.grade_push_dag_id,
        description=f"Learning gradebook -> PowerTeacher for {config.name}",
        schedule=[asset],
        start_date=pendulum.datetime(2025, 1, 1, tz=config.timezone),
        catchup=False,
        # Runs may overlap: with max_active_runs=1 Airflow 3.3's DAG processor can leave the DAG
        # flagged "at its limit" after a run ends and stall the next asset event for up to a parse
        # interval (docs/grade-push.md). A second run waits for the district's ledger lease, so
        # writes stay one run at a time and in feed order.
        max_active_runs=MAX_ACTIVE_RUNS,
        tags=["grade-push", "powerschool", "learning", f"district:{district_id}"],
        doc_md=DOC_MD.format(
            name=config.name,
            district_id=district_id,
            asset=asset.name,
            interval=config.grade_push.poll_interval_seconds,
            pool=config.powerschool.pool,
            category=config.grade_push.classwork_category,
            organizations=(
                "all imported organizations"
                if config.grade_push.organizations == "all"
                else ", ".join(config.grade_push.organizations)
            ),
            emails=", ".join(config.notifications.failure_emails) or "(no recipients configured)",
            source=config.source_file,
        ),
        default_args={
            "owner": config.owner,
            "retries": 3,
            "retry_delay": timedelta(seconds=5),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=5),
            "show_return_value_in_logs": False,  # the task logs its own summary line; XCom keeps the counts
        },
    ) as dag:
        # Shares the PowerSchool pool with the import's extract tasks (one pool per API); the
        # high absolute priority gives it the next free slot, so an import never queues it long.
        @task(task_id="push_grades", pool=config.powerschool.pool, priority_weight=100, weight_rule="absolute")
        def push_grades(run_id=None):
            from sis_learning import grade_push_tasks

            return grade_push_tasks.push_grades(district_id, run_id)

        push_grades()
    return dag


# A broken district file is left out here (sis_import.py shows it as a failing DAG); the others stay.
for _config in scan_districts()[0]:
    if _config.grade_push.enabled:
        globals()[_config.grade_push_dag_id] = grade_push_dag(_config)
