"""`make bench`: the import at district scale, stage by stage, against the floor and a naive client.

    make bench                                   # sizes S and M (BENCH_SIZES, default "S,M")
    BENCH_SIZES=S,M,L make bench                 # L adds roughly 30-60 min on the shared 2-core machine
    BENCH_STAGING=sqlite make bench              # one staging database only (default: sqlite,postgresql)
    .venv/bin/python bench/run.py --sizes S --latency-ms 50 --throttle-ms 0 --concurrency 4

For each size: build (or reuse) the generated sandbox district, serve it from the
PowerSchool simulator over HTTPS with a latency per request (and a throttle, if asked),
start a fresh reference Learning server per staging database, and run the import stages,
each in its own process (bench/stages.py) so each has its own peak RSS: extract (the real
hook), validate, transform, diff, load. With both staging databases, each stage runs on
SQLite and then on PostgreSQL before the next stage starts, so the two see the same
machine. A thread samples the machine while each stage runs (bench/machine.py). Then the
naive baseline (bench/naive_client.py), 1% of the district changed through the
simulator's admin API (bench/changes.py), and the same stages again.
Reports: bench/results/<size>.json (one per size, the latest run of that size) and
bench/results/latest.md / latest.json (every size present), with the machine they ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT / "plugins", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench import report  # noqa: E402
from bench.changes import apply_changes, rows_that_changed  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
WORK_DIR = REPO_ROOT / "var" / "bench"
DISTRICT_ID = "bench"
IMPORT_START_YEAR = 2025
STAGES = ("extract", "validate", "transform", "diff", "load")
STAGING_DATABASES = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# Naive baseline share of the district per size (it is one request at a time: 62,200
# per-section calls for L would take most of an hour at 50 ms each).
DEFAULT_NAIVE_FRACTION = {"tiny": 1.0, "demo": 1.0, "S": 1.0, "M": 0.2, "L": 0.03}


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message} (load average {os.getloadavg()[0]:.1f})", flush=True)


def run_child(script: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run bench/<script> with the spec on stdin; its last stdout line is the JSON answer."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT / "plugins"), str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    process = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / script)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=environment,
    )
    if process.returncode != 0:
        raise RuntimeError(
            f"bench/{script} ({spec.get('stage', '')}) failed with {process.returncode}:\n{process.stderr[-6000:]}"
        )
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def run_import(specs: dict[str, dict[str, Any]], run_id: str, runs: dict[str, Any], save: Any) -> None:
    """Run the stages in order on every staging database, a stage on each before the next stage.

    ``specs``: staging database -> the stage spec for it; results go to
    ``runs[database][run_id_kind][stage]``, each with what the machine did meanwhile
    (``machine``, sampled by the stage process: load average, other work's CPU, the
    PostgreSQL server's CPU for the stage's database). The partial result is saved after
    each stage.
    """
    kind = "full" if run_id == "bench_full" else "incremental"
    for stage in STAGES:
        for database, spec in specs.items():
            result = run_child("stages.py", {**spec, "stage": stage, "run_id": run_id})
            server = result.get("server_cpu_seconds")
            runs[database].setdefault(kind, {})[stage] = result
            save()
            machine = result["machine"]
            log(
                f"  {run_id} {stage} on {database}: {result['seconds']} s, CPU {result['cpu_seconds']} s"
                + (f" + server {server} s" if server is not None else "")
                + f", {result['rows']} rows, peak RSS {result['peak_rss_mb']} MB; other work "
                f"{machine.get('other_work_cores')} cores, {'quiet' if machine.get('quiet') else 'busy'}"
            )


def naive_extrapolation(naive: dict[str, Any], extract: dict[str, Any]) -> dict[str, Any]:
    """Scale each kind of the naive client's requests from the subset it read to the whole district."""
    entities = extract["entities"]
    kinds = naive["kinds"]
    scaled: dict[str, float] = {}
    for kind, item in kinds.items():
        if kind == "schools":
            factor = 1.0
        elif kind == "section_enrollments":  # one call per section: scale by sections
            factor = entities["sections"]["rows"] / max(1, naive["sections_read"])
        elif kind in naive["district_pages"]:
            pages = naive["district_pages"][kind]
            factor = pages["total_pages"] / max(1, pages["pages_read"])
        else:
            factor = (
                entities[kind]["rows"] / item["rows"]
                if item["rows"]
                else naive["schools_total"] / naive["schools_read"]
            )
        scaled[kind] = factor
    seconds = sum(kinds[kind]["seconds"] * factor for kind, factor in scaled.items())
    requests = sum(kinds[kind]["requests"] * factor for kind, factor in scaled.items())
    return {
        "seconds": round(seconds, 1),
        "requests": round(requests),
        "factors": {k: round(v, 2) for k, v in scaled.items()},
        "extrapolated": naive["fraction"] < 1,
    }


