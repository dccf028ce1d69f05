"""The Districts pages: a FastAPI app the Airflow API server mounts (plugin ``sis_learning_dashboard``).

Read-only HTML over the staging database (``queries``), behind Airflow's own
authentication: every page resolves the signed-in user with Airflow's ``get_user``
dependency (the UI's JWT cookie, or a bearer token) and asks Airflow's auth manager
whether that user may read the district's import DAG runs; the overview lists only the
districts whose DAG the user may read. Airflow shows the pages inside its UI through the
plugin's external view ("Districts" in the navigation).

Routes, under the mount prefix (``/sis-learning``):

- ``/districts``: one row per district;
- ``/districts/{district_id}``: charts of the last 30 runs, top reasons, schools, runs;
- ``/districts/{district_id}/rows``: the rows behind one reason (a page at a time);
- ``/districts/{district_id}/runs/{run_id}/data-docs/{path}``: the run's Great
  Expectations Data Docs, served from the folder ``sync_runs.validation_docs`` names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPBearer
from jinja2 import Environment, FileSystemLoader, select_autoescape

from sis_learning.dashboard import charts, queries

log = logging.getLogger(__name__)

MOUNT_PREFIX = "/sis-learning"
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
)
# A map pin over a table: the nav entry's icon.
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
    'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><rect x="3" y="11" width="18" height="10" '
    'rx="1"/><path d="M3 16h18M9 11v10M15 11v10"/><path d="M12 9s4-3.2 4-5.5a4 4 0 0 0-8 0C8 5.8 12 9 12 9z"/>'
    "</svg>"
)
# The task that waits for a person when the safety guard stops a run (dags/sis_import.py); a review
# asked again in a later task (load.approve_mass_changes_2, _3) names it in mass_change_reviews.task_id.
APPROVAL_TASK_ID = "load.approve_mass_changes"


# ---- who is asking -------------------------------------------------------------------


async def signed_in_user(request: Request) -> Any:
    """Airflow's signed-in user (its JWT cookie or bearer token); 401 when there is none."""
    from airflow.api_fastapi.core_api.security import get_user

    credentials = await HTTPBearer(auto_error=False)(request)
    return await get_user(request, None, credentials)


def readable_dag_ids(user: Any, dag_ids: set[str]) -> set[str]:
    """The DAG ids among ``dag_ids`` whose runs ``user`` may read (Airflow's auth manager decides)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().filter_authorized_dag_ids(dag_ids=set(dag_ids), user=user, method="GET"))


def require_district(user: Any, district_id: str) -> dict[str, str]:
    """The district's name and DAG id when ``user`` may read its runs; 404 / 403 otherwise."""
    known = configured_districts()
    info = known.get(district_id) or {"name": district_id, "import_dag_id": f"sis_import__{district_id}"}
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    if not get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=info["import_dag_id"]), user=user
    ):
        raise HTTPException(status_code=403, detail=f"You may not read the runs of {info['import_dag_id']}")
    return info


# ---- data ----------------------------------------------------------------------------


# What the pages say of a review staging holds as waiting, by the state Airflow gives its task:
ANSWERABLE = "answerable"  # parked (awaiting_input): the Required Action's buttons work
ASKING = "asking"  # the task asked (staging knows) but Airflow has not parked it yet: its buttons are disabled
NOT_WAITING = "not_waiting"  # the task ended (failed, succeeded, skipped) or its run is gone: nobody can answer it
REFRESH_SECONDS = 5  # a page showing a task on its way to park reloads itself this often
# A page showing a run still going (and not waiting for a person) reloads this often, so a person who
# opened it before the run stopped for approval, failed or finished sees that without reloading.
RUNNING_REFRESH_SECONDS = 30
# How long after Airflow parked the task the pages wait before linking to it. Airflow 3.3.2 loses an
# answer given before its scheduler has handled the exit of the parked task's process (docs/load.md:
# the try is marked up_for_retry and asks again); that took 0.5 s on a quiet machine and 5-6 s on a
# loaded one.
SETTLE_SECONDS = 15
# Airflow states of a task on its way to park (or back, after a retry); "None": cleared, to be scheduled again.
ON_ITS_WAY = {"None", "running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting"}
# The states whose Required Action takes an answer (as Airflow's UI decides: deferred is how an Airflow
# before 3.3 parked a human-in-the-loop task).
PARKED = {"awaiting_input", "deferred"}


