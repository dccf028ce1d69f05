"""The benchmark's figures and targets: per-size summary, the machine, the JSON and markdown reports.

Targets (issue 9), measured and marked met or missed, never asserted:
- extract within 1.25 x the network floor (requests made x latency / concurrency allowed;
  with a throttle, at least requests x throttle interval);
- SIS requests within 1.05 x the minimum (sum over entities of ceil(rows / max page size));
- validate + transform + load (diff and load: the DAG's load group) of L under 60 s;
- peak RSS under 2 GB for L (the largest of the stage processes);
- the 1% incremental rerun (issue 17): at most 0.20 of the full run's time and at most
  0.10 of its SIS requests, with Learning rows sent equal to the rows that changed (the
  oracle of bench/changes.py; limit 1.0).
"""

from __future__ import annotations

import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any

STAGES = ("extract", "validate", "transform", "diff", "load")
SIZE_ORDER = {"tiny": 0, "demo": 1, "S": 2, "M": 3, "L": 4}


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "code": code_version(),
        "load_average_at_start": [round(value, 1) for value in os.getloadavg()],
    }


# The /ws/schema tables an entity reads as its own data (every other table read is an id
# translation: Students.ID -> DCID and the like, for the CC and SectionTeacher rows).
OWN_TABLES = {"terms": ("terms",), "section_enrollments": ("cc",), "section_teachers": ("sectionteacher",)}


def request_breakdown(extract: dict[str, Any]) -> dict[str, int]:
    """The extract's SIS requests by purpose: token and metadata, counts, id translation reads, data pages."""
    breakdown = {"token_and_metadata": 0, "counts": 0, "id_translation_reads": 0, "data_pages": 0}
    entities = extract.get("entities") or {}
    per_entity = [(entity, item.get("requests_by_kind")) for entity, item in entities.items()]
    if not per_entity or any(kinds is None for _, kinds in per_entity):  # results written before per-entity kinds
        per_entity = [("", extract.get("requests_by_kind") or {})]
    counted = 0
    for entity, kinds in per_entity:
        for kind, number in kinds.items():
            counted += number
            table = kind.rsplit("/ws/schema/table/", 1)[1] if "/ws/schema/table/" in kind else None
            if "oauth" in kind or kind.endswith("/metadata"):
                breakdown["token_and_metadata"] += number
            elif kind.endswith("/count"):
                breakdown["counts"] += number
            elif table is not None and table not in OWN_TABLES.get(entity, ()):
                breakdown["id_translation_reads"] += number
            else:
                breakdown["data_pages"] += number
    # The token and metadata are read before the first entity starts its clock.
    breakdown["token_and_metadata"] += max(0, int(extract.get("requests") or 0) - counted)
    return breakdown


def code_version() -> str | None:
    """The commit the benchmark measured, with ``+changes`` when the tree had uncommitted edits."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "plugins", "sandbox", "bench", "dags"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}+changes" if dirty else commit


def fresh_postgres_database(server_url: str, prefix: str) -> str:
    """A new empty database on the PostgreSQL server of ``server_url``; returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _target(name: str, measured: float | None, limit: float, unit: str = "", note: str = "") -> dict[str, Any]:
    return {
        "target": name,
        "measured": measured,
        "limit": limit,
        "unit": unit,
        "met": None if measured is None else measured <= limit,
        "note": note,
    }