def bench_size(size: str, options: argparse.Namespace, machine_info: dict[str, Any]) -> dict[str, Any]:
    from sandbox.learning.testing import running_learning
    from sandbox.powerschool import datasets, store
    from sandbox.powerschool.testing import running_powerschool

    started_at = datetime.now(UTC)
    log(f"size {size}: building (or reusing) the generated district")
    build_started = time.perf_counter()
    dataset_path = datasets.resolve_dataset(size, seed=options.seed)
    build_seconds = time.perf_counter() - build_started
    with store.DatasetStore(dataset_path) as dataset:
        dataset_info = {
            "path": str(dataset_path.relative_to(REPO_ROOT))
            if dataset_path.is_relative_to(REPO_ROOT)
            else str(dataset_path),
            **{
                table: dataset.count(table)
                for table in ("schools", "students", "teachers", "sections", "cc", "guardian", "guardianstudent")
            },
        }

    work = WORK_DIR / size
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    staging_urls: dict[str, str] = {}
    for database in options.staging:
        if database == "sqlite":
            staging_urls[database] = f"sqlite:///{work / 'staging.sqlite'}"
        else:
            staging_urls[database] = report.fresh_postgres_database(options.postgres_url, f"bench_{size.lower()}")
    server_options: dict[str, Any] = {"latency_ms": options.latency_ms, "throttle_ms": options.throttle_ms}
    if options.max_page_size:
        server_options["max_page_sizes"] = dict(item.split("=") for item in options.max_page_size)
        server_options["max_page_sizes"] = {key: int(value) for key, value in server_options["max_page_sizes"].items()}
    result: dict[str, Any] = {
        "size": size,
        "started_at": started_at.isoformat(timespec="seconds"),
        "dataset": dataset_info,
        "dataset_build_seconds": round(build_seconds, 1),
        "settings": {
            "latency_ms": options.latency_ms,
            "throttle_ms": options.throttle_ms,
            "concurrency": options.concurrency,
            "staging": list(options.staging),
            "max_page_sizes": server_options.get("max_page_sizes", "simulator defaults"),
            "learning_database": "sqlite",
            "learning_batch_size": 1000,
            "change_fraction": options.change_fraction,
            **(
                {"postgresql_server": report.postgres_server_settings(options.postgres_url)}
                if "postgresql" in options.staging
                else {}
            ),
        },
        "runs": {database: {} for database in options.staging},
    }
    with contextlib.ExitStack() as servers:
        powerschool = servers.enter_context(running_powerschool(dataset=dataset_path, options=server_options))
        specs: dict[str, dict[str, Any]] = {}
        for database, staging_url in staging_urls.items():
            # A Learning server of its own per staging database: each load starts from an empty domain.
            token = secrets.token_urlsafe(24)
            learning = servers.enter_context(running_learning(domains={DISTRICT_ID: token}))
            specs[database] = {
                "district_id": DISTRICT_ID,
                "concurrency": options.concurrency,
                "staging_url": staging_url,
                "postgres_database": make_url(staging_url).database if database == "postgresql" else None,
                "work_dir": str(work / database),
                "default_password": secrets.token_urlsafe(12),
                "powerschool": {
                    "base_url": powerschool.base_url,
                    "client_id": powerschool.client_id,
                    "client_secret": powerschool.client_secret,
                    "ca_bundle": str(powerschool.ca_bundle),
                },
                "learning": {"base_url": learning.base_url, "token": token, "ca_bundle": str(learning.ca_bundle)},
            }
        partial = options.results_dir / f"{size}.partial.json"

        def save() -> None:
            # A long size (L) leaves its figures so far even if it is stopped before the end.
            result["machine"] = {**machine_info, "load_average_at_end": [round(v, 1) for v in os.getloadavg()]}
            partial.write_text(json.dumps(result, indent=2, default=str) + "\n")

        log(f"size {size}: full run on {', '.join(options.staging)}")
        run_import(specs, "bench_full", result["runs"], save)

        if options.naive:
            fraction = options.naive_fraction.get(size, 1.0)
            log(f"size {size}: naive baseline on {fraction:.0%} of the district")
            naive = run_child(
                "naive_client.py",
                {
                    "base_url": powerschool.base_url,
                    "client_id": powerschool.client_id,
                    "client_secret": powerschool.client_secret,
                    "ca_bundle": str(powerschool.ca_bundle),
                    "fraction": fraction,
                    "import_start_year": IMPORT_START_YEAR,
                },
            )
            naive["load_average"] = [round(value, 1) for value in os.getloadavg()]
            first_extract = result["runs"][options.staging[0]]["full"]["extract"]
            naive["whole_district"] = naive_extrapolation(naive, first_extract)
            result["naive"] = naive
            save()
            log(
                f"  naive: {naive['seconds']} s for {naive['requests']} requests; whole district "
                f"{naive['whole_district']['seconds']} s"
            )

        log(f"size {size}: changing {options.change_fraction:.0%} of the district through the admin API")
        change_started = time.perf_counter()
        result["changes"] = apply_changes(powerschool, dataset_path, options.change_fraction, seed=options.seed)
        result["changes"]["seconds"] = round(time.perf_counter() - change_started, 1)
        save()
        log(f"size {size}: incremental run")
        run_import(specs, "bench_incremental", result["runs"], save)
    for database, staging_url in staging_urls.items():
        result["runs"][database]["rows_that_changed"] = rows_that_changed(
            staging_url, DISTRICT_ID, "bench_full", "bench_incremental"
        )
        if database == "postgresql":
            if options.keep_databases:
                log(f"size {size}: kept the staging database {make_url(staging_url).database}")
            else:
                report.drop_postgres_database(staging_url)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["summary"] = report.summarise(result)
    partial.unlink(missing_ok=True)
    return result


