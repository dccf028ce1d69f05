"""Import ID transition: move a Learning domain's existing users onto the Import IDs from PowerSchool.

Issue 19, for the source document's "Important considerations": a district whose live
Learning domain already has users (made by hand, or by an earlier integration) must give
them their new Import IDs before the first import, or the import creates a second account
for each of them (or fails on their logins). "Having the Google IDs/O365 emails in the
right place will make it a lot easier to get your users their new Import IDs ... If you
are not using Google Apps for Education or Office 365, you will need to help us map your
new Import IDs onto your old users."

``plan_transition`` matches each existing Learning user to a SIS record of the same user
type, from the Learning-shaped rows of a run (``learning_users``: a preview run is made
for this), trying in order:

1. **SSO email**: the user's Google / Office 365 address in Learning (their
   ``sso_email_address``, or their email when its domain is one of the district's
   ``sso_domains``) equals the record's ``sso_email_address``;
2. **login**: the same login (case does not matter);
3. **district CSV**: a line ``user_type,old_id,new_id`` of a file the district provides,
   ``old_id`` being the user's current Import ID in Learning (or, for a user without one,
   their login) and ``new_id`` the SIS DCID.

It never guesses: a user whose rule finds several records, whose rules disagree, whose
only candidate is of another user type, or whose record another Learning user also
matches is **ambiguous** and left for the district; a user no rule matches is
**unmatched**; a user already on the Import ID of a record of their type is **already**
done. Each plan is kept in ``transition_matches`` and written as a report
(``var/transitions/<district>/<plan>/``: ``index.html``, ``matches.csv``,
``summary.json``). ``apply_transition`` (the district's approval) gives each matched user
their Import ID in Learning (``PUT /api/v1/admin/users/{learning_id}/import-id``): the
user keeps login, password, authentication type and content, and the first import then
updates them instead of creating duplicates.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from sis_learning.config import REPO_ROOT, DistrictConfig
from sis_learning.staging.base import bulk_insert, create_all
from sis_learning.staging.learning import LearningUser
from sis_learning.staging.runs import SyncRun, utcnow
from sis_learning.staging.transition import (
    ALREADY,
    AMBIGUOUS,
    APPLIED,
    MATCHED,
    PLANNED,
    REFUSED,
    SKIPPED,
    UNMATCHED,
    TransitionMatch,
)

log = logging.getLogger(__name__)

METHODS = ("sso_email", "login", "district_csv")
OUTCOMES = (MATCHED, AMBIGUOUS, UNMATCHED, ALREADY)
CSV_COLUMNS = ("user_type", "old_id", "new_id")
# What the first import will set on a matched user, compared with what Learning has.
COMPARED_ON_FIRST_IMPORT = ("login", "first_name", "last_name", "email", "organization_id")


def transitions_root() -> Path:
    return Path(os.environ.get("SIS_LEARNING_TRANSITIONS_DIR", REPO_ROOT / "var" / "transitions"))


def _lower(value: Any) -> str:
    return str(value).strip().lower() if value not in (None, "") else ""


@dataclass
class Match:
    learning_user: dict[str, Any]
    outcome: str
    method: str | None = None
    new_import_id: str | None = None
    candidates: list[str] = field(default_factory=list)
    reason: str = ""
    first_import_changes: str = ""


def read_district_csv(path: Path | str) -> list[dict[str, str]]:
    """The district's mapping of old ids to new: ``user_type,old_id,new_id`` (user_type may be empty)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().lower() for name in reader.fieldnames or []]
        missing = [name for name in ("old_id", "new_id") if name not in header]
        if missing:
            raise ValueError(f"{path}: the header must be user_type,old_id,new_id (missing {', '.join(missing)})")
        rows = []
        for line, row in enumerate(reader, start=2):
            row = {key.strip().lower(): (value or "").strip() for key, value in row.items() if key}
            if not row.get("old_id") or not row.get("new_id"):
                raise ValueError(f"{path}:{line}: old_id and new_id are both needed")
            if row.get("user_type") and row["user_type"].upper() not in ("S", "T", "P"):
                raise ValueError(f"{path}:{line}: user_type must be S, T or P (or empty), not {row['user_type']!r}")
            rows.append(
                {"user_type": (row.get("user_type") or "").upper(), "old_id": row["old_id"], "new_id": row["new_id"]}
            )
    return rows


