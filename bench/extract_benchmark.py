"""Measure extract against a sandbox district: requests against the minimum, wall time against the floor.

    .venv/bin/python -m bench.extract_benchmark --dataset L --latency-ms 25 --concurrency 4 \
        [--staging-url postgresql+psycopg2://postgres@127.0.0.1:5432/extract_bench] [--out figures.json]

The minimum number of requests is the sum over entities of ceil(rows / max page size);
the floor on wall time is requests x latency / concurrency (the server adds the latency
to every answer, the client keeps ``concurrency`` requests in flight). Prints one JSON
document with the figures per entity and in total, and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
for path in (REPO_ROOT / "plugins", REPO_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from sis_learning.config import DistrictConfig  # noqa: E402
from sis_learning.extract import ENTITY_EXTRACTS, PAGE_SIZE_RESOURCE, minimum_requests  # noqa: E402
from sis_learning.hooks.http_client import RetryPolicy  # noqa: E402
from sis_learning.hooks.powerschool import PowerSchoolHook  # noqa: E402
from sis_learning.staging.base import create_all, get_engine  # noqa: E402


def measure(dataset: str, latency_ms: int, concurrency: int, staging_url: str, import_start_year: int) -> dict:
    from sandbox.powerschool.testing import running_powerschool

    engine = create_all(get_engine(staging_url))
    config = DistrictConfig.model_validate(
        {
            "district_id": "bench",
            "name": f"Sandbox {dataset}",
            "import_start_year": import_start_year,
            "powerschool": {"connection_id": "powerschool_bench", "max_concurrent_requests": concurrency},
            "learning": {"connection_id": "learning_bench"},
        }
    )
    run_id = f"bench__{int(time.time())}"
    with running_powerschool(dataset=dataset, options={"latency_ms": latency_ms}) as server:
        hook = PowerSchoolHook.from_settings(
            server.base_url,
            server.client_id,
            server.client_secret,
            server.ca_bundle,
            max_concurrent_requests=concurrency,
            retry_policy=RetryPolicy(),
        )
        entities = {}
        started = time.monotonic()
        for entity, extract in ENTITY_EXTRACTS.items():
            before = hook.stats.total_requests
            entity_started = time.monotonic()
            result = extract(hook, engine, config, run_id)
            seconds = time.monotonic() - entity_started
            requests = hook.stats.total_requests - before
            page_size = hook.max_page_size(PAGE_SIZE_RESOURCE[entity])
            minimum = math.ceil(result["rows"] / page_size) if result["rows"] else 0
            entities[entity] = {
                "rows": result["rows"],
                "page_size": page_size,
                "requests": requests,
                "minimum_requests": minimum,
                "seconds": round(seconds, 2),
                "floor_seconds": round(requests * latency_ms / 1000 / concurrency, 2),
                "mismatch": result["mismatch"],
                **{key: result[key] for key in ("source", "translation_requests") if key in result},
            }
        total_seconds = time.monotonic() - started
    per_scope_minimum = minimum_requests(engine, config.district_id, run_id, hook)
    total_requests = hook.stats.total_requests
    minimum_total = sum(item["minimum_requests"] for item in entities.values())
    return {
        "dataset": dataset,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "staging": engine.dialect.name,
        "requests": total_requests,
        "minimum_requests": minimum_total,
        "requests_over_minimum": round(total_requests / max(1, minimum_total), 3),
        # The API lists terms, courses, sections, staff and students per school: at least one
        # page per school and entity, ceil(rows / page size) in each.
        "minimum_requests_per_school_listing": per_scope_minimum,
        "requests_over_per_school_minimum": round(total_requests / max(1, per_scope_minimum), 3),
        "seconds": round(total_seconds, 1),
        "floor_seconds_for_requests_made": round(total_requests * latency_ms / 1000 / concurrency, 1),
        "floor_seconds_for_minimum": round(minimum_total * latency_ms / 1000 / concurrency, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # CPU the client used (parsing, building rows, staging); on a busy machine the wall
        # time is bounded by this and the server's CPU, not by the latency floor.
        "client_cpu_seconds": round(_cpu_seconds(), 1),
        "retries": sum(hook.stats.retries.values()),
        "requests_by_kind": dict(hook.stats.requests),
        "entities": entities,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="M")
    parser.add_argument("--latency-ms", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--staging-url", default=None, help="SQLAlchemy URL (default: a SQLite file under var/)")
    parser.add_argument("--import-start-year", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here (the task logs go to stdout)")
    arguments = parser.parse_args()
    staging_url = (
        arguments.staging_url or f"sqlite:///{REPO_ROOT / 'var' / f'extract-bench-{arguments.dataset}.sqlite'}"
    )
    if staging_url.startswith("sqlite:///"):
        Path(staging_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    figures = json.dumps(
        measure(
            arguments.dataset, arguments.latency_ms, arguments.concurrency, staging_url, arguments.import_start_year
        ),
        indent=2,
    )
    if arguments.out:
        arguments.out.write_text(figures + "\n")
    else:
        print(figures)


if __name__ == "__main__":
    main()