def approval_task(dag_id: str, run_id: str, task_id: str | None) -> tuple[str, str, str]:
    """The Airflow task a waiting review asks in (the first approval task when staging names none)."""
    return dag_id, run_id, task_id or APPROVAL_TASK_ID


def approval_states(tasks: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """For each (dag_id, run_id, task_id) staging says is waiting, what a person can do there now.

    The task records its ask in staging a moment before Airflow parks it in ``awaiting_input``;
    Airflow's Required Action page loaded in that moment shows Approve and Reject disabled and
    does not enable them when the task parks (seen on Airflow 3.3.2), and an answer given just
    after the park can be lost (``SETTLE_SECONDS``). So a page links to the Required Action only
    once Airflow's metadata database says the task has awaited input that long. When that
    database cannot be read (the pages outside Airflow's API server), every task is answerable:
    the link is still the best a page can give.
    """
    if not tasks:
        return {}
    try:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import and_, or_, select

        now = datetime.now(UTC)
        with create_session() as session:
            found = {
                (row.dag_id, row.run_id, row.task_id): (
                    str(row.state),  # TaskInstanceState prints its value; no state: "None"
                    (now - row.updated_at).total_seconds() if row.updated_at is not None else None,
                )
                for row in session.execute(
                    select(
                        TaskInstance.dag_id,
                        TaskInstance.run_id,
                        TaskInstance.task_id,
                        TaskInstance.state,
                        TaskInstance.updated_at,
                    ).where(
                        TaskInstance.map_index == -1,
                        or_(
                            *(
                                and_(
                                    TaskInstance.dag_id == dag_id,
                                    TaskInstance.run_id == run_id,
                                    TaskInstance.task_id == task_id,
                                )
                                for dag_id, run_id, task_id in tasks
                            )
                        ),
                    )
                )
            }
    except Exception:  # a page never fails for it
        log.warning("Could not read the approval tasks' states from Airflow's metadata database", exc_info=True)
        return {task: ANSWERABLE for task in tasks}
    return {task: what_a_person_can_do(*found.get(task, (None, None))) for task in tasks}


def approval_view(asked: dict[Any, tuple[str, str, str]]) -> tuple[Callable[[Any], str], int | None]:
    """For a page's waiting reviews (``{its key for the review: approval_task(...)}``): what each shows, by
    that key, and how often the page reloads (None: it does not; it does while any task is still asking)."""
    states = approval_states(set(asked.values()))
    return (lambda key: states[asked[key]]), (REFRESH_SECONDS if ASKING in states.values() else None)


def reload_interval(asking_refresh: int | None, runs: list[tuple[Any, bool]]) -> int | None:
    """How often a page reloads itself: quickly while a task is asking, slowly while a run is going
    without waiting for anyone (None: the page changes only when a person acts, so it does not reload).

    ``runs``: each shown district's last run (None: none yet) and whether a review of it waits.
    """
    going = any(run is not None and run.status == "running" and not waiting for run, waiting in runs)
    return asking_refresh or (RUNNING_REFRESH_SECONDS if going else None)


def what_a_person_can_do(airflow_state: str | None, unchanged_seconds: float | None = None) -> str:
    """ANSWERABLE, ASKING or NOT_WAITING for an approval task in this Airflow state (None: no such task).

    ``unchanged_seconds``: how long ago Airflow last changed the task (None: unknown). A task parked
    less than ``SETTLE_SECONDS`` ago is still ASKING: an answer that early can be lost.
    """
    if airflow_state in PARKED:
        settled = unchanged_seconds is None or unchanged_seconds >= SETTLE_SECONDS
        return ANSWERABLE if settled else ASKING
    return ASKING if airflow_state in ON_ITS_WAY else NOT_WAITING


def configured_districts() -> dict[str, dict[str, str]]:
    """``{district_id: {"name", "import_dag_id"}}`` of the district files (broken files included)."""
    from sis_learning.config import scan_districts

    configs, broken = scan_districts()
    districts = {config.district_id: {"name": config.name, "import_dag_id": config.import_dag_id} for config in configs}
    for item in broken:
        districts.setdefault(
            item.district_id, {"name": f"{item.district_id} (configuration error)", "import_dag_id": item.import_dag_id}
        )
    return districts


def staging_engine():
    from sis_learning.staging.base import get_engine

    return get_engine()


def staging_label(engine) -> str:
    url = engine.url
    return (
        f"{url.get_backend_name()}: {url.database}"
        if url.get_backend_name() == "sqlite"
        else (f"{url.get_backend_name()} {url.host or ''}/{url.database or ''}")
    )


# ---- formatting ----------------------------------------------------------------------


def number(value: Any) -> str:
    return "" if value is None else f"{int(value):,}"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 100 else duration(value)


def duration(value: float | None) -> str:
    if value is None:
        return ""
    total = round(value)
    if total < 60:
        return f"{total} s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


class Links:
    """URLs the pages print: this app's, relative to where Airflow mounted it, and Airflow UI pages."""

    def __init__(self, request: Request):
        self.root = request.scope.get("root_path", "").rstrip("/")  # e.g. /sis-learning (or /base/sis-learning)
        self.airflow = self.root[: -len(MOUNT_PREFIX)] if self.root.endswith(MOUNT_PREFIX) else ""

    def link(self, path: str, **query: Any) -> str:
        tail = f"?{urlencode({key: value for key, value in query.items() if value is not None})}" if query else ""
        return f"{self.root}/{path.lstrip('/')}{tail}"

    def airflow_run(self, dag_id: str, run_id: str) -> str:
        return f"{self.airflow}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"

    def approval(self, dag_id: str, run_id: str, task_id: str | None = None) -> str:
        """The task's Required Action page in Airflow (Approve / Reject, with the figures)."""
        _, _, task = approval_task(dag_id, run_id, task_id)
        return f"{self.airflow_run(dag_id, run_id)}/tasks/{quote(task, safe='')}/required_actions"


def render(template: str, request: Request, **values: Any) -> HTMLResponse:
    links = Links(request)
    page = TEMPLATES.get_template(template).render(
        link=links.link,
        number=number,
        seconds=seconds,
        duration=duration,
        when=when,
        quote=lambda v: quote(v, safe=""),
        entities=queries.LEARNING_ENTITIES,
        changes=queries.CHANGE_NAMES,
        **values,
    )
    return HTMLResponse(page)


# ---- the app -------------------------------------------------------------------------


def create_app() -> FastAPI:
    app = FastAPI(title="SIS -> Learning districts", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def as_page(request: Request, error: HTTPException) -> HTMLResponse:
        login_url = None
        if error.status_code == 401:
            try:
                from airflow.api_fastapi.app import get_auth_manager

                login_url = get_auth_manager().get_url_login()
            except Exception:  # no auth manager (outside the API server)
                login_url = None
        titles = {401: "Please log in", 403: "Not allowed", 404: "Not found"}
        response = render(
            "message.html",
            request,
            title=titles.get(error.status_code, "Error"),
            message=str(error.detail),
            login_url=login_url,
        )
        response.status_code = error.status_code
        return response

    @app.get("/icon.svg", include_in_schema=False)
    def icon() -> Response:  # the nav entry's icon (public, like Airflow's own static files)
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/", include_in_schema=False)
    @app.get("/districts", response_class=HTMLResponse)
    def districts_page(request: Request, user: Any = Depends(signed_in_user)) -> HTMLResponse:
        started = time.perf_counter()
        configured = configured_districts()
        engine = staging_engine()
        rows = queries.districts_overview(engine, configured)
        allowed = readable_dag_ids(user, {row.import_dag_id for row in rows})
        rows = [row for row in rows if row.import_dag_id in allowed]
        links = Links(request)
        approval_state, refresh_seconds = approval_view(
            {
                row.district_id: approval_task(row.import_dag_id, row.waiting_run_id, row.waiting_task_id)
                for row in rows
                if row.waiting_run_id
            }
        )
        return render(
            "districts.html",
            request,
            rows=rows,
            staging=staging_label(engine),
            now=when(queries.utcnow()),
            airflow_run=lambda run: links.airflow_run(run.dag_id or "", run.run_id),
            airflow_run_id=links.airflow_run,
            approval_link=lambda row: links.approval(row.import_dag_id, row.waiting_run_id, row.waiting_task_id),
            approval_state=lambda row: approval_state(row.district_id),
            refresh_seconds=reload_interval(
                refresh_seconds, [(row.last_run, bool(row.waiting_run_id)) for row in rows]
            ),
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    @app.get("/districts/{district_id}", response_class=HTMLResponse)
    def district_page(district_id: str, request: Request, user: Any = Depends(signed_in_user)) -> HTMLResponse:
        info = require_district(user, district_id)
        detail = queries.district_detail(staging_engine(), district_id, info["name"], info["import_dag_id"])
        if detail.district.last_run is None and district_id not in configured_districts():
            raise HTTPException(status_code=404, detail=f"No district {district_id!r} in the district files or staging")
        oldest_first = list(reversed(detail.runs))
        labels = [when(run.started_at) for run in oldest_first]
        size_chart = charts.line_chart(
            "Users, classes and rosters per run (rows the run made for Learning)",
            labels,
            {
                entity: [run.transformed.get(entity, 0) for run in oldest_first]
                for entity in ("users", "classes", "rosters")
            },
        )
        change_chart = charts.bar_chart(
            "Changes per run (what the load changed in Learning)",
            labels,
            {name: [run.changes.get(name, 0) for run in oldest_first] for name in queries.CHANGE_NAMES},
        )
        links = Links(request)
        run_id = detail.district.last_run.run_id if detail.district.last_run else ""
        asked = {
            review["run_id"]: approval_task(info["import_dag_id"], review["run_id"], review["task_id"])
            for review in detail.reviews
            if review["status"] == "waiting"
        }
        approval_state, refresh_seconds = approval_view(asked)
        return render(
            "district.html",
            request,
            d=detail.district,
            runs=detail.runs,
            reasons=detail.reasons,
            schools=detail.schools,
            reviews=detail.reviews,
            size_chart=size_chart,
            change_chart=change_chart,
            airflow_run=lambda run: links.airflow_run(run.dag_id or info["import_dag_id"], run.run_id),
            airflow_run_id=lambda rid: links.airflow_run(info["import_dag_id"], rid),
            approval_link_for=lambda review: links.approval(info["import_dag_id"], review["run_id"], review["task_id"]),
            approval_state=lambda review: approval_state(review["run_id"]),
            refresh_seconds=reload_interval(refresh_seconds, [(detail.district.last_run, bool(asked))]),
            rows_link=lambda reason: links.link(
                f"districts/{quote(district_id, safe='')}/rows",
                run_id=run_id,
                kind=reason.kind,
                entity=reason.entity,
                rule=reason.rule,
                field=reason.field,
            ),
        )

    @app.get("/districts/{district_id}/rows", response_class=HTMLResponse)
    def rows_page(
        district_id: str,
        request: Request,
        run_id: str,
        kind: str,
        entity: str,
        rule: str,
        field: str | None = None,
        offset: int = 0,
        user: Any = Depends(signed_in_user),
    ) -> HTMLResponse:
        require_district(user, district_id)
        if kind not in queries.ROW_TABLES:
            raise HTTPException(status_code=404, detail=f"No row kind {kind!r}")
        offset = max(offset, 0)
        rows, total = queries.reason_rows(
            staging_engine(), district_id, run_id, kind, entity, rule, field, offset=offset
        )
        links = Links(request)
        following = offset + len(rows)
        next_link = (
            links.link(
                f"districts/{quote(district_id, safe='')}/rows",
                run_id=run_id,
                kind=kind,
                entity=entity,
                rule=rule,
                field=field,
                offset=following,
            )
            if following < total
            else None
        )
        return render(
            "rows.html",
            request,
            district_id=district_id,
            run_id=run_id,
            kind=kind,
            entity=entity,
            rule=rule,
            field=field,
            rows=rows,
            total=total,
            offset=offset,
            columns=queries.ROW_TABLES[kind][1],
            next_link=next_link,
            page=queries.ROWS_PAGE,
        )

    @app.get("/districts/{district_id}/runs/{run_id}/data-docs/{path:path}")
    def data_docs(district_id: str, run_id: str, path: str, user: Any = Depends(signed_in_user)) -> FileResponse:
        require_district(user, district_id)
        folder = queries.run_validation_docs(staging_engine(), district_id, run_id)
        if folder is None:
            raise HTTPException(status_code=404, detail="This run kept no Data Docs")
        root = (folder / "data_docs").resolve()
        target = (root / (path or "index.html")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise HTTPException(status_code=404, detail=f"No Data Docs file {path!r} for this run")
        return FileResponse(target)

    return app