def match_users(
    learning_users: Iterable[dict[str, Any]],
    sis_users: Iterable[dict[str, Any]],
    sso_domains: Iterable[str],
    district_csv: Iterable[dict[str, str]] = (),
) -> list[Match]:
    """Match existing Learning users to SIS records (plain data in, plain data out)."""
    domains = {_lower(domain) for domain in sso_domains}
    sis = {f"{row['user_type']}:{row['external_id']}": row for row in sis_users}
    by_sso: dict[str, list[str]] = defaultdict(list)
    by_login: dict[str, list[str]] = defaultdict(list)
    for key, row in sis.items():
        if _lower(row.get("sso_email_address")):
            by_sso[_lower(row["sso_email_address"])].append(key)
        if _lower(row.get("login")):
            by_login[_lower(row["login"])].append(key)
    csv_lines = list(district_csv)

    def sso_address(user: dict[str, Any]) -> str:
        address = _lower(user.get("sso_email_address"))
        if address:
            return address
        email = _lower(user.get("email"))
        return email if email.rpartition("@")[2] in domains else ""

    def csv_candidates(user: dict[str, Any]) -> list[str]:
        # old_id is the user's current Import ID; a user without one is named by their login.
        name = _lower(user.get("external_id")) or _lower(user.get("login"))
        names = {name} if name else set()
        found = []
        for line in csv_lines:
            if _lower(line["old_id"]) in names and line["user_type"] in ("", user["user_type"]):
                found.append(f"{user['user_type']}:{line['new_id']}")
        return found

    matches: list[Match] = []
    for user in learning_users:
        user_type = user["user_type"]
        own_key = f"{user_type}:{user.get('external_id')}" if user.get("external_id") else None
        if own_key in sis:
            matches.append(
                Match(
                    user,
                    ALREADY,
                    new_import_id=user["external_id"],
                    candidates=[own_key],
                    reason="already on the Import ID of a SIS record of its type",
                )
            )
            continue
        found = {
            "sso_email": sorted(set(by_sso.get(sso_address(user), []))) if sso_address(user) else [],
            "login": sorted(set(by_login.get(_lower(user.get("login")), []))) if _lower(user.get("login")) else [],
            "district_csv": sorted(set(csv_candidates(user))),
        }
        method = next((name for name in METHODS if found[name]), None)
        if method is None:
            matches.append(
                Match(
                    user,
                    UNMATCHED,
                    reason="no SIS record has this user's SSO email or login, and the "
                    "district CSV has no line for them",
                )
            )
            continue
        candidates = found[method]
        same_type = [key for key in candidates if key.split(":", 1)[0] == user_type]
        if method == "district_csv":
            unknown = [key for key in same_type if key not in sis]
            if unknown:
                matches.append(
                    Match(
                        user,
                        UNMATCHED,
                        method,
                        candidates=candidates,
                        reason=f"the district CSV names {', '.join(unknown)}, which the run does not "
                        "import (not in PowerSchool, or rejected: see rejected_rows)",
                    )
                )
                continue
        if len(same_type) != 1:
            why = (
                f"{len(same_type)} SIS records of type {user_type} share this {method.replace('_', ' ')}"
                if same_type
                else f"the {method.replace('_', ' ')} belongs to a SIS record of another user type "
                f"({', '.join(candidates)})"
            )
            matches.append(Match(user, AMBIGUOUS, method, candidates=candidates, reason=why))
            continue
        chosen = same_type[0]
        others = {
            name: [key for key in found[name] if key.split(":", 1)[0] == user_type]
            for name in METHODS
            if name != method
        }
        disagree = [
            f"{name.replace('_', ' ')} says {', '.join(keys)}"
            for name, keys in others.items()
            if keys and chosen not in keys
        ]
        if disagree:
            matches.append(
                Match(
                    user,
                    AMBIGUOUS,
                    method,
                    candidates=[chosen, *(key for keys in others.values() for key in keys)],
                    reason=f"{method.replace('_', ' ')} says {chosen}, but " + "; ".join(disagree),
                )
            )
            continue
        matches.append(Match(user, MATCHED, method, chosen.split(":", 1)[1], [chosen]))

    # One SIS record, one Learning user: a record two users match, or one a user already holds, is the district's call.
    claims: dict[str, list[Match]] = defaultdict(list)
    for item in matches:
        if item.outcome in (MATCHED, ALREADY):
            claims[f"{item.learning_user['user_type']}:{item.new_import_id}"].append(item)
    for key, items in claims.items():
        if len(items) < 2:
            continue
        holders = ", ".join(str(item.learning_user.get("learning_id")) for item in items)
        for item in items:
            if item.outcome == MATCHED:
                item.outcome = AMBIGUOUS
                item.reason = f"SIS record {key} is matched by more than one Learning user (learning_id {holders})"
    for item in matches:
        if item.outcome == MATCHED:
            record = sis[f"{item.learning_user['user_type']}:{item.new_import_id}"]
            item.first_import_changes = "; ".join(
                f"{name}: {item.learning_user.get(name) or '(empty)'} -> {record.get(name) or '(empty)'}"
                for name in COMPARED_ON_FIRST_IMPORT
                if _lower(item.learning_user.get(name)) != _lower(record.get(name))
            )
    return matches


