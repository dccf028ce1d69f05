"""One import stage in a fresh process, measured: wall time, CPU time, rows, peak RSS.

    echo '<spec JSON>' | python bench/stages.py

``bench/run.py`` starts one of these per stage (extract, validate, transform, diff, load),
so each stage's peak RSS (``ru_maxrss`` of its own process) is its own and not the
largest of everything before it. The spec arrives on stdin (it holds the sandbox
credentials, which must not appear on a command line); the answer is one JSON object on
the last line of stdout. The stage functions are called exactly as the DAG's tasks call
them (``plugins/sis_learning/import_tasks.py``), minus the Airflow bookkeeping.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT / "plugins", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def district_config(district_id: str, concurrency: int, batch_size: int = 1000):
    """The demo district's settings (include/districts/demo.yaml) under the bench's own id.

    One difference: the validation threshold is 100%. The generated districts hold every
    edge case the import rules exist for; the benchmark measures speed, and reports the
    rejected rows instead of stopping on them.
    """
    import yaml

    from sis_learning.config import DistrictConfig

    settings = yaml.safe_load((REPO_ROOT / "include" / "districts" / "demo.yaml").read_text())
    settings.update(
        {
            "district_id": district_id,
            "name": f"Benchmark district {district_id}",
            "default_password": "env:BENCH_DEFAULT_PASSWORD",
            "validation_thresholds": {"default": 1.0},
        }
    )
    settings["powerschool"] = {
        **settings["powerschool"],
        "connection_id": "powerschool_bench",
        "max_concurrent_requests": concurrency,
    }
    settings["learning"] = {**settings.get("learning", {}), "connection_id": "learning_bench", "batch_size": batch_size}
    return DistrictConfig.model_validate(settings)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_extract(spec: dict[str, Any], engine, config) -> dict[str, Any]:
    from sis_learning.extract import ENTITY_EXTRACTS, PAGE_SIZE_RESOURCE, minimum_requests
    from sis_learning.hooks.http_client import RetryPolicy
    from sis_learning.hooks.powerschool import PowerSchoolHook

    powerschool = spec["powerschool"]
    hook = PowerSchoolHook.from_settings(
        powerschool["base_url"],
        powerschool["client_id"],
        powerschool["client_secret"],
        powerschool["ca_bundle"],
        max_concurrent_requests=spec["concurrency"],
        retry_policy=RetryPolicy(),
    )
    run_id = spec["run_id"]
    from sis_learning.staging.runs import start_run

    # Recorded as the DAG's start_run does: a later run reads incrementally from the last
    # run whose load committed (the load stage marks it successful).
    start_run(engine, config.district_id, run_id)
    entities: dict[str, Any] = {}
    stage_started = time.perf_counter()
    for entity, extract in ENTITY_EXTRACTS.items():
        before = hook.stats.total_requests
        kinds_before = dict(hook.stats.requests)
        started = time.perf_counter()
        result = extract(hook, engine, config, run_id)
        page_size = hook.max_page_size(PAGE_SIZE_RESOURCE[entity])
        entities[entity] = {
            "rows": int(result.get("rows", 0)),
            "requests": hook.stats.total_requests - before,
            "page_size": page_size,
            "minimum_requests": math.ceil(result["rows"] / page_size) if result.get("rows") else 0,
            "seconds": round(time.perf_counter() - started, 2),
            "mismatch": bool(result.get("mismatch")),
            "requests_by_kind": {
                kind: count - kinds_before.get(kind, 0)
                for kind, count in hook.stats.requests.items()
                if count - kinds_before.get(kind, 0)
            },
            **{key: result[key] for key in ("source", "read_mode", "carried_forward") if key in result},
        }
    stage_seconds = time.perf_counter() - stage_started  # the counting below is the benchmark's, not extract's
    stats = hook.stats.as_dict()
    return {
        "_stage_seconds": stage_seconds,
        "rows": sum(item["rows"] for item in entities.values()),
        "requests": hook.stats.total_requests,
        "minimum_requests": sum(item["minimum_requests"] for item in entities.values()),
        "minimum_requests_per_school_listing": minimum_requests(engine, config.district_id, run_id, hook),
        "retries": sum(hook.stats.retries.values()),
        "throttled": stats.get("throttled"),
        "seconds_waited": stats.get("waited_seconds"),
        "requests_by_kind": dict(hook.stats.requests),
        "entities": entities,
    }


def run_validate(spec: dict[str, Any], engine, config) -> dict[str, Any]:
    from sis_learning import validate

    results_dir = Path(spec["work_dir"]) / "validation" / spec["run_id"]
    result = validate.validate_run(engine, config, spec["run_id"], results_dir)
    validate.check_thresholds(engine, config, spec["run_id"])
    entities = {entity: values for entity, values in result.items() if isinstance(values, dict)}
    return {
        "rows": sum(int(values.get("evaluated", 0)) for values in entities.values()),
        "rejected": sum(int(values.get("rejected", 0)) for values in entities.values()),
        "excluded": sum(int(values.get("excluded", 0)) for values in entities.values()),
        "entities": entities,
    }


def run_transform(spec: dict[str, Any], engine, config) -> dict[str, Any]:
    from sis_learning import transform

    result = transform.transform_run(engine, config, spec["run_id"])
    entities = {entity: int(value) for entity, value in result.items() if isinstance(value, (int, float))}
    return {"rows": sum(entities.values()), "entities": entities}


def run_diff(spec: dict[str, Any], engine, config) -> dict[str, Any]:
    from sis_learning import diff

    changes = diff.compute_changes(engine, config, spec["run_id"])
    # The bench's 1% change is not a mass change, but a run at district scale may trip the
    # guard's per-school ratio: it is timed, and approved so the load is measured too.
    diff.check_safety(engine, config, spec["run_id"], approve_mass_changes=True)
    changed = sum(count for actions in changes.values() for action, count in actions.items() if action != "unchanged")
    return {"rows": sum(sum(actions.values()) for actions in changes.values()), "changed": changed, "entities": changes}


def run_load(spec: dict[str, Any], engine, config) -> dict[str, Any]:
    from sis_learning.hooks.learning import LearningHook
    from sis_learning.load import load_run

    learning = spec["learning"]
    hook = LearningHook.from_settings(learning["base_url"], learning["token"], learning["ca_bundle"])
    summary = load_run(engine, config, spec["run_id"], hook)
    from sis_learning.staging.runs import finish_run

    finish_run(engine, config.district_id, spec["run_id"], status="success")  # as the report task does
    refused = sum(int(values.get("refused", 0)) for values in summary["counts"].values())
    return {
        "rows": int(summary["rows_sent"]),
        "requests": int(summary["requests"]),
        "rows_sent": int(summary["rows_sent"]),
        "rows_changed": int(summary["rows_changed"]),
        "refused": refused,
        "counts": summary["counts"],
    }


# Imported before the clock starts: a stage's time is its work, not the interpreter loading
# pandas, Great Expectations or Airflow (the import time is reported apart).
PRELOAD = {
    "extract": ("sis_learning.extract", "sis_learning.hooks.powerschool"),
    "validate": ("sis_learning.validate", "great_expectations", "great_expectations.expectations"),
    "transform": ("sis_learning.transform",),
    "diff": ("sis_learning.diff",),
    "load": ("sis_learning.load", "sis_learning.hooks.learning"),
}

STAGES = {
    "extract": run_extract,
    "validate": run_validate,
    "transform": run_transform,
    "diff": run_diff,
    "load": run_load,
}


def _profiled(spec: dict[str, Any], stage):
    """The stage, under cProfile when BENCH_PROFILE_DIR is set: <dir>/<run>-<stage>.prof (for finding time)."""
    folder = os.environ.get("BENCH_PROFILE_DIR")
    if not folder:
        return stage()
    import cProfile

    profile = cProfile.Profile()
    try:
        return profile.runcall(stage)
    finally:
        Path(folder).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(folder) / f"{spec.get('run_id', 'run')}-{spec['stage']}.prof"))


def main() -> None:
    spec = json.loads(sys.stdin.read())
    os.environ["BENCH_DEFAULT_PASSWORD"] = spec.pop("default_password", "")
    logging.basicConfig(level=logging.WARNING)
    from sis_learning.staging.base import create_all, get_engine

    import_started = time.perf_counter()
    for module in PRELOAD[spec["stage"]]:
        importlib.import_module(module)
    import_seconds = time.perf_counter() - import_started
    engine = create_all(get_engine(spec["staging_url"]))
    config = district_config(spec["district_id"], spec["concurrency"])
    rss_before = _peak_rss_mb()
    from bench.machine import StageSampler

    # The machine while the stage works: other work's CPU, the PostgreSQL server's for this
    # database (bench/machine.py); the benchmark's own processes are bench/run.py's tree.
    with StageSampler(os.getppid(), spec.get("postgres_database")) as sampler:
        cpu, started = _cpu_seconds(), time.perf_counter()
        result = _profiled(spec, lambda: STAGES[spec["stage"]](spec, engine, config))
        seconds = result.pop("_stage_seconds", None) or time.perf_counter() - started
        cpu_seconds = _cpu_seconds() - cpu
    machine = sampler.result()
    print(
        json.dumps(
            {
                "stage": spec["stage"],
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu_seconds, 2),
                "server_cpu_seconds": machine.get("postgres_server_cpu_seconds"),
                "import_seconds": round(import_seconds, 2),
                "peak_rss_mb": _peak_rss_mb(),
                "rss_before_stage_mb": rss_before,
                "load_average": [round(value, 1) for value in os.getloadavg()],
                "machine": machine,
                **result,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
