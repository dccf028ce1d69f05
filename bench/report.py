"""The benchmark's figures and targets: per-size summary, the machine, the JSON and markdown reports.

A size's result holds one run per staging database (``runs``: sqlite, postgresql), each
stage with what the machine did meanwhile (``machine``, bench/machine.py); results written
before both were measured (one database, top-level ``full`` / ``incremental``) are read
as a single run.

Targets (issue 9), measured and marked met or missed, never asserted:
- extract within 1.25 x the network floor (requests made x latency / concurrency allowed;
  with a throttle, at least requests x throttle interval);
- SIS requests within 1.05 x the minimum (sum over entities of ceil(rows / max page size));
- validate + transform + load (diff and load: the DAG's load group) of L under 60 s;
- peak RSS under 2 GB for L (the largest of the stage processes);
- the 1% incremental rerun (issue 17): at most 0.20 of the full run's time and at most
  0.10 of its SIS requests, with Learning rows sent equal to the rows that changed (the
  oracle of bench/changes.py; limit 1.0);
- PostgreSQL staging as fast as SQLite (issue 21): validate + transform + diff + load of L
  on PostgreSQL at most 1.1 x the same on SQLite, measured side by side in one run.
"""

from __future__ import annotations

import json
import os
import platform
import uuid
from pathlib import Path
from typing import Any

from bench.machine import QUIET_OTHER_CORES

STAGES = ("extract", "validate", "transform", "diff", "load")
AFTER_EXTRACT = ("validate", "transform", "diff", "load")
DATABASE_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
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


# The PostgreSQL server settings that decide how fast bulk staging is (docs/load.md,
# "PostgreSQL staging", what to give the server): recorded with every result, since the same
# code on a default-configured server and on a tuned one gives different figures.
POSTGRES_SERVER_SETTINGS = (
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_compression",
    "work_mem",
    "maintenance_work_mem",
    "synchronous_commit",
    "jit",
    "autovacuum",
)


def postgres_server_settings(server_url: str) -> dict[str, str]:
    """The server's version and ``POSTGRES_SERVER_SETTINGS``, as ``SHOW`` prints them."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url)
    try:
        with engine.connect() as connection:
            found = {"version": connection.execute(text("SHOW server_version")).scalar_one().split()[0]}
            for name in POSTGRES_SERVER_SETTINGS:
                found[name] = connection.execute(text("SELECT current_setting(:name)"), {"name": name}).scalar_one()
    finally:
        engine.dispose()
    return found


def _postgres_note(settings: dict[str, Any]) -> str:
    server = settings.get("postgresql_server")
    if not server:
        return ""
    values = ", ".join(f"{name} {server[name]}" for name in POSTGRES_SERVER_SETTINGS if name in server)
    return f" PostgreSQL {server.get('version', '?')} server: {values}."


def drop_postgres_database(database_url: str) -> None:
    """Drop a database ``fresh_postgres_database`` made (at L it holds several GB)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


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
    if not run or any(run.get(stage, {}).get(field) is None for stage in stages):
        return None
    return round(sum(run[stage][field] for stage in stages), 1)


