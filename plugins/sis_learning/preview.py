"""Preview (dry run): what a run would send to Learning, as a report; nothing is sent.

Issue 19, for the source document's warning that changing an integration "can be very
time consuming": a district (or a data engineer) sees what an import will do before it
does it. A run triggered with ``preview=true`` extracts, validates, transforms and diffs
as any run does; instead of the load, ``write_preview`` writes the change set it would
send into ``var/previews/<district>/<run>/`` (``SIS_LEARNING_PREVIEWS_DIR`` moves it):

- ``index.html``: totals per entity and action, the same per school, what the safety
  guard would say, and examples of each kind of change (updates with before -> after);
- ``<entity>.csv``: every row the load would send, in the order it would send them, with
  the fields it would send (``load.planned_requests``; the default password is never
  shown) and, for updates, what changes;
- ``summary.json``: the same totals, examples and findings, for scripts.

The run ends with status ``previewed`` (``sync_runs``). A preview never advances
anything a later run starts from: the Learning snapshot moves only when Learning accepts
a row (load.py), extract cursors start from the last ``success`` run
(extract/incremental.py), and grade push ledgers are not touched by an import.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from sis_learning.config import REPO_ROOT, DistrictConfig
from sis_learning.diff import ENTITIES, ENTITY_BY_NAME, change_counts, find_mass_changes
from sis_learning.staging.changes import ACTION_UPDATE, LearningSnapshot
from sis_learning.staging.learning import LearningOrganization
from sis_learning.staging.runs import utcnow

log = logging.getLogger(__name__)

STATUS_PREVIEWED = "previewed"
EXAMPLES_PER_ACTION = 5
ACTION_ORDER = ("create", "update", "deactivate", "remove")
# Sent with users but not part of the change set's payload (load.py adds it from the SSO email's domain).
USER_EXTRA_FIELDS = ("authentication_type",)


def previews_root() -> Path:
    return Path(os.environ.get("SIS_LEARNING_PREVIEWS_DIR", REPO_ROOT / "var" / "previews"))


def preview_dir(district_id: str, run_id: str) -> Path:
    safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    return previews_root() / district_id / safe_run


def csv_fields(entity: str) -> list[str]:
    """The columns of an entity's CSV: what the row is (``school``: the organization the row counts
    under, as the safety guard counts), then every field the load may send."""
    spec = ENTITY_BY_NAME[entity]
    extra = USER_EXTRA_FIELDS if entity == "users" else ()
    return ["action", "key", "school", *spec.payload_fields, *extra, "changes"]


@dataclass
class Preview:
    district_id: str
    district_name: str
    run_id: str
    directory: Path
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    per_school: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    school_names: dict[str, str] = field(default_factory=dict)
    examples: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    domain_settings: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    rows: int = 0

    @property
    def html_path(self) -> Path:
        return self.directory / "index.html"

    def as_dict(self) -> dict[str, Any]:
        return {
            "district_id": self.district_id,
            "district_name": self.district_name,
            "run_id": self.run_id,
            "status": STATUS_PREVIEWED,
            "generated_at": utcnow().isoformat(timespec="seconds") + "Z",
            "requests": self.requests,
            "rows": self.rows,
            "totals": self.totals,
            "per_school": [
                {"entity": entity, "organization_id": school, "school_name": self.school_names.get(school), **counts}
                for (entity, school), counts in sorted(self.per_school.items(), key=_school_order)
            ],
            "safety_findings": self.findings,
            "domain_settings": self.domain_settings,
            "examples": self.examples,
            "files": {"html": "index.html", **{spec.name: f"{spec.name}.csv" for spec in ENTITIES}},
        }


def _school_order(item: tuple[tuple[str, str], Any]) -> tuple[int, str, str]:
    (entity, school), _ = item
    return ([spec.name for spec in ENTITIES].index(entity), school or "", entity)


def _school_names(engine: Engine, district_id: str, run_id: str) -> dict[str, str]:
    """organization_id -> name: this run's organizations, else what Learning was last sent."""
    names: dict[str, str] = {}
    snapshot = LearningSnapshot.__table__
    organizations = LearningOrganization.__table__
    with engine.connect() as connection:
        for key, payload in connection.execute(
            select(snapshot.c.key, snapshot.c.payload).where(
                snapshot.c.district_id == district_id, snapshot.c.entity == "organizations"
            )
        ):
            names[key] = (json.loads(payload or "{}") or {}).get("name") or key
        for key, name in connection.execute(
            select(organizations.c.organization_id, organizations.c.name).where(
                organizations.c.district_id == district_id, organizations.c.run_id == run_id
            )
        ):
            names[key] = name or key
    return names


