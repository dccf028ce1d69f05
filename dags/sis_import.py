"""District imports: one DAG per district YAML in include/districts/ (sis_import__<district_id>).

Thin by design: it loops over the validated district configs in sorted order and wires
tasks; every task body is one call into ``sis_learning.import_tasks``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, Param, TaskGroup, TriggerRule, task

from sis_learning import import_tasks as steps
from sis_learning.config import DistrictConfig, load_districts

DOC_MD = """
### SIS import for {name} (`{district_id}`)

Keeps PowerSchool Learning in step with PowerSchool SIS, as the PowerSchool Learning
integration for SIS 10.1+ describes it: users, classes and rosters, twice a day
({schedule} in {timezone}).

1. **extract**: one task per entity reads PowerSchool's API (schools first; terms,
   courses, sections from {start_year} on, staff, students with enrollment and contact
   info, section enrollments from the CC table, co-teachers, guardians) into staged
   tables, page by page, in the `{pool}` pool.
2. **validate**: Great Expectations suites and row rules; failing rows go to
   `rejected_rows` with a reason (and what they block), rows left out by rule to
   `excluded_rows`; the run stops if an entity fails more than its threshold.
3. **transform**: the CSV mapping specs in `include/mappings/` make the Learning-shaped
   rows (`learning_*` tables).
4. **load**: diff against what Learning last accepted; stop on mass deactivations or an
   Import ID change unless triggered with `approve_mass_changes=true`; send only the
   changes, in dependency order.
5. **report**: the run summary in `sync_runs`; on any failure one email to
   {emails}.

Config: `{source}`. Staged tables: docs/staged-tables.md.
"""


def import_dag(config: DistrictConfig) -> DAG:
    district_id = config.district_id
    with DAG(
        dag_id=config.import_dag_id,
        description=f"PowerSchool SIS -> Learning import for {config.name}",
        schedule=CronTriggerTimetable(config.schedule, timezone=config.timezone),
        start_date=pendulum.datetime(2025, 1, 1, tz=config.timezone),
        catchup=False,
        max_active_runs=1,
        tags=["sis-import", "powerschool", "learning", f"district:{district_id}"],
        doc_md=DOC_MD.format(
            name=config.name, district_id=district_id, schedule=config.schedule, timezone=config.timezone,
            start_year=config.import_start_year, pool=config.powerschool.pool,
            emails=", ".join(config.notifications.failure_emails) or "(no recipients configured)",
            source=config.source_file,
        ),
        params={
            "approve_mass_changes": Param(
                False, type="boolean",
                description="Approve a run the safety guard stopped (mass deactivations or an Import ID change)",
            ),
        },
        default_args={
            "owner": config.owner,
            "retries": 2,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=10),
        },
    ) as dag:

        @task(task_id="start_run")
        def start_run(run_id=None, dag=None):
            return steps.start_run(district_id, run_id, dag.dag_id)

        started = start_run()

        with TaskGroup("extract") as extract_group:

            @task(task_id="extract_schools", pool=config.powerschool.pool)
            def extract_schools(run_id=None):
                return steps.extract_schools(district_id, run_id)

            schools = extract_schools()
            by_entity = {}
            for entity in steps.EXTRACT_ENTITIES:
                if entity == "guardians" and config.ignore_parents:
                    continue

                @task(task_id=f"extract_{entity}", pool=config.powerschool.pool)
                def extract_one(entity=entity, run_id=None):
                    return steps.extract_entity(entity, district_id, run_id)

                by_entity[entity] = extract_one()
                schools >> by_entity[entity]
            if "guardians" in by_entity:
                # The guardian PowerQuery is asked for the extracted students.
                by_entity["students"] >> by_entity["guardians"]

        with TaskGroup("validate") as validate_group:

            @task(task_id="validate_rows")
            def validate_rows(run_id=None):
                return steps.validate_rows(district_id, run_id)

            @task(task_id="check_thresholds", retries=0)
            def check_thresholds(run_id=None):
                return steps.check_validation_thresholds(district_id, run_id)

            validate_rows() >> check_thresholds()

        with TaskGroup("transform") as transform_group:

            @task(task_id="transform_rows")
            def transform_rows(run_id=None):
                return steps.transform_rows(district_id, run_id)

            transform_rows()

        with TaskGroup("load") as load_group:

            @task(task_id="compute_changes")
            def compute_changes(run_id=None):
                return steps.compute_changes(district_id, run_id)

            @task(task_id="check_mass_changes", retries=0)
            def check_mass_changes(run_id=None, params=None):
                return steps.check_mass_changes(district_id, run_id, bool(params.get("approve_mass_changes")))

            @task(task_id="load_learning", pool=config.learning.pool)
            def load_learning(run_id=None):
                return steps.load_learning(district_id, run_id)

            compute_changes() >> check_mass_changes() >> load_learning()

        with TaskGroup("report") as report_group:

            @task(task_id="report", trigger_rule=TriggerRule.ALL_DONE, retries=0)
            def report(run_id=None, dag=None):
                return steps.report(district_id, run_id, dag.dag_id)

            report()

        started >> extract_group >> validate_group >> transform_group >> load_group >> report_group
    return dag


for _config in load_districts():
    globals()[_config.import_dag_id] = import_dag(_config)