def runs_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Staging database -> its run (``full``, ``incremental``, ``rows_that_changed``), old results too."""
    if "runs" in result:
        return result["runs"]
    staging = result["settings"].get("staging") or "sqlite"
    return {
        staging: {
            "full": result.get("full") or {},
            "incremental": result.get("incremental") or {},
            "rows_that_changed": result.get("rows_that_changed"),
        }
    }


def summarise_database(result: dict[str, Any], run: dict[str, Any], database: str) -> dict[str, Any]:
    """The figures and targets of one size on one staging database; parts not run come out as None."""
    settings = result["settings"]
    full, incremental = run.get("full") or {}, run.get("incremental") or {}
    extract = full.get("extract") or {}
    full_load = full.get("load") or {}
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
    changed = (run.get("rows_that_changed") or {}).get("total")
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
        "validate_transform_load_server_cpu_seconds": _stage_total(full, AFTER_EXTRACT, "server_cpu_seconds"),
        # CPU of the stage processes only (not the Learning server's, not SQLite's disk waits):
        # on a machine shared at load average 15-25 the wall time is mostly waiting for a core.
        "validate_transform_load_cpu_seconds": _stage_total(
            full, ("validate", "transform", "diff", "load"), "cpu_seconds"
        ),
        "full_cpu_seconds": _stage_total(full, field="cpu_seconds"),
        "incremental_cpu_seconds": _stage_total(incremental, field="cpu_seconds"),
        "peak_rss_mb": peak_rss,
        # The reference Learning server is one Python process applying a domain's batches one at a
        # time: its CPU time is near enough a lower bound on the full load's wall time (None in
        # results sampled before it was counted apart).
        "learning_server_cpu_seconds_full_load": (full_load.get("machine") or {}).get("learning_server_cpu_seconds"),
        "full_load_seconds": full_load.get("seconds"),
        "learning_requests_full": full_load.get("requests"),
        "learning_rows_sent_full": full_load.get("rows_sent"),
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
    if naive and extract:
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
    label = DATABASE_LABELS.get(database, database)
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
    summary["targets"] = [{**target, "staging": label} for target in targets]
    return summary


def _server_cpu(item: dict[str, Any]) -> float | None:
    return item.get("server_cpu_seconds")


def stage_field(item: dict[str, Any] | None, field: str) -> Any:
    return None if item is None else item.get(field)


def machine_quiet(result: dict[str, Any]) -> dict[str, Any]:
    """Whether every stage of the size ran on a quiet machine, and the busiest stage."""
    samples = []
    for database, run in runs_of(result).items():
        for kind in ("full", "incremental"):
            for stage, item in (run.get(kind) or {}).items():
                machine = item.get("machine") if isinstance(item, dict) else None
                if machine and machine.get("quiet") is not None:
                    samples.append((machine["other_work_cores"], f"{kind} {stage} on {database}", machine))
    if not samples:
        return {"quiet": None, "sampled_stages": 0}
    busiest = max(samples, key=lambda sample: sample[0])
    return {
        "quiet": all(sample[2]["quiet"] for sample in samples),
        "sampled_stages": len(samples),
        "busy_stages": sum(1 for sample in samples if not sample[2]["quiet"]),
        "busiest_stage": busiest[1],
        "busiest_other_work_cores": busiest[0],
        "load_average_max": max(sample[2].get("load_average_max") or 0 for sample in samples),
    }


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The figures and targets of one size: per staging database, side by side, and the machine."""
    runs = runs_of(result)
    per_database = {database: summarise_database(result, run, database) for database, run in runs.items()}
    summary: dict[str, Any] = {
        "complete": "summary" in result or bool(result.get("finished_at")),
        "staging": per_database,
        "machine": machine_quiet(result),
    }
    targets = [target for database in per_database.values() for target in database["targets"]]
    sqlite, postgresql = runs.get("sqlite"), runs.get("postgresql")
    if sqlite and postgresql:
        side_by_side: dict[str, Any] = {}
        for kind in ("full", "incremental"):
            for stage in STAGES:
                light, heavy = (sqlite.get(kind) or {}).get(stage), (postgresql.get(kind) or {}).get(stage)
                if light and heavy:
                    side_by_side[f"{kind}.{stage}"] = _ratio(heavy["seconds"], light["seconds"])
        light_total = per_database["sqlite"]["validate_transform_load_seconds"]
        heavy_total = per_database["postgresql"]["validate_transform_load_seconds"]
        ratio = _ratio(heavy_total, light_total)
        summary["postgresql_over_sqlite"] = {
            "stages": side_by_side,
            "validate_transform_diff_load": ratio,
            "validate_transform_diff_load_cpu": _ratio(
                per_database["postgresql"]["validate_transform_load_cpu_seconds"],
                per_database["sqlite"]["validate_transform_load_cpu_seconds"],
            ),
        }
        if result["size"] == "L":
            targets.append(
                {
                    **_target("validate + transform + diff + load of L, PostgreSQL / SQLite", ratio, 1.1, "x"),
                    "staging": "both",
                }
            )
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


