"""End to end with real Airflow tasks: the import DAG loads the tiny district, then grade push.

``sis_import__demo`` runs with ``dag.test()`` against the sandboxes (the real import:
extract, validate, transform, load into the reference Learning server), a teacher
enters scores in Learning on a class the import created, and ``grade_push__demo`` runs
with ``dag.test()``: its task reads the district YAML, the Airflow connections, the
staged import (classes in ``learning_snapshot``, ``users_dcid`` in ``stg_staff``) and
writes the scores into the simulator's PowerTeacher Pro.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

# dag.test() writes the DAGs and their assets into Airflow's metadata database: keep it on
# the worker the other dag.test() runs use (tests/e2e), or two workers race on the same
# asset row (SQLite: UNIQUE constraint failed: asset.name, asset.uri).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _metadata_database_ready() -> bool:
    from airflow import settings
    from sqlalchemy import inspect

    return settings.engine is not None and inspect(settings.engine).has_table("task_instance")


def _dag(file_name: str, dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags" / file_name))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def test_scores_on_a_class_the_import_created_reach_powerteacher_through_the_dag(tmp_path, monkeypatch):
    if not _metadata_database_ready():
        pytest.skip(
            "dag.test() needs an initialised Airflow metadata database: run with "
            "`source scripts/airflow-env.sh` after `airflow db migrate`, as `make test` does "
            "(AIRFLOW_HOME=.airflow-test)"
        )
    import sis_learning.config
    from sandbox.learning.testing import running_learning
    from sandbox.powerschool.testing import running_powerschool
    from sandbox.smtp import running_smtp
    from scripts.demo_environment import connection_env

    districts = tmp_path / "districts"
    districts.mkdir()
    demo = (REPO_ROOT / "include" / "districts" / "demo.yaml").read_text()
    # the tiny district is all edge cases: open the validation threshold as tests/e2e does
    demo = demo.replace("validation_thresholds:\n  default: 0.05", "validation_thresholds:\n  default: 1.0")
    (districts / "demo.yaml").write_text(demo)
    monkeypatch.setattr(sis_learning.config, "DISTRICTS_DIR", districts)
    staging_url = f"sqlite:///{tmp_path / 'staging.sqlite'}"
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", staging_url)
    monkeypatch.setenv("DEMO_DEFAULT_PASSWORD", secrets.token_urlsafe(12))
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    token = secrets.token_urlsafe(24)
    with (
        running_powerschool("tiny") as powerschool,
        running_learning(domains={"demo": token}) as learning,
        running_smtp() as smtp,
    ):
        for name, value in connection_env("demo", powerschool, learning, token, smtp).items():
            monkeypatch.setenv(name, value)
        # a few sections on the legacy PowerTeacher Gradebook: the import stages their gradebooktype
        from tests.grade_push.world import dataset_sections

        legacy = {section.section_dcid for section in dataset_sections(powerschool.dataset_path, min_students=2)[:6]}
        for section_dcid in legacy:
            powerschool.set_gradebook_type(int(section_dcid), 1)
        import_run = _dag("sis_import.py", "sis_import__demo").test()
        assert str(import_run.state) in ("success", "DagRunState.SUCCESS"), import_run.state

        engine = create_engine(staging_url)
        with engine.connect() as connection:
            imported = {
                row.key
                for row in connection.execute(
                    text("SELECT key FROM learning_snapshot WHERE district_id = 'demo' AND entity = 'classes'")
                )
            }
        rosters = learning.rosters("demo")

        def with_students(candidates):
            return next(
                (
                    class_id,
                    sorted(
                        user.split(":", 1)[1]
                        for (klass, user), role in rosters.items()  # "S:<dcid>"
                        if klass == class_id and role == "student"
                    ),
                )
                for class_id in sorted(candidates)
                if sum(1 for (klass, _), role in rosters.items() if klass == class_id and role == "student") >= 2
            )

        class_id, students = with_students(imported - legacy)
        legacy_class, legacy_students = with_students(imported & legacy)
        gradable = learning.create_gradable("demo", class_id, "End to end quiz", 25, due_date="2026-04-01")
        learning.set_score("demo", gradable["id"], students[0], "21")
        learning.set_score("demo", gradable["id"], students[1], "18.5")
        legacy_gradable = learning.create_gradable("demo", legacy_class, "Legacy gradebook quiz", 10)
        learning.set_score("demo", legacy_gradable["id"], legacy_students[0], "7")

        push_run = _dag("grade_push.py", "grade_push__demo").test()
        assert str(push_run.state) in ("success", "DagRunState.SUCCESS"), push_run.state
        [assignment] = powerschool.assignments(int(class_id))
        [entry] = assignment["_assignmentsections"]
        assert entry["name"] == "End to end quiz" and entry["totalpointvalue"] == 25
        assert {str(score["studentsdcid"]): score["actualscoreentered"] for score in entry["_assignmentscores"]} == {
            students[0]: "21",
            students[1]: "18.5",
        }
        # the legacy section went through the PowerTeacher Gradebook v2 API, as the import staged it
        assert powerschool.assignments(int(legacy_class)) == []
        [legacy_assignment] = powerschool.ptg_assignments(int(legacy_class))
        assert legacy_assignment["name"] == "Legacy gradebook quiz"
        assert [
            (str(score["student"]["id"]), score["score_entered"]) for score in legacy_assignment["_assignment_scores"]
        ] == [(legacy_students[0], "7")]
        with engine.connect() as connection:
            [run] = connection.execute(
                text("SELECT status, counts FROM sync_runs WHERE district_id = 'demo' AND kind = 'grade_push'")
            ).all()
        assert run.status == "success"
        engine.dispose()