def parse_staging(text: str) -> list[str]:
    databases = [item.strip().lower() for item in text.split(",") if item.strip()]
    unknown = [item for item in databases if item not in STAGING_DATABASES]
    if unknown or not databases:
        raise argparse.ArgumentTypeError(f"staging databases are {', '.join(STAGING_DATABASES)}; got {text!r}")
    return list(dict.fromkeys(databases))


def parse_fractions(text: str) -> dict[str, float]:
    fractions = dict(DEFAULT_NAIVE_FRACTION)
    for item in filter(None, (part.strip() for part in text.split(","))):
        size, value = item.split(":")
        fractions[size] = float(value)
    return fractions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default=os.environ.get("BENCH_SIZES", "S,M"),
        help="comma-separated sizes: tiny, demo, S, M, L (env BENCH_SIZES; default S,M)",
    )
    parser.add_argument(
        "--latency-ms",
        type=int,
        default=int(os.environ.get("BENCH_LATENCY_MS", "50")),
        help="latency the simulator adds to every /ws/ answer (env BENCH_LATENCY_MS; default 50)",
    )
    parser.add_argument(
        "--throttle-ms",
        type=int,
        default=int(os.environ.get("BENCH_THROTTLE_MS", "0")),
        help="simulator throttle: minimum ms between two requests of a client (env BENCH_THROTTLE_MS)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("BENCH_CONCURRENCY", "4")),
        help="the district's max_concurrent_requests (env BENCH_CONCURRENCY; default 4)",
    )
    parser.add_argument(
        "--max-page-size",
        action="append",
        default=[],
        metavar="RESOURCE=N",
        help="simulator max page size per resource (repeatable; default the simulator's)",
    )
    parser.add_argument(
        "--staging",
        type=parse_staging,
        default=parse_staging(os.environ.get("BENCH_STAGING", ",".join(STAGING_DATABASES))),
        help="staging databases measured side by side: sqlite, postgresql or both (env BENCH_STAGING; "
        "default sqlite,postgresql)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("BENCH_STAGING_URL") or DEFAULT_POSTGRES_URL,
        help="the PostgreSQL server: a fresh database per size (env BENCH_POSTGRES_URL; default "
        f"{DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--keep-databases",
        action="store_true",
        default=os.environ.get("BENCH_KEEP_DATABASES", "") not in ("", "0"),
        help="keep each size's PostgreSQL staging database to query afterwards (env BENCH_KEEP_DATABASES=1; "
        "by default it is dropped once the size's figures are written)",
    )
    parser.add_argument("--change-fraction", type=float, default=0.01, help="share of the district changed (0.01)")
    parser.add_argument(
        "--naive-fraction",
        type=parse_fractions,
        default=parse_fractions(os.environ.get("BENCH_NAIVE_FRACTION", "")),
        help="e.g. M:0.2,L:0.03 (env BENCH_NAIVE_FRACTION)",
    )
    parser.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive baseline")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild latest.md / latest.json from the results present (partial ones too)",
    )
    options = parser.parse_args(argv)
    if options.report_only:
        report.write_combined(options.results_dir)
        return 0

    options.results_dir.mkdir(parents=True, exist_ok=True)
    machine = report.machine_info()
    for size in [item.strip() for item in options.sizes.split(",") if item.strip()]:
        result = bench_size(size, options, machine)
        result["machine"] = {**machine, "load_average_at_end": [round(value, 1) for value in os.getloadavg()]}
        (options.results_dir / f"{size}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        log(f"size {size}: written to {options.results_dir / f'{size}.json'}")
        report.write_combined(options.results_dir)
    log(f"reports: {options.results_dir / 'latest.md'}, {options.results_dir / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