def _before_payloads(engine: Engine, district_id: str, entity: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    """What Learning was last sent for these keys (the 'before' of an update)."""
    if not keys:
        return {}
    snapshot = LearningSnapshot.__table__
    with engine.connect() as connection:
        return {
            key: json.loads(payload or "{}")
            for key, payload in connection.execute(
                select(snapshot.c.key, snapshot.c.payload).where(
                    snapshot.c.district_id == district_id, snapshot.c.entity == entity, snapshot.c.key.in_(keys)
                )
            )
        }


def _changes(entity: str, before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, list[Any]]:
    """field -> [before, after] for the Learning-visible fields an update changes."""
    if before is None:
        return {}
    return {
        name: [before.get(name), after.get(name)]
        for name in ENTITY_BY_NAME[entity].compared_fields
        if before.get(name) != after.get(name)
    }


def _describe_changes(changes: dict[str, list[Any]]) -> str:
    return "; ".join(f"{name}: {_text(old)} -> {_text(new)}" for name, (old, new) in changes.items())


def _text(value: Any) -> str:
    return "(empty)" if value is None or value == "" else str(value)


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def build_and_write(engine: Engine, config: DistrictConfig, run_id: str, directory: Path | None = None) -> Preview:
    """Stream the run's pending change set, as the load would send it, into the report files."""
    from sis_learning.load import planned_requests

    district_id = config.district_id
    directory = directory or preview_dir(district_id, run_id)
    directory.mkdir(parents=True, exist_ok=True)
    preview = Preview(district_id, config.name, run_id, directory)
    preview.school_names = _school_names(engine, district_id, run_id)
    unchanged = change_counts(engine, district_id, run_id)
    for spec in ENTITIES:
        preview.totals[spec.name] = {action: 0 for action in ACTION_ORDER}
        preview.totals[spec.name]["unchanged"] = unchanged.get(spec.name, {}).get("unchanged", 0)
    files = {spec.name: (directory / f"{spec.name}.csv").open("w", newline="", encoding="utf-8") for spec in ENTITIES}
    try:
        writers = {name: csv.DictWriter(handle, fieldnames=csv_fields(name)) for name, handle in files.items()}
        for writer in writers.values():
            writer.writeheader()
        for phase, batch, rows in planned_requests(engine, config, run_id):
            entity = phase.entity
            preview.requests += 1
            preview.rows += len(rows)
            update_keys = [
                key for key, action in zip(batch.keys, batch.actions, strict=True) if action == ACTION_UPDATE
            ]
            before = _before_payloads(engine, district_id, entity, update_keys)
            organizations = _organizations_of(engine, district_id, run_id, entity, batch.ids)
            for position, sent in enumerate(rows):
                action, key = batch.actions[position], batch.keys[position]
                school = organizations.get(batch.ids[position])
                changes = _changes(entity, before.get(key), batch.payloads[position]) if action == ACTION_UPDATE else {}
                preview.totals[entity][action] += 1
                preview.per_school.setdefault((entity, school), defaultdict(int))[action] += 1
                writers[entity].writerow(
                    {
                        "action": action,
                        "key": key,
                        "school": _csv_value(school),
                        **{name: _csv_value(value) for name, value in sent.items()},
                        "changes": _describe_changes(changes),
                    }
                )
                examples = preview.examples.setdefault(entity, {}).setdefault(action, [])
                if len(examples) < EXAMPLES_PER_ACTION:
                    example = {"key": key, "organization_id": school, "sent": sent}
                    if action == ACTION_UPDATE:
                        example["changes"] = changes
                    elif action in ("deactivate", "remove"):
                        example["current"] = batch.payloads[position]  # what Learning holds now
                    examples.append(example)
    finally:
        for handle in files.values():
            handle.close()
    preview.per_school = {key: dict(value) for key, value in preview.per_school.items()}
    preview.findings = find_mass_changes(engine, config, run_id)
    preview.domain_settings = _domain_settings(engine, config, run_id)
    (directory / "summary.json").write_text(json.dumps(preview.as_dict(), indent=2, default=str), encoding="utf-8")
    preview.html_path.write_text(render_html(preview), encoding="utf-8")
    log.info(
        "Preview of %s run %s: %d rows in %d requests would be sent; report %s",
        district_id,
        run_id,
        preview.rows,
        preview.requests,
        preview.html_path,
    )
    return preview


def _domain_settings(engine: Engine, config: DistrictConfig, run_id: str) -> dict[str, Any]:
    """The Manage Domain settings the load would make Learning say (load.write_domain_settings writes
    them after the rows, only where Learning's differ): the organizations this run would create count."""
    from sis_learning.load import domain_settings
    from sis_learning.staging.changes import ChangeSet

    settings = domain_settings(engine, config)
    changes = ChangeSet.__table__
    with engine.connect() as connection:
        created = (
            connection.execute(
                select(changes.c.key).where(
                    changes.c.district_id == config.district_id,
                    changes.c.run_id == run_id,
                    changes.c.entity == "organizations",
                    changes.c.action == "create",
                )
            )
            .scalars()
            .all()
        )
    organizations = set(settings["grade_push_organizations"]) | {
        key for key in created if config.grade_push.enabled_for(key)
    }
    settings["grade_push_organizations"] = sorted(
        organizations, key=lambda value: (not value.isdigit(), len(value), value)
    )
    return settings


def _organizations_of(engine: Engine, district_id: str, run_id: str, entity: str, ids: list[int]) -> dict[int, str]:
    """change_set id -> the school the row belongs to (the diff records it)."""
    from sis_learning.staging.changes import ChangeSet

    changes = ChangeSet.__table__
    with engine.connect() as connection:
        return dict(
            connection.execute(select(changes.c.id, changes.c.organization_id).where(changes.c.id.in_(ids))).all()
        )


def write_preview(engine: Engine, config: DistrictConfig, run_id: str, directory: Path | None = None) -> dict[str, Any]:
    """The preview task's body: write the report; return counts and where it is (XCom-safe)."""
    preview = build_and_write(engine, config, run_id, directory)
    return {
        "report": str(preview.html_path),
        "rows": preview.rows,
        "requests": preview.requests,
        "safety_findings": len(preview.findings),
        "counts": {
            entity: {action: n for action, n in counts.items() if n} for entity, counts in preview.totals.items()
        },
    }


# ---- HTML ------------------------------------------------------------------------------------

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
    "margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}.n{text-align:right}.warn{background:#fff3cd;padding:.5em 1em;border:1px solid #e0c060}"
    "code{font-size:90%}"
)


