"""The run's Data Docs, made to work offline and to tell the whole validation story.

Great Expectations builds the HTML (``suites.run_suites``) with its stylesheets, scripts and
logos on CDNs: without internet the pages wait on them and render blank. ``finish`` rewrites
every page of the run's ``data_docs/`` folder so it needs nothing but that folder: each
external ``<link>``, ``<script src>`` and ``<img>`` is removed and ``static/styles/offline.css``
(``data_docs.css`` beside this module) is linked instead; GX's local stylesheet stays.

Each validation page (and the index) also gets, at its top, the run, the district and the
entity, and the outcomes of the **row rules** beside the expectation results: the rules
that are not expectations (a login two users share, a reference that does not resolve, the
cascade, the exclusions by design) reject or leave out rows that every expectation passed,
so an entity can show 100% success in GX and still have rejected rows. The counts come
from the staged tables analysts read (rejected_rows, excluded_rows, validation_warnings).
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

STYLESHEET = Path(__file__).with_name("data_docs.css")
EXTERNAL = re.compile(
    r"<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>"
    r"|<script\b[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>\s*</script>"
    r"|<img\b[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>",
    re.I | re.S,
)
OUTCOMES = (
    ("rejected_rows", "rejected (to fix in PowerSchool)"),
    ("excluded_rows", "left out by design"),
    ("validation_warnings", "imported without the value (warning)"),
)


def row_rule_outcomes(engine: Engine, district_id: str, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """{entity: [{rule, outcome, rows, example}]} of the run's validate stage, from the staged tables."""
    found: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for table, outcome in OUTCOMES:
            rows = connection.execute(
                text(
                    f"SELECT entity, rule, COUNT(*) AS n, MIN(reason) AS example FROM {table} "
                    "WHERE district_id = :district AND run_id = :run AND stage = 'validate' "
                    "GROUP BY entity, rule ORDER BY entity, n DESC, rule"
                ),
                {"district": district_id, "run": run_id},
            )
            for row in rows:
                found.setdefault(row.entity, []).append(
                    {"rule": row.rule, "outcome": outcome, "rows": int(row.n), "example": row.example}
                )
    return found


def _rules_table(rules: list[dict[str, Any]]) -> str:
    if not rules:
        return "<p>No row rule rejected, left out or warned about any row.</p>"
    esc = html.escape
    body = "".join(
        f"<tr><td>{esc(item['rule'])}</td><td>{esc(item['outcome'])}</td><td class='n'>{item['rows']}"
        f"</td><td>{esc(str(item['example']))}</td></tr>"
        for item in rules
    )
    return (
        "<table class='sis-rules'><tr><th>row rule</th><th>outcome</th><th>rows</th><th>for example</th></tr>"
        f"{body}</table>"
    )


def _banner(
    district_id: str,
    run_id: str,
    entity: str | None,
    rules: dict[str, list[dict[str, Any]]],
    suites: dict[str, dict[str, Any]],
) -> str:
    esc = html.escape
    if entity is not None:
        suite = suites.get(entity, {})
        return (
            f"<section class='sis-run'><h2>{esc(entity)}: district {esc(district_id)}, run {esc(run_id)}</h2>"
            f"<p>Expectations (below): {suite.get('evaluated', '?')} row(s) checked, {suite.get('failed', '?')} "
            "failed an expectation. Row rules (the rules that are not expectations: shared logins, references, "
            "the cascade, exclusions by design), from rejected_rows, excluded_rows and validation_warnings:</p>"
            f"{_rules_table(rules.get(entity, []))}</section>"
        )
    lines = "".join(
        f"<tr><td>{esc(name)}</td><td class='n'>{suite.get('evaluated', 0)}</td><td class='n'>{suite.get('failed', 0)}"
        f"</td><td class='n'>{sum(i['rows'] for i in rules.get(name, []) if i['outcome'].startswith('rejected'))}</td>"
        f"<td class='n'>{sum(i['rows'] for i in rules.get(name, []) if i['outcome'].startswith('left out'))}</td>"
        f"<td class='n'>{sum(i['rows'] for i in rules.get(name, []) if i['outcome'].startswith('imported'))}</td></tr>"
        for name, suite in suites.items()
    )
    return (
        f"<section class='sis-run'><h2>Validation of district {esc(district_id)}, run {esc(run_id)}</h2>"
        "<table class='sis-rules'><tr><th>entity</th><th>rows checked</th><th>failed an expectation</th>"
        "<th>rejected by a row rule</th><th>left out by design</th><th>warnings</th></tr>"
        f"{lines}</table><p>Each entity's page below has its expectations and its row rules.</p></section>"
    )


def finish(
    docs_dir: Path,
    district_id: str,
    run_id: str,
    rules: dict[str, list[dict[str, Any]]],
    suites: dict[str, dict[str, Any]],
) -> None:
    """Make every page of ``docs_dir`` offline and add the run, the entity and the row-rule outcomes.

    ``suites``: ``{entity: {"evaluated", "failed"}}`` from the suite results.
    """
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        return
    styles = docs_dir / "static" / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(STYLESHEET, styles / "offline.css")
    for page in docs_dir.rglob("*.html"):
        depth = len(page.relative_to(docs_dir).parts) - 1
        stylesheet = "../" * depth + "static/styles/offline.css"
        content = EXTERNAL.sub("", page.read_text(encoding="utf-8"))
        content = content.replace("</head>", f"<link rel='stylesheet' href='{stylesheet}'>\n</head>", 1)
        parts = page.relative_to(docs_dir).parts
        entity = None
        if parts[0] == "validations":
            entity = parts[1].removesuffix("_suite")
        elif parts[0] == "expectations":
            entity = page.stem.removesuffix("_suite")
        if parts[0] in ("validations", "expectations") or (page.name == "index.html" and depth == 0):
            banner = _banner(district_id, run_id, entity, rules, suites)
            body = re.search(r"<body[^>]*>", content)
            if body is not None:
                content = content[: body.end()] + banner + content[body.end() :]
        page.write_text(content, encoding="utf-8")