def _stage_total(run: dict[str, Any] | None, stages: tuple[str, ...] = STAGES, field: str = "seconds") -> float | None:
    if not run or any(stage not in run for stage in stages):
        return None
    return round(sum(run[stage][field] for stage in stages), 1)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The figures and targets of one size; parts not run (a stopped L run) come out as None."""
    settings = result["settings"]
    full, incremental = result.get("full") or {}, result.get("incremental") or {}
    extract = full.get("extract") or {}
    latency, concurrency, throttle = settings["latency_ms"], settings["concurrency"], settings["throttle_ms"]
    requests, minimum = extract.get("requests"), extract.get("minimum_requests")
    floor = minimum_floor = None
    if requests is not None:
        floor = max(requests * latency / 1000 / concurrency, requests * throttle / 1000)
        minimum_floor = max(minimum * latency / 1000 / concurrency, minimum * throttle / 1000)
    full_seconds, incremental_seconds = _stage_total(full), _stage_total(incremental)
    after_extract = _stage_total(full, ("validate", "transform", "diff", "load"))
    peak_rss = max(
        (run[stage]["peak_rss_mb"] for run in (full, incremental) for stage in STAGES if stage in run), default=None
    )
    changed = (result.get("rows_that_changed") or {}).get("total")
    sent = (incremental.get("load") or {}).get("rows_sent")
    summary: dict[str, Any] = {
        "complete": "summary" in result or bool(result.get("finished_at")),
        "full_seconds": full_seconds,
        "incremental_seconds": incremental_seconds,
        "extract_seconds": extract.get("seconds"),
        "extract_cpu_seconds": extract.get("cpu_seconds"),
        "sis_requests": requests,
        "sis_minimum_requests": minimum,
        "sis_minimum_requests_per_school_listing": extract.get("minimum_requests_per_school_listing"),
        "sis_requests_over_minimum": _ratio(requests, minimum),
        "network_floor_seconds": None if floor is None else round(floor, 1),
        "network_floor_seconds_for_minimum": None if minimum_floor is None else round(minimum_floor, 1),
        "extract_over_floor": _ratio(extract.get("seconds"), floor),
        "validate_transform_load_seconds": after_extract,
        # CPU of the stage processes only (not the Learning server's, not SQLite's disk waits):
        # on a machine shared at load average 15-25 the wall time is mostly waiting for a core.
        "validate_transform_load_cpu_seconds": _stage_total(
            full, ("validate", "transform", "diff", "load"), "cpu_seconds"
        ),
        "full_cpu_seconds": _stage_total(full, field="cpu_seconds"),
        "incremental_cpu_seconds": _stage_total(incremental, field="cpu_seconds"),
        "peak_rss_mb": peak_rss,
        "learning_requests_full": (full.get("load") or {}).get("requests"),
        "learning_rows_sent_full": (full.get("load") or {}).get("rows_sent"),
        "learning_requests_incremental": (incremental.get("load") or {}).get("requests"),
        "learning_rows_sent_incremental": sent,
        "rows_that_changed": changed,
        "change_set_rows_changed": (incremental.get("load") or {}).get("rows_changed"),
        "incremental_over_full": _ratio(incremental_seconds, full_seconds),
        "incremental_over_full_cpu": _ratio(
            _stage_total(incremental, field="cpu_seconds"), _stage_total(full, field="cpu_seconds")
        ),
        "rows_sent_over_changed": _ratio(sent, changed),
        "incremental_sis_requests": (incremental.get("extract") or {}).get("requests"),
        "incremental_sis_requests_over_full": _ratio((incremental.get("extract") or {}).get("requests"), requests),
        "incremental_extract_seconds": (incremental.get("extract") or {}).get("seconds"),
        "incremental_read_modes": {
            entity: item.get("read_mode")
            for entity, item in ((incremental.get("extract") or {}).get("entities") or {}).items()
            if item.get("read_mode")
        },
    }
    summary["sis_request_breakdown"] = request_breakdown(extract)
    naive = result.get("naive")
    if naive:
        whole = naive["whole_district"]
        summary["naive_seconds"] = whole["seconds"]
        summary["naive_requests"] = whole["requests"]
        summary["naive_extrapolated"] = whole["extrapolated"]
        summary["naive_measured_on"] = (
            f"{naive['schools_read']} of {naive['schools_total']} schools, "
            f"{naive['seconds']} s for {naive['requests']} requests"
            + (f"; {naive['note']}" if naive.get("note") else "")
        )
        summary["extract_over_naive"] = _ratio(extract["seconds"], whole["seconds"])
    targets = [
        _target("extract / network floor", summary["extract_over_floor"], 1.25, "x"),
        _target("SIS requests / minimum", summary["sis_requests_over_minimum"], 1.05, "x"),
        _target("incremental time / full time", summary["incremental_over_full"], 0.20, "x"),
        _target(
            "incremental SIS requests / full SIS requests", summary["incremental_sis_requests_over_full"], 0.10, "x"
        ),
        _target("Learning rows sent / rows that changed (incremental)", summary["rows_sent_over_changed"], 1.0, "x"),
    ]
    if result["size"] == "L":
        targets += [
            _target("validate + transform + diff + load of L", summary["validate_transform_load_seconds"], 60, "s"),
            _target("peak RSS of L (largest stage process)", peak_rss, 2048, "MB"),
        ]
    summary["targets"] = targets
    return summary


def _mark(target: dict[str, Any]) -> str:
    return "n/a" if target["met"] is None else ("**met**" if target["met"] else "**missed**")


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _load_note(results: list[dict[str, Any]]) -> str:
    """How busy the machine was: the wall times are only as good as the cores the stages got."""
    cores = results[-1]["machine"].get("cores") or 1
    highest = max(
        max(
            result["machine"].get("load_average_at_start", [0])[0], result["machine"].get("load_average_at_end", [0])[0]
        )
        for result in results
    )
    if highest > cores:
        return (
            f"The machine is shared with other engineers' runs: its load average at the start or end of a size "
            f"reached {highest} on {cores} cores (each stage's is in its row): "
            "wall times are upper bounds for a quiet machine; "
            "CPU seconds are steadier."
        )
    return (
        f"The load average at the start and end of each size was at most {highest} on {cores} cores (each "
        "stage's is in its row): the machine was quiet."
    )


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# Benchmark results (`make bench`)", ""]
    if not results:
        return "\n".join([*lines, "No results yet."])
    machine = results[-1]["machine"]
    lines += [
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"Python {machine['python']} ({machine['platform']}). " + _load_note(results),
        "",
    ]
    for result in results:
        summary, settings = result["summary"], result["settings"]
        dataset = result["dataset"]
        lines += [
            f"## {result['size']}: {dataset['students']:,} students, {dataset['cc']:,} CC rows, "
            f"{dataset['sections']:,} sections, {dataset['teachers']:,} staff, {dataset['guardian']:,} guardians",
            "",
            f"Run {result['started_at']} to {result.get('finished_at') or '(not finished: partial result)'}; "
            f"latency {settings['latency_ms']} ms per SIS "
            f"request, throttle {settings['throttle_ms']} ms, {settings['concurrency']} requests in flight allowed, "
            f"staging {settings['staging']}, Learning on SQLite; load average at start/end "
            f"{result['machine']['load_average_at_start'][0]} / {result['machine']['load_average_at_end'][0]}; "
            f"code {result['machine'].get('code') or 'unrecorded'}.",
            "",
            "| run | stage | wall s | CPU s | rows | rows/s | peak RSS MB | load avg (1 min) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for run_name in ("full", "incremental"):
            for stage in STAGES:
                item = (result.get(run_name) or {}).get(stage)
                if item is None:
                    lines.append(f"| {run_name} | {stage} | not run | | | | | |")
                    continue
                rate = item["rows"] / item["seconds"] if item["seconds"] else None
                lines.append(
                    f"| {run_name} | {stage} | {_number(item['seconds'])} | {_number(item['cpu_seconds'])} | "
                    f"{_number(item['rows'])} | {_number(round(rate)) if rate else '-'} | "
                    f"{_number(item['peak_rss_mb'])} | {item['load_average'][0]} |"
                )
            total = summary[f"{run_name}_seconds"]
            if total is not None:
                lines.append(f"| {run_name} | **total** | **{_number(total)}** | | | | | |")
        lines += ["", "| figure | value |", "|---|---:|"]
        rows = [
            (
                "SIS requests made / minimum (sum of ceil(rows / max page size))",
                f"{_number(summary['sis_requests'])} / {_number(summary['sis_minimum_requests'])} = "
                f"{_number(summary['sis_requests_over_minimum'])}x",
            ),
            (
                "requests made, by purpose",
                ", ".join(
                    f"{name.replace('_', ' ')} {count:,}" for name, count in summary["sis_request_breakdown"].items()
                )
                or "-",
            ),
            (
                "minimum with one listing per school and entity (the API lists per school)",
                _number(summary["sis_minimum_requests_per_school_listing"]),
            ),
            ("network floor (requests made x latency / concurrency)", f"{_number(summary['network_floor_seconds'])} s"),
            ("network floor for the minimum requests", f"{_number(summary['network_floor_seconds_for_minimum'])} s"),
            ("extract wall / floor", f"{_number(summary['extract_over_floor'])}x"),
            ("extract client CPU (parse + stage)", f"{_number(summary['extract_cpu_seconds'])} s"),
        ]
        if "naive_seconds" in summary:
            label = (
                "extrapolated from " + summary["naive_measured_on"]
                if summary["naive_extrapolated"]
                else "measured, " + summary["naive_measured_on"]
            )
            rows += [
                (
                    f"naive baseline extract (page size 100, sequential, one call per section; {label})",
                    f"{_number(summary['naive_seconds'])} s, {_number(summary['naive_requests'])} requests",
                ),
                ("our extract / naive", f"{_number(summary['extract_over_naive'])}x"),
            ]
        rows += [
            (
                "Learning requests / rows sent, full run",
                f"{_number(summary['learning_requests_full'])} / {_number(summary['learning_rows_sent_full'])}",
            ),
            (
                "changes made through the admin API",
                ", ".join(f"{kind} {count}" for kind, count in (result.get("changes") or {}).get("by_kind", {}).items())
                or "-",
            ),
            (
                "Learning requests / rows sent, incremental run",
                f"{_number(summary['learning_requests_incremental'])} / "
                f"{_number(summary['learning_rows_sent_incremental'])}",
            ),
            (
                "Learning rows that changed (oracle: run vs run) / change-set rows changed",
                f"{_number(summary['rows_that_changed'])} / {_number(summary['change_set_rows_changed'])}",
            ),
            (
                "incremental extract: read mode by entity",
                ", ".join(f"{entity} {mode}" for entity, mode in summary.get("incremental_read_modes", {}).items())
                or "-",
            ),
            (
                "SIS requests, incremental run / full run",
                f"{_number(summary.get('incremental_sis_requests'))} / {_number(summary['sis_requests'])} = "
                f"{_number(summary.get('incremental_sis_requests_over_full'))}",
            ),
            (
                "incremental run time / full run time",
                f"{_number(summary['incremental_seconds'])} / {_number(summary['full_seconds'])} s = "
                f"{_number(summary['incremental_over_full'])}",
            ),
            (
                "the same in CPU seconds of the stage processes (steadier when the load average moves between the "
                "runs; leaves out the Learning server's work, most of a full load)",
                f"{_number(summary['incremental_over_full_cpu'])}",
            ),
            (
                "CPU seconds of the stage processes: validate + transform + diff + load (full run); "
                "full run; incremental run",
                f"{_number(summary['validate_transform_load_cpu_seconds'])}; "
                f"{_number(summary['full_cpu_seconds'])}; {_number(summary['incremental_cpu_seconds'])}",
            ),
            ("largest peak RSS of a stage process", f"{_number(summary['peak_rss_mb'])} MB"),
        ]
        lines += [f"| {label} | {value} |" for label, value in rows]
        lines += ["", "| target | measured | limit | result |", "|---|---:|---:|---|"]
        for target in summary["targets"]:
            lines.append(
                f"| {target['target']} | {_number(target['measured'])} {target['unit']} | "
                f"{_number(target['limit'])} {target['unit']} | {_mark(target)} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def write_combined(results_dir: Path) -> None:
    """latest.json and latest.md: the latest result of every size in ``results_dir``."""
    by_size: dict[str, dict[str, Any]] = {}
    for path in sorted(results_dir.glob("*.json")):
        if path.stem == "latest":
            continue
        result = json.loads(path.read_text())
        # Recomputed from the raw figures (a partial run: what it measured so far).
        result["summary"] = summarise(result)
        known = by_size.get(result["size"])
        if known is None or result["started_at"] > known["started_at"]:
            by_size[result["size"]] = result
    results = list(by_size.values())
    results.sort(key=lambda item: SIZE_ORDER.get(item["size"], 99))
    (results_dir / "latest.json").write_text(
        json.dumps(
            {"sizes": {item["size"]: item["summary"] | {"started_at": item["started_at"]} for item in results}},
            indent=2,
            default=str,
        )
        + "\n"
    )
    (results_dir / "latest.md").write_text(markdown(results))
