"""The grade push DAG's task bodies: each task of ``dags/grade_push.py`` is one call here,
as each task of the import DAG is one call into ``import_tasks``.
"""

from __future__ import annotations

from typing import Any


def push_grades(district_id: str, run_id: str) -> dict[str, Any]:
    """The ``push_grades`` task: push the district's new gradebook changes to PowerTeacher.

    ``district_id``: the district file's id (include/districts/<id>.yaml); ``run_id``: the
    Airflow run id, recorded in ``sync_runs`` (kind ``grade_push``). Returns the run's
    counts (XCom), never data.
    """
    from sis_learning import grade_push
    from sis_learning.config import load_district_by_id
    from sis_learning.hooks.district import learning_hook, powerteacher_client
    from sis_learning.staging import ledger
    from sis_learning.staging.base import create_all, get_engine

    config = load_district_by_id(district_id)
    engine = create_all(get_engine())
    ledger.add_missing_columns(engine)
    summary = grade_push.push_grades(config, engine, learning_hook(config), powerteacher_client(config), run_id)
    return summary.as_dict()
