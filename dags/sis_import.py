"""District imports: one DAG per district YAML in include/districts/ (sis_import__<district_id>).

Thin by design: it loops over the validated district configs in sorted order and wires
tasks; every task body is one call into ``sis_learning.import_tasks``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, Param, TaskGroup, TriggerRule, chain, task

from sis_learning import import_tasks
from sis_learning.approval_operator import APPROVAL_TASK_IDS, MassChangeApprovalOperator
from sis_learning.config import DEFAULT_BROKEN_SCHEDULE, BrokenDistrict, DistrictConfig, scan_districts

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
4. **load**: diff against what Learning last accepted; on mass deactivations, a school
   dropping to zero or an Import ID change the run **waits for a person** at
   `load.approve_mass_changes` (Required Actions; figures per school with examples; at most
   {approval_hours:g} h): Approve loads exactly the change set shown (if it changed meanwhile,
   nothing is approved and `approve_mass_changes_2`, then `_3`, asks again), Reject or no
   answer loads nothing and emails the district. Triggered with `approve_mass_changes=true`
   it does not wait. Then send only the changes, in dependency order.
5. **report**: the run summary in `sync_runs`; on any failure one email to
   {emails}.

Trigger with `preview=true` for a dry run: everything up to the load, then the change set
it would send written as a report (`var/previews/{district_id}/<run>/index.html`, a CSV per
entity) instead of sending; the run ends `previewed` and nothing advances
(`email_preview=true` also emails it).

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
            name=config.name,
            district_id=district_id,
            schedule=config.schedule,
            timezone=config.timezone,
            start_year=config.import_start_year,
            pool=config.powerschool.pool,
            emails=", ".join(config.notifications.failure_emails) or "(no recipients configured)",
            source=config.source_file,
            approval_hours=config.safety.approval_timeout_hours,
        ),
        params={
            "approve_mass_changes": Param(
                False,
                type="boolean",
                description="Approve the mass changes the safety guard finds in this run without waiting for a "
                "person (mass deactivations, a school dropping to zero, an Import ID change)",
            ),
            "preview": Param(
                False,
                type="boolean",
                description="Preview (dry run): do everything up to the load, send nothing, and write what would be "
                "sent as a report (var/previews/<district>/<run>/); nothing advances",
            ),
            "email_preview": Param(
                False,
                type="boolean",
                description="With preview: email the preview's totals to the district's contacts",
            ),
            "full_refresh": Param(
                False,
                type="boolean",
                description=(
                    "Read everything from PowerSchool instead of only what changed since the last successful run"
                ),
            ),
        },
        default_args={
            "owner": config.owner,
            "retries": config.task_retries.retries,
            "retry_delay": timedelta(seconds=config.task_retries.retry_delay_seconds),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(seconds=config.task_retries.max_retry_delay_seconds),
            "show_return_value_in_logs": False,  # each task logs its own summary line; XCom keeps the counts
        },
    ) as dag:

        @task(task_id="start_run")
        def start_run(run_id=None, dag=None, params=None):
            return import_tasks.start_run(district_id, run_id, dag.dag_id, bool((params or {}).get("full_refresh")))

        started = start_run()

        with TaskGroup("extract") as extract_group:

            @task(task_id="extract_schools", pool=config.powerschool.pool)
            def extract_schools(run_id=None):
                return import_tasks.extract_schools(district_id, run_id)

            schools = extract_schools()
            by_entity = {}
            for entity in import_tasks.EXTRACT_ENTITIES:
                if entity == "guardians" and config.ignore_parents:
                    continue

                @task(task_id=f"extract_{entity}", pool=config.powerschool.pool)
                def extract_one(entity=entity, run_id=None):
                    return import_tasks.extract_entity(entity, district_id, run_id)

                by_entity[entity] = extract_one()
                schools >> by_entity[entity]
            if "guardians" in by_entity:
                # The guardian PowerQuery is asked for the extracted students.
                by_entity["students"] >> by_entity["guardians"]

        with TaskGroup("validate") as validate_group:

            @task(task_id="validate_rows")
            def validate_rows(run_id=None):
                return import_tasks.validate_rows(district_id, run_id)

            @task(task_id="check_thresholds", retries=0)
            def check_thresholds(run_id=None):
                return import_tasks.check_validation_thresholds(district_id, run_id)

            validate_rows() >> check_thresholds()

        with TaskGroup("transform") as transform_group:

            @task(task_id="transform_rows")
            def transform_rows(run_id=None):
                return import_tasks.transform_rows(district_id, run_id)

            transform_rows()

        with TaskGroup("load") as load_group:

            @task(task_id="compute_changes")
            def compute_changes(run_id=None):
                return import_tasks.compute_changes(district_id, run_id)

            @task(task_id="check_mass_changes", retries=0)
            def check_mass_changes(run_id=None, params=None, dag_run=None):
                return import_tasks.check_mass_changes(
                    district_id,
                    run_id,
                    bool(params.get("approve_mass_changes")),
                    preview=bool(params.get("preview")),
                    triggered_by=getattr(dag_run, "triggering_user_name", None),
                )

            # A person decides only when the guard stopped the run; a later task asks again only when
            # the change set changed while the person looked (Airflow keeps each task's first request).
            asks = [
                MassChangeApprovalOperator(
                    task_id=task_id,
                    district_id=district_id,
                    district_name=config.name,
                    last_ask=task_id == APPROVAL_TASK_IDS[-1],
                    response_timeout=timedelta(hours=config.safety.approval_timeout_hours),
                )
                for task_id in APPROVAL_TASK_IDS
            ]
            chain(*asks)

            @task(task_id="load_learning", pool=config.learning.pool)
            def load_learning(run_id=None, params=None):
                if (params or {}).get("preview"):
                    return import_tasks.preview_learning(district_id, run_id)
                return import_tasks.load_learning(district_id, run_id)

            compute_changes() >> check_mass_changes() >> asks[0]
            asks[-1] >> load_learning()

        with TaskGroup("report") as report_group:

            @task(task_id="report", trigger_rule=TriggerRule.ALL_DONE, retries=0)
            def report(run_id=None, dag=None, params=None):
                params = params or {}
                return import_tasks.report(
                    district_id,
                    run_id,
                    dag.dag_id,
                    preview=bool(params.get("preview")),
                    email_preview=bool(params.get("email_preview")),
                )

            report()

        started >> extract_group >> validate_group >> transform_group >> load_group >> report_group
    return dag


BROKEN_DOC_MD = """
### Configuration error: `{source}`