# ---- plan ---------------------------------------------------------------------------------------


def sis_users(engine: Engine, district_id: str, run_id: str) -> list[dict[str, Any]]:
    table = LearningUser.__table__
    columns = (
        "external_id",
        "user_type",
        "first_name",
        "last_name",
        "login",
        "email",
        "sso_email_address",
        "organization_id",
    )
    with engine.connect() as connection:
        return [
            dict(zip(columns, row, strict=True))
            for row in connection.execute(
                select(*(table.c[name] for name in columns)).where(
                    table.c.district_id == district_id, table.c.run_id == run_id
                )
            )
        ]


def latest_transformed_run(engine: Engine, district_id: str) -> str | None:
    """The district's latest import run that got past transform (a preview, or a success)."""
    runs = SyncRun.__table__
    with engine.connect() as connection:
        return connection.scalar(
            select(runs.c.run_id)
            .where(
                runs.c.district_id == district_id, runs.c.kind == "import", runs.c.status.in_(("previewed", "success"))
            )
            .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
            .limit(1)
        )


@dataclass
class Plan:
    district_id: str
    plan_id: str
    run_id: str
    directory: Path
    counts: dict[str, int]
    by_method: dict[str, int]

    @property
    def html_path(self) -> Path:
        return self.directory / "index.html"


def plan_transition(
    engine: Engine,
    config: DistrictConfig,
    learning_users: Iterable[dict[str, Any]],
    run_id: str,
    district_csv: Path | str | None = None,
) -> Plan:
    """Match, store the plan in ``transition_matches`` and write its report. Nothing is written to Learning."""
    create_all(engine)
    domains = [*config.sso_domains.google, *config.sso_domains.office365]
    csv_rows = read_district_csv(district_csv) if district_csv else []
    sis = sis_users(engine, config.district_id, run_id)
    if not sis:
        raise ValueError(
            f"run {run_id!r} of {config.district_id} has no learning_users: run a preview "
            f"(preview=true) first, then plan from it"
        )
    matches = match_users(learning_users, sis, domains, csv_rows)
    plan_id = utcnow().strftime("%Y%m%dT%H%M%S%f")
    now = utcnow()
    rows = []
    for item in matches:
        user = item.learning_user
        rows.append(
            {
                "district_id": config.district_id,
                "plan_id": plan_id,
                "run_id": run_id,
                "learning_id": int(user["learning_id"]),
                "user_type": user["user_type"],
                "current_import_id": user.get("external_id"),
                "login": user.get("login"),
                "email": user.get("email"),
                "name": f"{user.get('first_name') or ''} {user.get('last_name') or ''}".strip(),
                "outcome": item.outcome,
                "method": item.method,
                "new_import_id": item.new_import_id,
                "candidates": ", ".join(item.candidates) or None,
                "reason": item.reason or None,
                "first_import_changes": item.first_import_changes or None,
                "status": PLANNED if item.outcome == MATCHED else SKIPPED,
                "created_at": now,
            }
        )
    if rows:
        bulk_insert(engine, TransitionMatch, rows)
    directory = transitions_root() / config.district_id / plan_id
    plan = Plan(config.district_id, plan_id, run_id, directory, *_counts(rows))
    write_report(engine, config, plan)
    return plan


