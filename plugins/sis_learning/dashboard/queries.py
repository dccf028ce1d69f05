"""What the Districts pages show, read from the staging database (read-only, plain data out).

Every figure comes from the staged tables (docs/staged-tables.md):

- the last import: ``sync_runs`` (status, stage, start, duration, and the ``counts`` the
  stages recorded: ``learning_<entity>`` ``transformed`` and the load's ``created`` /
  ``updated`` / ``deactivated`` / ``removed``);
- what Learning holds: ``learning_snapshot`` (active rows per entity: the last state
  Learning accepted);
- rejected and warned rows of the last run: ``rejected_rows``, ``validation_warnings``;
- a run waiting for a person: ``mass_change_reviews`` (status ``waiting``);
- grade push over the last 24 hours: ``grade_push_scores`` (latency = ``pushed_at`` -
  ``changed_at``, Learning's change time; refusals by ``updated_at``).

The overview is a fixed number of grouped queries however many districts there are
(no query per district): one window query for the latest runs, then one aggregate per
table joined to those runs. docs/dashboard.md has the figures on 200 districts x 60 runs.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from sis_learning.staging.runs import utcnow

# Learning entities the pages count, in the order they are shown.
LEARNING_ENTITIES = ("users", "classes", "rosters", "parent_links")
# What a run changed in Learning (the load's counts), in the order they are shown.
CHANGE_NAMES = ("created", "updated", "deactivated", "removed")
# How many runs the district page charts.
CHART_RUNS = 30
# How many reasons and example rows a district page lists.
TOP_REASONS = 10
ROWS_PAGE = 200
GRADE_PUSH_WINDOW = timedelta(hours=24)


@dataclass
class RunFigures:
    """One import run of a district, as the pages show it."""

    run_id: str
    dag_id: str | None
    status: str
    stage: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = None
    validation_docs: str | None = None
    transformed: dict[str, int] = field(default_factory=dict)  # users / classes / rosters / parent_links made
    changes: dict[str, int] = field(default_factory=dict)  # created / updated / deactivated / removed in Learning
    refused: int = 0

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)


@dataclass
class GradePushFigures:
    scores_pushed: int = 0
    latency_p50: float | None = None  # seconds
    latency_p95: float | None = None
    scores_refused: int = 0


@dataclass
class DistrictOverview:
    """One row of the Districts page."""

    district_id: str
    name: str
    import_dag_id: str
    last_run: RunFigures | None = None
    learning: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    warned: int = 0
    waiting_run_id: str | None = None
    waiting_task_id: str | None = None  # the Airflow task where the person is asked (None: the first one)
    grade_push: GradePushFigures = field(default_factory=GradePushFigures)


@dataclass
class Reason:
    kind: str  # rejected | warning
    stage: str | None
    entity: str
    rule: str
    field: str | None
    rows: int
    example_reason: str
    example_source_id: str | None


@dataclass
class SchoolFigures:
    organization_id: str | None
    name: str | None
    learning: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)  # the last run's pending or sent changes by action


@dataclass
class DistrictDetail:
    district: DistrictOverview
    runs: list[RunFigures]  # newest first, at most CHART_RUNS
    reasons: list[Reason]
    schools: list[SchoolFigures]
    validation_results: list[dict[str, Any]]
    reviews: list[dict[str, Any]]


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _review_task_column(connection: Connection) -> str:
    """``task_id`` of mass_change_reviews, or NULL on a staging database from before it was added
    (the pages only read; the pipeline's next run adds the column)."""
    columns = {column["name"] for column in inspect(connection).get_columns("mass_change_reviews")}
    return "task_id" if "task_id" in columns else "NULL"


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _as_json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return dict(value)


def run_from_row(row: Any) -> RunFigures:
    counts = _as_json(row.counts)
    transformed = {
        entity: int((counts.get(f"learning_{entity}") or {}).get("transformed") or 0) for entity in LEARNING_ENTITIES
    }
    changes = dict.fromkeys(CHANGE_NAMES, 0)
    refused = 0
    for name, values in counts.items():
        if name.startswith("learning_") and isinstance(values, dict):
            for change in CHANGE_NAMES:
                changes[change] += int(values.get(change) or 0)
            refused += int(values.get("refused") or 0)
    return RunFigures(
        run_id=row.run_id,
        dag_id=row.dag_id,
        status=row.status,
        stage=row.stage,
        started_at=_as_datetime(row.started_at),
        finished_at=_as_datetime(row.finished_at),
        error=row.error,
        validation_docs=row.validation_docs,
        transformed=transformed,
        changes=changes,
        refused=refused,
    )


_RUN_COLUMNS = "district_id, run_id, dag_id, status, stage, started_at, finished_at, counts, error, validation_docs"

# The newest import run of every district (ROW_NUMBER: SQLite 3.25+, PostgreSQL).
LATEST_RUNS = f"""
SELECT {_RUN_COLUMNS} FROM (
    SELECT {_RUN_COLUMNS},
           ROW_NUMBER() OVER (PARTITION BY district_id ORDER BY started_at DESC, id DESC) AS newest
      FROM sync_runs WHERE kind = 'import'
) ranked WHERE newest = 1
"""


def _percentile(sorted_values: list[float], share: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not sorted_values:
        return None
    position = (len(sorted_values) - 1) * share
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def grade_push_figures(
    connection: Connection, since: datetime, district_id: str | None = None
) -> dict[str, GradePushFigures]:
    """Per district: scores pushed since ``since``, their latency p50/p95 (seconds), scores refused."""
    figures: dict[str, GradePushFigures] = defaultdict(GradePushFigures)
    only = " AND district_id = :district_id" if district_id else ""
    params: dict[str, Any] = {"since": since, "district_id": district_id}
    if connection.dialect.name == "postgresql":
        rows = connection.execute(
            text(
                "SELECT district_id, COUNT(*) AS pushed, "  # both percentiles from one sort
                "percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM pushed_at - changed_at)) "
                "AS latency "
                "FROM grade_push_scores WHERE updated_at >= :since AND pushed_at >= :since "
                f"AND changed_at IS NOT NULL AND status = 'pushed'{only} GROUP BY district_id"
            ),
            params,
        )
        for row in rows:
            item = figures[row.district_id]
            item.scores_pushed = int(row.pushed)
            p50, p95 = row.latency or (None, None)
            item.latency_p50 = float(p50) if p50 is not None else None
            item.latency_p95 = float(p95) if p95 is not None else None
    else:  # SQLite has no percentile: the seconds come back sorted, the ranks are taken here
        rows = connection.execute(
            text(
                "SELECT district_id, (julianday(pushed_at) - julianday(changed_at)) * 86400.0 AS seconds "
                "FROM grade_push_scores WHERE updated_at >= :since AND pushed_at >= :since "
                f"AND changed_at IS NOT NULL AND status = 'pushed'{only} ORDER BY district_id, seconds"
            ),
            params,
        )
        by_district: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            by_district[row.district_id].append(float(row.seconds))
        for district, seconds in by_district.items():
            item = figures[district]
            item.scores_pushed = len(seconds)
            item.latency_p50, item.latency_p95 = _percentile(seconds, 0.5), _percentile(seconds, 0.95)
    rows = connection.execute(
        text(
            "SELECT district_id, COUNT(*) AS refused FROM grade_push_scores "
            f"WHERE updated_at >= :since AND status = 'refused'{only} GROUP BY district_id"
        ),
        params,
    )
    for row in rows:
        figures[row.district_id].scores_refused = int(row.refused)
    return dict(figures)


def districts_overview(
    engine: Engine, districts: dict[str, dict[str, str]] | None = None, now: datetime | None = None
) -> list[DistrictOverview]:
    """One row per district: the configured ones (``{district_id: {"name", "import_dag_id"}}``)
    and any other district the staging database has runs of, sorted by district id."""
    since = (now or utcnow()) - GRADE_PUSH_WINDOW
    districts = dict(districts or {})
    rows: dict[str, DistrictOverview] = {
        district_id: DistrictOverview(
            district_id=district_id,
            name=info.get("name") or district_id,
            import_dag_id=info.get("import_dag_id") or f"sis_import__{district_id}",
        )
        for district_id, info in districts.items()
    }

    def row_for(district_id: str) -> DistrictOverview:
        if district_id not in rows:
            rows[district_id] = DistrictOverview(
                district_id=district_id, name=district_id, import_dag_id=f"sis_import__{district_id}"
            )
        return rows[district_id]

    with engine.connect() as connection:
        tables = _tables(connection)
        if "sync_runs" in tables:
            for row in connection.execute(text(LATEST_RUNS)):
                row_for(row.district_id).last_run = run_from_row(row)
        if "learning_snapshot" in tables:
            entities = ", ".join(f"'{entity}'" for entity in LEARNING_ENTITIES)
            for row in connection.execute(
                text(
                    "SELECT district_id, entity, COUNT(*) AS n FROM learning_snapshot "
                    f"WHERE active = :active AND entity IN ({entities}) GROUP BY district_id, entity"
                ),
                {"active": True},
            ):
                row_for(row.district_id).learning[row.entity] = int(row.n)
        if "sync_runs" in tables:
            for table, attribute in (("rejected_rows", "rejected"), ("validation_warnings", "warned")):
                if table not in tables:
                    continue
                for row in connection.execute(
                    text(
                        f"WITH latest AS ({LATEST_RUNS}) SELECT t.district_id, COUNT(*) AS n "
                        f"FROM latest JOIN {table} t ON t.district_id = latest.district_id "
                        "AND t.run_id = latest.run_id GROUP BY t.district_id"
                    )
                ):
                    setattr(row_for(row.district_id), attribute, int(row.n))
        if "mass_change_reviews" in tables:
            # The newest waiting review per district (a district's runs go one at a time: at most one waits).
            for row in connection.execute(
                text(
                    f"SELECT district_id, run_id, {_review_task_column(connection)} AS task_id "
                    "FROM mass_change_reviews WHERE status = 'waiting' ORDER BY id"
                )
            ):
                overview = row_for(row.district_id)
                overview.waiting_run_id, overview.waiting_task_id = row.run_id, row.task_id
        if "grade_push_scores" in tables:
            for district_id, figures in grade_push_figures(connection, since).items():
                row_for(district_id).grade_push = figures
    for row in rows.values():
        for entity in LEARNING_ENTITIES:
            row.learning.setdefault(entity, 0)
    return [rows[district_id] for district_id in sorted(rows)]


def district_detail(
    engine: Engine,
    district_id: str,
    name: str | None = None,
    import_dag_id: str | None = None,
    now: datetime | None = None,
) -> DistrictDetail:
    """The district page: the last runs, the top reasons of the latest run, per-school figures."""
    since = (now or utcnow()) - GRADE_PUSH_WINDOW
    overview = DistrictOverview(
        district_id=district_id, name=name or district_id, import_dag_id=import_dag_id or f"sis_import__{district_id}"
    )
    runs: list[RunFigures] = []
    reasons: list[Reason] = []
    schools: dict[str | None, SchoolFigures] = {}
    validation_results: list[dict[str, Any]] = []
    reviews: list[dict[str, Any]] = []
    params: dict[str, Any] = {"district_id": district_id}

    def school(organization_id: str | None) -> SchoolFigures:
        if organization_id not in schools:
            schools[organization_id] = SchoolFigures(organization_id=organization_id, name=None)
        return schools[organization_id]

    with engine.connect() as connection:
        tables = _tables(connection)
        if "sync_runs" in tables:
            runs = [
                run_from_row(row)
                for row in connection.execute(
                    text(
                        f"SELECT {_RUN_COLUMNS} FROM sync_runs WHERE district_id = :district_id AND kind = 'import' "
                        f"ORDER BY started_at DESC, id DESC LIMIT {CHART_RUNS}"
                    ),
                    params,
                )
            ]
        latest = runs[0] if runs else None
        overview.last_run = latest
        params["run_id"] = latest.run_id if latest else ""
        if "learning_snapshot" in tables:
            for row in connection.execute(
                text(
                    "SELECT organization_id, entity, COUNT(*) AS n FROM learning_snapshot "
                    "WHERE district_id = :district_id AND active = :active GROUP BY organization_id, entity"
                ),
                {**params, "active": True},
            ):
                if row.entity in LEARNING_ENTITIES:
                    school(row.organization_id).learning[row.entity] = int(row.n)
                    overview.learning[row.entity] = overview.learning.get(row.entity, 0) + int(row.n)
            for row in connection.execute(
                text(
                    "SELECT key, payload FROM learning_snapshot WHERE district_id = :district_id "
                    "AND entity = 'organizations'"
                ),
                params,
            ):
                school(row.key).name = (json.loads(row.payload) if row.payload else {}).get("name")
        if latest and "change_set" in tables:
            for row in connection.execute(
                text(
                    "SELECT organization_id, action, COUNT(*) AS n FROM change_set "
                    "WHERE district_id = :district_id AND run_id = :run_id "
                    "AND action IN ('create', 'update', 'deactivate', 'remove') "
                    "GROUP BY organization_id, action"
                ),
                params,
            ):
                figures = school(row.organization_id).changes
                figures[row.action] = figures.get(row.action, 0) + int(row.n)
        if latest and "rejected_rows" in tables:
            for row in connection.execute(
                text(
                    "SELECT stage, entity, rule, COUNT(*) AS n, MIN(reason) AS reason, MIN(source_id) AS source_id "
                    "FROM rejected_rows WHERE district_id = :district_id AND run_id = :run_id "
                    f"GROUP BY stage, entity, rule ORDER BY n DESC, entity, rule LIMIT {TOP_REASONS}"
                ),
                params,
            ):
                reasons.append(
                    Reason("rejected", row.stage, row.entity, row.rule, None, int(row.n), row.reason, row.source_id)
                )
            overview.rejected = int(
                connection.execute(
                    text("SELECT COUNT(*) FROM rejected_rows WHERE district_id = :district_id AND run_id = :run_id"),
                    params,
                ).scalar()
                or 0
            )
        if latest and "validation_warnings" in tables:
            for row in connection.execute(
                text(
                    "SELECT stage, entity, rule, field, COUNT(*) AS n, MIN(reason) AS reason, "
                    "MIN(source_id) AS source_id FROM validation_warnings "
                    "WHERE district_id = :district_id AND run_id = :run_id "
                    f"GROUP BY stage, entity, rule, field ORDER BY n DESC, entity, rule LIMIT {TOP_REASONS}"
                ),
                params,
            ):
                reasons.append(
                    Reason("warning", row.stage, row.entity, row.rule, row.field, int(row.n), row.reason, row.source_id)
                )
            overview.warned = int(
                connection.execute(
                    text(
                        "SELECT COUNT(*) FROM validation_warnings WHERE district_id = :district_id AND run_id = :run_id"
                    ),
                    params,
                ).scalar()
                or 0
            )
        if latest and "validation_results" in tables:
            validation_results = [
                dict(row._mapping)
                for row in connection.execute(
                    text(
                        "SELECT entity, suite, success, evaluated, failed, data_docs_path FROM validation_results "
                        "WHERE district_id = :district_id AND run_id = :run_id ORDER BY entity"
                    ),
                    params,
                )
            ]
        if "mass_change_reviews" in tables:
            reviews = [
                dict(row._mapping)
                for row in connection.execute(
                    text(
                        "SELECT run_id, status, rows, findings, message, created_at, decided_at, decided_by, "
                        f"{_review_task_column(connection)} AS task_id "
                        "FROM mass_change_reviews WHERE district_id = :district_id ORDER BY created_at DESC, id DESC "
                        "LIMIT 10"
                    ),
                    params,
                )
            ]
            for review in reviews:
                review["created_at"] = _as_datetime(review["created_at"])
                review["decided_at"] = _as_datetime(review["decided_at"])
                review["findings"] = (
                    review["findings"] if not isinstance(review["findings"], str) else (json.loads(review["findings"]))
                )
            waiting = [review for review in reviews if review["status"] == "waiting"]
            overview.waiting_run_id = waiting[0]["run_id"] if waiting else None
            overview.waiting_task_id = waiting[0]["task_id"] if waiting else None
        if "grade_push_scores" in tables:
            overview.grade_push = grade_push_figures(connection, since, district_id).get(
                district_id, GradePushFigures()
            )
    for entity in LEARNING_ENTITIES:
        overview.learning.setdefault(entity, 0)
    reasons.sort(key=lambda reason: (-reason.rows, reason.kind, reason.entity, reason.rule))
    ordered_schools = sorted(
        schools.values(), key=lambda item: (item.organization_id is None, item.name or "", item.organization_id or "")
    )
    return DistrictDetail(
        district=overview,
        runs=runs,
        reasons=reasons,
        schools=ordered_schools,
        validation_results=validation_results,
        reviews=reviews,
    )


# Tables whose rows a reason links to, and the columns shown.
ROW_TABLES = {
    "rejected": ("rejected_rows", ("stage", "entity", "source_id", "rule", "reason", "blocks", "caused_by")),
    "warning": ("validation_warnings", ("stage", "entity", "source_id", "rule", "field", "value", "reason", "action")),
    "excluded": ("excluded_rows", ("stage", "entity", "source_id", "rule", "reason")),
}


def reason_rows(
    engine: Engine,
    district_id: str,
    run_id: str,
    kind: str,
    entity: str,
    rule: str,
    field_name: str | None = None,
    limit: int = ROWS_PAGE,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """The rows behind one reason (``kind``: rejected, warning or excluded), a page at a time, and their count."""
    table, columns = ROW_TABLES[kind]
    where = "district_id = :district_id AND run_id = :run_id AND entity = :entity AND rule = :rule"
    params: dict[str, Any] = {
        "district_id": district_id,
        "run_id": run_id,
        "entity": entity,
        "rule": rule,
        "limit": int(limit),
        "offset": int(offset),
    }
    if field_name is not None and kind == "warning":
        where += " AND field = :field"
        params["field"] = field_name
    with engine.connect() as connection:
        if table not in _tables(connection):
            return [], 0
        total = int(connection.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {where}"), params).scalar() or 0)
        rows = [
            dict(row._mapping)
            for row in connection.execute(
                text(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE {where} ORDER BY source_id, id "
                    "LIMIT :limit OFFSET :offset"
                ),
                params,
            )
        ]
    return rows, total


def run_validation_docs(engine: Engine, district_id: str, run_id: str) -> Path | None:
    """The folder of a run's Great Expectations results and Data Docs (``sync_runs.validation_docs``)."""
    with engine.connect() as connection:
        if "sync_runs" not in _tables(connection):
            return None
        value = connection.execute(
            text(
                "SELECT validation_docs FROM sync_runs WHERE district_id = :district_id AND run_id = :run_id "
                "AND kind = 'import'"
            ),
            {"district_id": district_id, "run_id": run_id},
        ).scalar()
    return Path(value) if value else None