This district's file cannot be used, so its import and grade push DAGs are not built.
Every other district is unaffected. Fix the file; the real DAGs replace this one at the
next parse.

```
{error}
```

The task `configuration_error` fails at once with this message every {every}; the district's
failure recipients ({emails}) get one email per distinct error.
"""


def configuration_error_dag(broken: BrokenDistrict) -> DAG:
    """A DAG that stands for a broken district file in the UI and fails at once, naming file, key and problem."""
    first_line = broken.error.splitlines()[0]
    details = "; ".join(line.strip(" -") for line in broken.error.splitlines()[1:4])
    with DAG(
        dag_id=broken.import_dag_id,
        description=f"CONFIGURATION ERROR: {first_line}{': ' + details if details else ''}"[:1000],
        schedule=CronTriggerTimetable(DEFAULT_BROKEN_SCHEDULE, timezone="UTC"),
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["sis-import", "configuration-error", f"district:{broken.district_id}"],
        doc_md=BROKEN_DOC_MD.format(
            source=broken.source_file,
            error=broken.error,
            every="15 minutes",
            emails=", ".join(broken.failure_emails) or "none could be read from the file",
        ),
        default_args={"owner": broken.owner, "retries": 0},
    ) as dag:

        @task(task_id="configuration_error", retries=0)
        def configuration_error(run_id=None):
            return import_tasks.configuration_error(broken.source_file, run_id)

        configuration_error()
    return dag


_configs, _broken = scan_districts()
for _config in _configs:
    globals()[_config.import_dag_id] = import_dag(_config)
for _bad in _broken:
    globals()[_bad.import_dag_id] = configuration_error_dag(_bad)