def _counts(rows: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    counts = dict.fromkeys(OUTCOMES, 0)
    by_method = dict.fromkeys(METHODS, 0)
    for row in rows:
        counts[row["outcome"]] += 1
        if row["outcome"] == MATCHED:
            by_method[row["method"]] += 1
    return counts, by_method


def plan_rows(engine: Engine, district_id: str, plan_id: str) -> list[dict[str, Any]]:
    table = TransitionMatch.__table__
    with engine.connect() as connection:
        return [
            dict(row._mapping)
            for row in connection.execute(
                select(table)
                .where(table.c.district_id == district_id, table.c.plan_id == plan_id)
                .order_by(table.c.outcome, table.c.user_type, table.c.learning_id)
            )
        ]


def write_report(engine: Engine, config: DistrictConfig, plan: Plan) -> None:
    rows = plan_rows(engine, config.district_id, plan.plan_id)
    plan.counts, plan.by_method = _counts(rows)
    plan.directory.mkdir(parents=True, exist_ok=True)
    columns = (
        "outcome",
        "method",
        "user_type",
        "learning_id",
        "current_import_id",
        "new_import_id",
        "login",
        "email",
        "name",
        "candidates",
        "reason",
        "first_import_changes",
        "status",
        "learning_answer",
    )
    with (plan.directory / "matches.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row[name] is None else row[name] for name in columns])
    statuses = dict.fromkeys((PLANNED, APPLIED, REFUSED, SKIPPED), 0)
    for row in rows:
        statuses[row["status"]] += 1
    summary = {
        "district_id": config.district_id,
        "plan_id": plan.plan_id,
        "run_id": plan.run_id,
        "counts": plan.counts,
        "matched_by": plan.by_method,
        "status": statuses,
        "files": {"html": "index.html", "csv": "matches.csv"},
    }
    (plan.directory / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    plan.html_path.write_text(_render_html(config, plan, rows, statuses), encoding="utf-8")


def _render_html(config: DistrictConfig, plan: Plan, rows: list[dict[str, Any]], statuses: dict[str, int]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Import ID transition: {esc(config.name)} {esc(plan.plan_id)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#eee}"
        "</style></head><body>",
        f"<h1>Moving {esc(config.name)}'s existing Learning users onto their Import IDs</h1>",
        f"<p>Plan <code>{esc(plan.plan_id)}</code>, SIS side from run <code>{esc(plan.run_id)}</code>. "
        f"Matched {plan.counts[MATCHED]} (by SSO email {plan.by_method['sso_email']}, by login "
        f"{plan.by_method['login']}, by the district CSV {plan.by_method['district_csv']}), ambiguous "
        f"{plan.counts[AMBIGUOUS]}, unmatched {plan.counts[UNMATCHED]}, already on their Import ID "
        f"{plan.counts[ALREADY]}. Applied {statuses[APPLIED]}, refused {statuses[REFUSED]}, waiting for approval "
        f"{statuses[PLANNED]}.</p>",
        "<p>Nothing is written to Learning until the plan is approved (<code>transition apply</code>). Ambiguous and "
        "unmatched users are left as they are: resolve them with a line in the district CSV "
        "(<code>user_type,old_id,new_id</code>) and plan again. All rows: <a href='matches.csv'>matches.csv</a>.</p>",
    ]
    headers = (
        "method",
        "type",
        "learning_id",
        "login",
        "name",
        "current Import ID",
        "new Import ID",
        "reason / candidates",
        "first import will change",
        "status",
    )
    for outcome in (AMBIGUOUS, UNMATCHED, MATCHED, ALREADY):
        chosen = [row for row in rows if row["outcome"] == outcome]
        if not chosen:
            continue
        parts.append(
            f"<h2>{esc(outcome)} ({len(chosen)})</h2><table><tr>"
            + "".join(f"<th>{esc(name)}</th>" for name in headers)
            + "</tr>"
        )
        for row in chosen[:200]:
            why = row["reason"] or ""
            if row["candidates"] and outcome != MATCHED:
                why = f"{why} [{row['candidates']}]"
            cells = (
                row["method"],
                row["user_type"],
                row["learning_id"],
                row["login"],
                row["name"],
                row["current_import_id"],
                row["new_import_id"],
                why,
                row["first_import_changes"],
                row["status"] + (f": {row['learning_answer']}" if row["learning_answer"] else ""),
            )
            parts.append(
                "<tr>" + "".join(f"<td>{esc('' if cell is None else str(cell))}</td>" for cell in cells) + "</tr>"
            )
        parts.append("</table>")
        if len(chosen) > 200:
            parts.append(f"<p>... and {len(chosen) - 200} more in matches.csv.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---- apply (the district's approval) --------------------------------------------------------


def apply_transition(engine: Engine, config: DistrictConfig, plan_id: str, hook: Any) -> Plan:
    """Give every planned match its Import ID in Learning; record each answer. Safe to run again.

    A user whose Import ID changed in Learning since the plan was made is skipped (plan
    again); a refusal (another user holds the Import ID) is recorded for that user alone.
    """
    from sis_learning.exceptions import NotFoundError, ValidationFailedError

    rows = plan_rows(engine, config.district_id, plan_id)
    if not rows:
        raise ValueError(f"no transition plan {plan_id!r} for district {config.district_id}")
    now_in_learning = {int(user["learning_id"]): user for user in hook.admin_users()}
    table = TransitionMatch.__table__
    for row in rows:
        if row["status"] != PLANNED:
            continue
        current = now_in_learning.get(int(row["learning_id"]))
        status, answer = APPLIED, None
        if current is None:
            status, answer = SKIPPED, "the user no longer exists in Learning"
        elif (current.get("external_id") or None) not in (row["current_import_id"], row["new_import_id"]):
            status, answer = (
                SKIPPED,
                (
                    f"the user's Import ID changed in Learning since the plan "
                    f"({row['current_import_id']} -> {current.get('external_id')}): plan again"
                ),
            )
        else:
            try:
                result = hook.set_import_id(row["learning_id"], row["new_import_id"])
                answer = result.get("result")
            except (ValidationFailedError, NotFoundError) as error:
                status, answer = REFUSED, str(error)
        with engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.id == row["id"])
                .values(status=status, learning_answer=answer, applied_at=utcnow())
            )
    counts, by_method = _counts(rows)
    plan = Plan(
        config.district_id,
        plan_id,
        rows[0]["run_id"],
        transitions_root() / config.district_id / plan_id,
        counts,
        by_method,
    )
    write_report(engine, config, plan)
    return plan


def format_text(plan: Plan, engine: Engine) -> str:
    rows = plan_rows(engine, plan.district_id, plan.plan_id)
    statuses: dict[str, int] = defaultdict(int)
    for row in rows:
        statuses[row["status"]] += 1
    return (
        f"Import ID transition plan {plan.plan_id} for {plan.district_id} (SIS side: run {plan.run_id}): "
        f"matched {plan.counts[MATCHED]} (SSO email {plan.by_method['sso_email']}, login "
        f"{plan.by_method['login']}, district CSV {plan.by_method['district_csv']}), ambiguous "
        f"{plan.counts[AMBIGUOUS]}, unmatched {plan.counts[UNMATCHED]}, already {plan.counts[ALREADY]}; "
        f"status: {', '.join(f'{name} {n}' for name, n in sorted(statuses.items()))}\n"
        f"Report: {plan.html_path}"
    )
