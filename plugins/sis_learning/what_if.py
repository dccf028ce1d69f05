"""Mapping what-if: a past run's staged inputs through another mappings folder or district settings.

Issue 19: a data engineer changing a mapping (an edited ``users_students.csv``) or a
district setting (a different ``co_teacher_class_limit``) sees, before merging it, which
Learning rows would change and how, on real data. ``run_what_if``:

1. copies the past run's staged SIS rows (``stg_*``), its ``sync_runs`` row (validate
   reads the run's day from it) and the district's users in the Learning snapshot (the
   generated logins Learning holds, which transform keeps) into a scratch SQLite database
   beside the report, so the staging database is only read, never written;
2. runs validate and transform there with the other mappings folder and/or settings;
3. compares the result with what that run produced (its ``learning_*`` rows, and what its
   validate rejected or left out) per Learning entity and key: rows the change would add
   (Learning would create them), drop (users deactivated, roster rows and parent links
   removed, the rest left as they are) or change (field by field, before -> after), and
   source rows newly rejected or excluded, or no longer;
4. writes ``var/what-if/<district>/<run>/<timestamp>/``: ``index.html`` (totals and
   examples), ``<entity>.csv`` (every difference), ``rejections.csv``, ``summary.json``.

Nothing is sent to Learning and nothing in staging changes. Documented in
include/mappings/README.md ("Trying a mapping change: the what-if").
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from sis_learning.config import MAPPINGS_DIR, REPO_ROOT, DistrictConfig
from sis_learning.diff import ENTITIES, EntitySpec
from sis_learning.exceptions import DistrictConfigError
from sis_learning.staging.changes import LearningSnapshot
from sis_learning.staging.learning import LEARNING_TABLES
from sis_learning.staging.quality import ExcludedRow, RejectedRow
from sis_learning.staging.runs import SyncRun, utcnow
from sis_learning.staging.source import STAGED_SOURCE_TABLES

log = logging.getLogger(__name__)

EXAMPLES = 5
COPY_PAGE_ROWS = 20_000
ADDED, DROPPED, CHANGED = "added", "dropped", "changed"
# What Learning does with a row the change drops (diff.py: vanished keys).
DROPPED_MEANS = {"users": "deactivated", "rosters": "removed", "parent_links": "removed"}


def what_if_root() -> Path:
    return Path(os.environ.get("SIS_LEARNING_WHAT_IF_DIR", REPO_ROOT / "var" / "what-if"))


def with_settings(config: DistrictConfig, overrides: dict[str, Any]) -> DistrictConfig:
    """``config`` with dotted settings replaced (``{"co_teacher_class_limit": 30, "sso_domains.google": [...]}``),
    validated as a district file is."""
    data = config.model_dump()
    for dotted, value in overrides.items():
        target = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise DistrictConfigError(f"--set {dotted}: {part!r} is not a group of settings")
            target = target[part]
        if parts[-1] not in target:
            raise DistrictConfigError(f"--set {dotted}: not a known setting (see include/districts/README.md)")
        target[parts[-1]] = value
    try:
        changed = DistrictConfig.model_validate(data)
    except Exception as error:
        raise DistrictConfigError(f"--set {', '.join(overrides)}: {error}") from None
    return changed.model_copy(update={"source_file": config.source_file})


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` (the value read as YAML: ``30``, ``true``, ``[a, b]``)."""
    if "=" not in text:
        raise DistrictConfigError(f"--set {text!r}: write it as key=value (e.g. co_teacher_class_limit=30)")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


# ---- the scratch database --------------------------------------------------------------------


def _copy_rows(source: Engine, target: Engine, table: Any, where: tuple) -> int:
    columns = [column for column in table.columns if column.name != "id"]
    copied = 0
    last_id = 0
    while True:
        with source.connect() as connection:
            rows = connection.execute(
                select(table.c.id, *columns)
                .where(*where, table.c.id > last_id)
                .order_by(table.c.id)
                .limit(COPY_PAGE_ROWS)
            ).all()
        if not rows:
            return copied
        last_id = rows[-1][0]
        with target.begin() as connection:
            connection.execute(
                table.insert(), [dict(zip([c.name for c in columns], row[1:], strict=True)) for row in rows]
            )
        copied += len(rows)