def _table(headers: list[str], rows: list[list[Any]], numeric_from: int | None = None) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(name))}</th>" for name in headers)
    body = []
    for row in rows:
        cells = []
        for position, value in enumerate(row):
            klass = " class='n'" if numeric_from is not None and position >= numeric_from else ""
            cells.append(f"<td{klass}>{esc(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(preview: Preview) -> str:
    esc = html.escape
    actions = [*ACTION_ORDER, "unchanged"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Preview: {esc(preview.district_name)} {esc(preview.run_id)}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Preview of an import for {esc(preview.district_name)} ({esc(preview.district_id)})</h1>",
        f"<p>Run <code>{esc(preview.run_id)}</code>. <b>Nothing was sent to PowerSchool Learning.</b> This is what "
        f"the import would send if it ran now: {preview.rows} row(s) in {preview.requests} request(s), in this "
        "order. A real run sends the district's default password with each new user (never shown here).</p>",
    ]
    if preview.findings:
        items = "".join(f"<li>{esc(_finding_text(item))}</li>" for item in preview.findings)
        parts.append(
            f"<div class='warn'><b>The safety guard would stop a real run</b> (nothing sent) until "
            f"someone approves it (<code>approve_mass_changes=true</code>):<ul>{items}</ul></div>"
        )
    parts.append("<h2>Totals</h2>")
    parts.append(
        _table(
            ["entity", "file", *actions],
            [
                [entity, f"{entity}.csv", *(counts.get(action, 0) for action in actions)]
                for entity, counts in preview.totals.items()
            ],
            numeric_from=2,
        )
    )
    parts.append("<h2>Per school</h2>")
    school_rows = []
    for (entity, school), counts in sorted(preview.per_school.items(), key=_school_order):
        name = preview.school_names.get(school or "", "")
        school_rows.append([entity, school or "(none)", name, *(counts.get(action, 0) for action in ACTION_ORDER)])
    parts.append(
        _table(["entity", "organization_id", "school", *ACTION_ORDER], school_rows, numeric_from=3)
        if school_rows
        else "<p>Nothing would change.</p>"
    )
    parts.append("<h2>Examples</h2>")
    if not any(by_action.get(action) for by_action in preview.examples.values() for action in ACTION_ORDER):
        parts.append("<p>None: nothing would be sent.</p>")
    for entity, by_action in preview.examples.items():
        for action in ACTION_ORDER:
            examples = by_action.get(action)
            if not examples:
                continue
            total = preview.totals[entity][action]
            parts.append(
                f"<h3>{esc(entity)}: {esc(action)} ({total}; the first {len(examples)} shown, all in "
                f"<a href='{esc(entity)}.csv'>{esc(entity)}.csv</a>)</h3>"
            )
            rows = []
            for example in examples:
                if action == ACTION_UPDATE:
                    detail = _describe_changes(example.get("changes") or {}) or "(fields sent only, nothing visible)"
                else:
                    shown = example.get("current") if action in ("deactivate", "remove") else example["sent"]
                    detail = ", ".join(f"{name}={_text(value)}" for name, value in (shown or {}).items())
                rows.append([example["key"], example.get("organization_id") or "", detail])
            parts.append(_table(["key", "organization_id", "changes" if action == ACTION_UPDATE else "fields"], rows))
    if preview.domain_settings:
        settings = preview.domain_settings
        parts.append(
            "<h2>Domain settings</h2><p>After the rows, the import makes Learning's Manage Domain settings "
            "say what the district file says (written only where they differ): ignore parents "
            f"{esc(str(settings.get('ignore_parents')))}, autogenerate usernames "
            f"{esc(str(settings.get('autogenerate_usernames')))}, imported passwords temporary "
            f"{esc(str(settings.get('imported_passwords_temporary')))}, grade push for organizations "
            f"{esc(', '.join(settings.get('grade_push_organizations') or []) or '(none)')}.</p>"
        )
    parts.append("<p>Machine-readable: <a href='summary.json'>summary.json</a>.</p></body></html>")
    return "\n".join(parts)


def _finding_text(finding: dict[str, Any]) -> str:
    if finding.get("kind") == "import_id_change":
        return (
            f"possible Import ID change: {finding['rows']} of {finding['previous_rows']} users leaving reappear "
            f"under a new id (e.g. {', '.join(finding.get('examples') or [])})"
        )
    return (
        f"school {finding.get('organization_id')}, {finding.get('entity')}: {finding.get('rows')} of "
        f"{finding.get('previous_rows')} would be {finding.get('action')}d"
    )


# ---- email -----------------------------------------------------------------------------------


def send_preview_email(config: DistrictConfig, report_dir: Path, run_url: str | None) -> bool:
    """Email the preview's totals to the district's contacts (``notifications.failure_emails``)."""
    from sis_learning import notify

    summary = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    return notify.send_preview_email(config, summary, str(report_dir / "index.html"), run_url)