def _machine_note(result: dict[str, Any]) -> str:
    """One size's busyness, as sampled while its stages ran (or the ends only, for older results)."""
    machine = result["summary"]["machine"]
    ends = (
        f"load average at start/end {result['machine'].get('load_average_at_start', ['-'])[0]} / "
        f"{result['machine'].get('load_average_at_end', ['-'])[0]}"
    )
    if machine["quiet"] is None:
        return f"Not sampled while the stages ran (a result from before the sampler): {ends}."
    if machine["quiet"]:
        return (
            f"**Quiet**: in every one of the {machine['sampled_stages']} stages other work used at most "
            f"{QUIET_OTHER_CORES} cores on average (the most: {machine['busiest_other_work_cores']} in "
            f"{machine['busiest_stage']}); {ends}."
        )
    return (
        f"**Busy**: other work used more than {QUIET_OTHER_CORES} cores on average in {machine['busy_stages']} of "
        f"{machine['sampled_stages']} stages (the most: {machine['busiest_other_work_cores']} cores in "
        f"{machine['busiest_stage']}; load average up to {machine['load_average_max']}): wall times are upper "
        f"bounds, CPU seconds are steadier; {ends}."
    )


def _stage_cells(item: dict[str, Any] | None, database: str) -> list[str]:
    if item is None:
        return ["not run", ""] + ([""] if database == "postgresql" else [])
    cells = [_number(item["seconds"]), _number(item["cpu_seconds"])]
    if database == "postgresql":
        cells.append(_number(_server_cpu(item)))
    return cells