def copy_run_inputs(source: Engine, target: Engine, district_id: str, run_id: str) -> dict[str, int]:
    """The run's staged SIS rows and its run row, into ``target`` (created empty)."""
    from sis_learning.staging.base import create_all

    create_all(target)
    copied = {}
    for entity, model in STAGED_SOURCE_TABLES.items():
        table = model.__table__
        copied[entity] = _copy_rows(
            source, target, table, (table.c.district_id == district_id, table.c.run_id == run_id)
        )
    runs = SyncRun.__table__
    _copy_rows(
        source, target, runs, (runs.c.district_id == district_id, runs.c.run_id == run_id, runs.c.kind == "import")
    )
    # Transform keeps the generated logins Learning accepted (staging.changes.held_logins).
    snapshot = LearningSnapshot.__table__
    copied["held_logins"] = _copy_rows(
        source, target, snapshot, (snapshot.c.district_id == district_id, snapshot.c.entity == "users")
    )
    return copied


# ---- comparing ---------------------------------------------------------------------------------


def _rows(engine: Engine, spec: EntitySpec, district_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    table = LEARNING_TABLES[spec.name].__table__
    fields = spec.compared_fields
    with engine.connect() as connection:
        result = connection.execute(
            select(*(table.c[name] for name in fields)).where(
                table.c.district_id == district_id, table.c.run_id == run_id
            )
        )
        rows = {}
        for values in result:
            row = dict(zip(fields, values, strict=True))
            rows[":".join(str(row[name]) for name in spec.key_fields)] = row
    return rows


def _quality_rows(engine: Engine, district_id: str, run_id: str) -> dict[tuple[str, str, str], str]:
    """(outcome, entity, source_id) -> rule, of validate's rejected and excluded rows."""
    found: dict[tuple[str, str, str], str] = {}
    for outcome, model in (("rejected", RejectedRow), ("excluded", ExcludedRow)):
        table = model.__table__
        with engine.connect() as connection:
            for entity, source_id, rule, reason in connection.execute(
                select(table.c.entity, table.c.source_id, table.c.rule, table.c.reason).where(
                    table.c.district_id == district_id, table.c.run_id == run_id, table.c.stage == "validate"
                )
            ):
                found[(outcome, entity, str(source_id))] = f"{rule}: {reason}"
    return found


@dataclass
class WhatIf:
    district_id: str
    run_id: str
    directory: Path
    mappings_dir: str
    settings: dict[str, Any]
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    fields_changed: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    rejection_examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "district_id": self.district_id,
            "run_id": self.run_id,
            "mappings_dir": self.mappings_dir,
            "settings": self.settings,
            "generated_at": utcnow().isoformat(timespec="seconds") + "Z",
            "totals": self.totals,
            "fields_changed": self.fields_changed,
            "examples": self.examples,
            "rejections": self.rejections,
            "rejection_examples": self.rejection_examples,
            "files": {
                "html": "index.html",
                "rejections": "rejections.csv",
                **{spec.name: f"{spec.name}.csv" for spec in ENTITIES},
            },
        }

    @property
    def any_difference(self) -> bool:
        return any(counts.get(kind) for counts in self.totals.values() for kind in (ADDED, DROPPED, CHANGED)) or any(
            self.rejections.values()
        )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def compare(before_engine: Engine, after_engine: Engine, district_id: str, run_id: str, result: WhatIf) -> None:
    """Fill ``result`` and write one CSV per entity: what the change adds, drops and changes."""
    for spec in ENTITIES:
        before = _rows(before_engine, spec, district_id, run_id)
        after = _rows(after_engine, spec, district_id, run_id)
        totals = {ADDED: 0, DROPPED: 0, CHANGED: 0, "same": 0}
        changed_fields: Counter = Counter()
        examples: dict[str, list[dict[str, Any]]] = {}
        with (result.directory / f"{spec.name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["difference", "key", "field", "before", "after", "in_learning"])

            def note(kind: str, key: str, detail: dict[str, Any], totals=totals, examples=examples) -> None:
                totals[kind] += 1
                bucket = examples.setdefault(kind, [])
                if len(bucket) < EXAMPLES:
                    bucket.append({"key": key, **detail})

            for key in sorted(after.keys() - before.keys()):
                note(ADDED, key, {"row": after[key]})
                writer.writerow(
                    [ADDED, key, "", "", json.dumps(after[key], default=str, ensure_ascii=False), "created"]
                )
            for key in sorted(before.keys() - after.keys()):
                note(DROPPED, key, {"row": before[key]})
                writer.writerow(
                    [
                        DROPPED,
                        key,
                        "",
                        json.dumps(before[key], default=str, ensure_ascii=False),
                        "",
                        DROPPED_MEANS.get(spec.name, "left as it is (Learning cannot delete it)"),
                    ]
                )
            for key in sorted(before.keys() & after.keys()):
                old, new = before[key], after[key]
                differences = {
                    name: [old[name], new[name]]
                    for name in spec.compared_fields
                    if _text(old[name]) != _text(new[name])
                }
                if not differences:
                    totals["same"] += 1
                    continue
                note(CHANGED, key, {"changes": differences})
                changed_fields.update(differences.keys())
                for name, (was, will) in differences.items():
                    writer.writerow([CHANGED, key, name, _text(was), _text(will), "updated"])
        result.totals[spec.name] = totals
        result.fields_changed[spec.name] = dict(changed_fields.most_common())
        result.examples[spec.name] = examples

    before_quality = _quality_rows(before_engine, district_id, run_id)
    after_quality = _quality_rows(after_engine, district_id, run_id)
    counts: Counter = Counter()
    with (result.directory / "rejections.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["difference", "outcome", "entity", "source_id", "before", "after"])
        for key in sorted(before_quality.keys() | after_quality.keys()):
            was, will = before_quality.get(key), after_quality.get(key)
            if was == will or (was and will and was.split(":", 1)[0] == will.split(":", 1)[0]):
                continue  # same outcome and rule (a reason's wording may name a changed value)
            outcome, entity, source_id = key
            kind = (
                f"newly_{outcome}"
                if was is None
                else f"no_longer_{outcome}"
                if will is None
                else f"{outcome}_rule_changed"
            )
            counts[kind] += 1
            writer.writerow([kind, outcome, entity, source_id, was or "", will or ""])
            if len(result.rejection_examples) < 2 * EXAMPLES:
                result.rejection_examples.append(
                    {"difference": kind, "entity": entity, "source_id": source_id, "before": was, "after": will}
                )
    result.rejections = dict(counts)


# ---- the command's body ------------------------------------------------------------------------


def latest_run(engine: Engine, district_id: str) -> str | None:
    """The district's latest import run that got past transform (success or previewed)."""
    runs = SyncRun.__table__
    with engine.connect() as connection:
        return connection.scalar(
            select(runs.c.run_id)
            .where(
                runs.c.district_id == district_id, runs.c.kind == "import", runs.c.status.in_(("success", "previewed"))
            )
            .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
            .limit(1)
        )


def run_what_if(
    engine: Engine,
    base_config: DistrictConfig,
    run_id: str,
    *,
    mappings_dir: Path | str | None = None,
    config: DistrictConfig | None = None,
    settings: dict[str, Any] | None = None,
    directory: Path | None = None,
    keep_scratch: bool = False,
) -> WhatIf:
    """Validate and transform ``run_id``'s staged inputs with other mappings/settings; compare; report."""
    from sis_learning import transform, validate

    district_id = base_config.district_id
    config = config or base_config
    if config.district_id != district_id:
        raise DistrictConfigError(f"the settings are for district {config.district_id!r}, the run is {district_id!r}'s")
    runs = SyncRun.__table__
    with engine.connect() as connection:
        if (
            connection.scalar(
                select(runs.c.id).where(
                    runs.c.district_id == district_id, runs.c.run_id == run_id, runs.c.kind == "import"
                )
            )
            is None
        ):
            raise ValueError(f"no import run {run_id!r} of district {district_id!r} in staging")
    mappings_dir = Path(mappings_dir or MAPPINGS_DIR)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    directory = directory or what_if_root() / district_id / safe_run / stamp
    directory.mkdir(parents=True, exist_ok=True)
    result = WhatIf(district_id, run_id, directory, str(mappings_dir), dict(settings or {}))
    scratch_path = directory / "scratch.sqlite"
    scratch_path.unlink(missing_ok=True)
    scratch = create_engine(f"sqlite:///{scratch_path}", connect_args={"timeout": 30})
    try:
        copied = copy_run_inputs(engine, scratch, district_id, run_id)
        log.info("what-if: copied run %s's staged rows into %s: %s", run_id, scratch_path, copied)
        transform.load_specs(mappings_dir)  # a bad spec fails before validate's minute of work
        validate.validate_run(scratch, config, run_id, directory / "validation")
        transform.transform_run(scratch, config, run_id, mappings_dir)
        compare(engine, scratch, district_id, run_id, result)
    finally:
        scratch.dispose()
        if not keep_scratch:
            scratch_path.unlink(missing_ok=True)
            shutil.rmtree(directory / "validation", ignore_errors=True)
    (directory / "summary.json").write_text(
        json.dumps(result.as_dict(), indent=2, default=str, ensure_ascii=False), encoding="utf-8"
    )
    (directory / "index.html").write_text(render_html(result), encoding="utf-8")
    return result


def format_text(result: WhatIf) -> str:
    lines = [
        f"What-if on run {result.run_id} of {result.district_id} (mappings {result.mappings_dir}"
        + (f", settings {result.settings}" if result.settings else "")
        + "): nothing was sent"
    ]
    for entity, totals in result.totals.items():
        fields = result.fields_changed.get(entity) or {}
        detail = f" ({', '.join(f'{name} {n}' for name, n in fields.items())})" if fields else ""
        lines.append(
            f"  {entity}: {totals[ADDED]} added, {totals[DROPPED]} dropped, {totals[CHANGED]} changed"
            f"{detail}, {totals['same']} the same"
        )
    if result.rejections:
        lines.append(
            "  validation: " + ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in result.rejections.items())
        )
    lines.append(f"Report: {result.directory / 'index.html'}")
    return "\n".join(lines)


def render_html(result: WhatIf) -> str:
    esc = html.escape

    def cell(value: Any) -> str:
        return esc(
            json.dumps(value, default=str, ensure_ascii=False) if isinstance(value, (dict, list)) else _text(value)
        )

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>What-if: {esc(result.district_id)} {esc(result.run_id)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
        "margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}"
        "th{background:#eee}</style></head><body>",
        f"<h1>What-if on run {esc(result.run_id)} of {esc(result.district_id)}</h1>",
        f"<p>Mappings <code>{esc(result.mappings_dir)}</code>"
        + (f", settings <code>{esc(json.dumps(result.settings, default=str))}</code>" if result.settings else "")
        + ". Compared with what the run produced. <b>Nothing was sent to Learning; staging was only read.</b></p>",
        "<h2>Learning rows</h2><table><tr><th>entity</th><th>added (created in Learning)</th>"
        "<th>dropped</th><th>changed</th><th>the same</th><th>fields changed</th><th>file</th></tr>",
    ]
    for entity, totals in result.totals.items():
        fields = ", ".join(f"{name} {n}" for name, n in (result.fields_changed.get(entity) or {}).items())
        dropped = f"{totals[DROPPED]} ({DROPPED_MEANS.get(entity, 'left as they are')})" if totals[DROPPED] else "0"
        parts.append(
            f"<tr><td>{esc(entity)}</td><td>{totals[ADDED]}</td><td>{esc(dropped)}</td>"
            f"<td>{totals[CHANGED]}</td><td>{totals['same']}</td><td>{esc(fields)}</td>"
            f"<td><a href='{esc(entity)}.csv'>{esc(entity)}.csv</a></td></tr>"
        )
    parts.append("</table>")
    if result.rejections:
        parts.append(
            "<h2>Validation</h2><ul>"
            + "".join(f"<li>{esc(kind.replace('_', ' '))}: {n}</li>" for kind, n in result.rejections.items())
            + "</ul><p>All in <a href='rejections.csv'>rejections.csv</a>.</p>"
        )
        parts.append(
            "<table><tr><th>difference</th><th>entity</th><th>source id</th><th>before</th><th>after</th></tr>"
            + "".join(
                f"<tr><td>{cell(item['difference'])}</td><td>{cell(item['entity'])}</td>"
                f"<td>{cell(item['source_id'])}</td><td>{cell(item['before'])}</td>"
                f"<td>{cell(item['after'])}</td></tr>"
                for item in result.rejection_examples
            )
            + "</table>"
        )
    parts.append("<h2>Examples</h2>")
    for entity, by_kind in result.examples.items():
        for kind in (CHANGED, ADDED, DROPPED):
            items = by_kind.get(kind)
            if not items:
                continue
            parts.append(
                f"<h3>{esc(entity)}: {esc(kind)} ({result.totals[entity][kind]})</h3><table>"
                "<tr><th>key</th><th>what</th></tr>"
            )
            for item in items:
                if kind == CHANGED:
                    what = "; ".join(
                        f"{name}: {_text(old) or '(empty)'} -> {_text(new) or '(empty)'}"
                        for name, (old, new) in item["changes"].items()
                    )
                else:
                    what = ", ".join(f"{name}={_text(value)}" for name, value in item["row"].items())
                parts.append(f"<tr><td>{esc(item['key'])}</td><td>{esc(what)}</td></tr>")
            parts.append("</table>")
    parts.append("<p>Machine-readable: <a href='summary.json'>summary.json</a>.</p></body></html>")
    return "\n".join(parts)