def _stage_table(result: dict[str, Any]) -> list[str]:
    """Each stage side by side on every staging database: wall, CPU, the server's CPU, the machine."""
    runs = runs_of(result)
    databases = list(runs)
    header = ["run", "stage"]
    for database in databases:
        label = DATABASE_LABELS.get(database, database)
        header += [f"{label} wall s", f"{label} CPU s"]
        if database == "postgresql":
            header.append("PostgreSQL server CPU s")
    if len(databases) > 1:
        header.append("wall PostgreSQL / SQLite")
    header += ["rows", "peak RSS MB", "load avg (1 min, mean)", "other work, cores"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for kind in ("full", "incremental"):
        totals: dict[str, dict[str, float]] = {database: {} for database in databases}
        for stage in STAGES:
            items = {database: (runs[database].get(kind) or {}).get(stage) for database in databases}
            cells = [kind, stage]
            for database in databases:
                cells += _stage_cells(items[database], database)
            if len(databases) > 1:
                light, heavy = items.get("sqlite"), items.get("postgresql")
                cells.append(f"{_number(_ratio(heavy['seconds'], light['seconds']))}x" if light and heavy else "-")
            present = [item for item in items.values() if item]
            cells.append(_number(present[0]["rows"]) if present else "")
            cells.append(" / ".join(_number(item["peak_rss_mb"]) for item in present))
            machines = [(item.get("machine") or {}) for item in present]
            cells.append(
                " / ".join(
                    _number(machine.get("load_average_mean"))
                    if machine
                    else str((item.get("load_average") or ["-"])[0])
                    for machine, item in zip(machines, present, strict=True)
                )
            )
            cells.append(" / ".join(_number(machine.get("other_work_cores")) for machine in machines))
            lines.append("| " + " | ".join(cells) + " |")
            for database, item in items.items():
                if item is None:
                    continue
                for field in ("seconds", "cpu_seconds", "server_cpu_seconds"):
                    if item.get(field) is not None:
                        part = totals[database].setdefault(field, 0.0)
                        totals[database][field] = part + item[field]
                        if stage != "extract":
                            key = f"after_extract_{field}"
                            totals[database][key] = totals[database].get(key, 0.0) + item[field]
        for label, prefix in (("**total**", ""), ("**validate + transform + diff + load**", "after_extract_")):
            cells = [kind, label]
            for database in databases:
                total = totals[database]
                cells += [
                    f"**{_number(round(total[prefix + 'seconds'], 1))}**" if prefix + "seconds" in total else "-",
                    _number(round(total[prefix + "cpu_seconds"], 1)) if prefix + "cpu_seconds" in total else "-",
                ]
                if database == "postgresql":
                    server = total.get(prefix + "server_cpu_seconds")
                    cells.append(_number(round(server, 1)) if server is not None else "-")
            if len(databases) > 1:
                light = totals["sqlite"].get(prefix + "seconds")
                heavy = totals["postgresql"].get(prefix + "seconds")
                cells.append(f"**{_number(_ratio(heavy, light))}x**" if light and heavy else "-")
            cells += ["", "", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _figure_rows(result: dict[str, Any], summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        (
            "SIS requests made / minimum (sum of ceil(rows / max page size))",
            f"{_number(summary['sis_requests'])} / {_number(summary['sis_minimum_requests'])} = "
            f"{_number(summary['sis_requests_over_minimum'])}x",
        ),
        (
            "requests made, by purpose",
            ", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in summary["sis_request_breakdown"].items())
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
            ", ".join(f"{entity} {mode}" for entity, mode in summary.get("incremental_read_modes", {}).items()) or "-",
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
        (
            "PostgreSQL server CPU seconds for validate + transform + diff + load (full run)",
            _number(summary.get("validate_transform_load_server_cpu_seconds")),
        ),
        (
            "full load: wall time / CPU time of the Learning reference server (one Python process that applies "
            "a domain's batches one at a time: near enough a lower bound on the load's wall time)",
            f"{_number(summary.get('full_load_seconds'))} s / "
            f"{_number(summary.get('learning_server_cpu_seconds_full_load'))} s",
        ),
        ("largest peak RSS of a stage process", f"{_number(summary['peak_rss_mb'])} MB"),
    ]
    return rows


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# Benchmark results (`make bench`)", ""]
    if not results:
        return "\n".join([*lines, "No results yet."])
    machine = results[-1]["machine"]
    lines += [
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"Python {machine['python']} ({machine['platform']}). How busy it was is sampled while each stage "
        "runs (bench/machine.py): other work is the machine's busy CPU time less the benchmark's own processes "
        "(stage, simulator, Learning server), its PostgreSQL backends and, where sampled "
        "(`postgres_background_cpu_seconds`), the server's background writers, which write out what the backends "
        f"wrote (checkpointer, background writer, WAL writer); a stage is quiet when other work used "
        f"at most {QUIET_OTHER_CORES} cores on average, a size when every stage was.",
        "",
    ]
    for result in results:
        summary, settings = result["summary"], result["settings"]
        dataset = result["dataset"]
        staging = settings["staging"] if isinstance(settings["staging"], list) else [settings["staging"]]
        lines += [
            f"## {result['size']}: {dataset['students']:,} students, {dataset['cc']:,} CC rows, "
            f"{dataset['sections']:,} sections, {dataset['teachers']:,} staff, {dataset['guardian']:,} guardians",
            "",
            f"Run {result['started_at']} to {result.get('finished_at') or '(not finished: partial result)'}; "
            f"latency {settings['latency_ms']} ms per SIS "
            f"request, throttle {settings['throttle_ms']} ms, {settings['concurrency']} requests in flight allowed, "
            f"staging {' and '.join(DATABASE_LABELS.get(item, item) for item in staging)}"
            f"{' (each stage on both before the next)' if len(staging) > 1 else ''}, Learning on SQLite; "
            f"code {result['machine'].get('code') or 'unrecorded'}.{_postgres_note(settings)}",
            "",
            _machine_note(result),
            "",
            *_stage_table(result),
        ]
        databases = list(summary["staging"])
        lines += [
            "",
            "| figure | " + " | ".join(DATABASE_LABELS.get(database, database) for database in databases) + " |",
            "|---|" + "---:|" * len(databases),
        ]
        columns = [_figure_rows(result, summary["staging"][database]) for database in databases]
        for position, (label, _value) in enumerate(columns[0]):
            values = [column[position][1] for column in columns]
            lines.append(f"| {label} | " + " | ".join(values) + " |")
        lines += ["", "| target | staging | measured | limit | result |", "|---|---|---:|---:|---|"]
        for target in summary["targets"]:
            lines.append(
                f"| {target['target']} | {target.get('staging', '')} | {_number(target['measured'])} "
                f"{target['unit']} | {_number(target['limit'])} {target['unit']} | {_mark(target)} |"
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
