"""The reference Learning server's HTTP API (FastAPI): the contract of docs/architecture.md, "The Learning API".

PowerSchool Learning has no public write API, so the project defines one and this server
implements it with Learning's documented behaviour (docs/sandbox-learning.md). Every
call but ``/health`` needs ``Authorization: Bearer <domain token>``; the token decides
the domain, and every read and write is confined to it.

Errors answer ``{"message": "...", "errors": [...]}``: 400 malformed JSON, 401 no or
wrong token, 404 unknown entity or object, 413 more than 1,000 rows, 415 a body that is
not JSON, 422 a body that breaks the schema or a rule. Inside a batch, a bad row fails alone (status ``failed``
with its reason) and the others are applied, in one transaction.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route functions'
# annotations, and some of them are local to create_app (the per-entity body models).
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from sandbox.learning import admin_users, gradebook, limits
from sandbox.learning.database import open_database
from sandbox.learning.domain_settings import UnknownOrganizations, read_settings, update_settings
from sandbox.learning.domains import TokenBook
from sandbox.learning.faults import FaultInjector, FaultPlanBody
from sandbox.learning.imports import ENTITY_IMPORTS, REMOVABLE, deactivate_users, remove_rows, summarize, upsert_batch
from sandbox.learning.models import Notification, User
from sandbox.learning.passwords import PasswordHasher
from sandbox.learning.schemas import (
    AuthenticationBody,
    BatchAnswer,
    ClassLinkBody,
    ClassLinkOut,
    DeactivateRequest,
    DomainSettingsBody,
    DomainSettingsUpdate,
    GradableBody,
    GradableOut,
    GradableUpdate,
    GradebookChanges,
    HandMadeUserBody,
    ImportIdBody,
    Message,
    NotificationBody,
    Page,
    ParentLinkKey,
    RosterKey,
    ScoreBody,
    ScoreOut,
    UserType,
    batch_model,
)

API_VERSION = "1.0.0"
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Message, "description": "No bearer token, or not one of this server's domain tokens."},
    422: {"model": Message, "description": "The body breaks the schema or one of Learning's rules."},
}
BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    400: {"model": Message, "description": "Malformed JSON."},
    413: {"model": Message, "description": f"More than {limits.MAX_BATCH_ROWS} rows."},
}
# What each entity's batch rows look like (for the OpenAPI document) and how it is named there.
BATCH_BODIES = {
    entity: batch_model(
        f"{''.join(part.title() for part in entity.split('_'))}Batch",
        importer.row_model,
        f"Rows of {entity} to upsert by key.",
    )
    for entity, importer in ENTITY_IMPORTS.items()
}
REMOVE_BODIES = {
    "rosters": batch_model("RosterRemoval", RosterKey, "Roster rows to remove, by class_id and user_id."),
    "parent_links": batch_model(
        "ParentLinkRemoval", ParentLinkKey, "Parent links to remove, by parent_id and child_id."
    ),
}
HIDDEN_COLUMNS = {"id", "domain", "password_hash", "login_key"}


class OrjsonRequest(Request):
    """A request whose JSON body is parsed by orjson (a 1,000-row batch several times faster)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                # What orjson refuses (NaN, integers past 64 bits) the standard library may
                # read; truly malformed JSON raises its JSONDecodeError, answered with a 400.
                self._json = json.loads(body)
        return self._json


class OrjsonRoute(APIRoute):
    """Every route of the app reads its JSON body with :class:`OrjsonRequest`."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return handle


class ApiError(HTTPException):
    """An error answered as ``{"message": ...}``."""


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    return body


def _field_of(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def validation_error_answer(request: Request, error: RequestValidationError) -> JSONResponse:
    details = error.errors()
    body_errors = [detail for detail in details if tuple(detail.get("loc", ()))[:1] == ("body",)]
    content_type = request.headers.get("content-type", "")
    if body_errors and content_type and content_type.split(";")[0].strip().lower() != "application/json":
        return JSONResponse(
            status_code=415,
            content=error_body(f"send the body as JSON with Content-Type: application/json (got {content_type[:60]})"),
        )
    if any(tuple(detail.get("loc", ())) == ("body",) and detail.get("type") == "missing" for detail in details):
        return JSONResponse(status_code=422, content=error_body("the request has no JSON body"))
    malformed = [detail for detail in details if detail.get("type") == "json_invalid"]
    if malformed:
        context = malformed[0].get("ctx", {}).get("error", "")
        return JSONResponse(status_code=400, content=error_body(f"malformed JSON body: {context}".rstrip(": ")))
    errors = []
    for detail in details:
        field = _field_of(tuple(detail.get("loc", ())))
        if detail.get("type") == "missing":
            problem = "missing required field"
        elif detail.get("type") == "extra_forbidden":
            problem = "unknown field"
        else:
            problem = detail.get("msg", "invalid")
        errors.append({"field": field, "problem": problem})
    message = "invalid request: " + "; ".join(f"{item['field']}: {item['problem']}" for item in errors)
    return JSONResponse(status_code=422, content=error_body(message, errors))


def http_error_answer(_request: Request, error: HTTPException) -> JSONResponse:
    message = error.detail if isinstance(error.detail, str) else str(error.detail)
    if error.status_code == 404 and message == "Not Found":
        message = "no such endpoint: see /openapi.json"
    if error.status_code == 405:
        message = "this method is not allowed here: see /openapi.json"
    return JSONResponse(status_code=error.status_code, content=error_body(message), headers=error.headers)


def row_out(record: Any) -> dict[str, Any]:
    """An object (ORM object or Core row) as the read-back API shows it: its columns minus internals and secrets."""
    if hasattr(record, "_mapping"):
        columns = dict(record._mapping)
    else:
        columns = {column.key: getattr(record, column.key) for column in record.__table__.columns}
    out = {
        name: gradebook.timestamp(value) if isinstance(value, datetime) else value
        for name, value in columns.items()
        if name not in HIDDEN_COLUMNS
    }
    if "password_hash" in columns:
        out["has_password"] = columns["password_hash"] is not None
    return out


def create_app(domains: dict[str, str], database_url: str) -> FastAPI:
    """The Learning API for ``domains`` (name -> bearer token), storing its state at ``database_url``."""
    tokens = TokenBook(domains)
    sessions: sessionmaker[Session] = open_database(database_url)
    # One writer per domain at a time: rules that read then write (unique logins, cursors) stay exact.
    # Created up front (the domains are fixed at start): a lazily created lock could be created twice.
    write_locks = {name: threading.Lock() for name in domains}
    # One per domain: a district's default password is hashed once, not once per batch.
    password_hashers = {name: PasswordHasher() for name in domains}
    faults = FaultInjector()

    app = FastAPI(
        title="PowerSchool Learning API (reference server)",
        version=API_VERSION,
        description=(
            "The import and gradebook contract between the SIS -> Learning pipeline and PowerSchool Learning. "
            "Every call needs `Authorization: Bearer <domain token>`. See docs/sandbox-learning.md."
        ),
    )
    app.router.route_class = OrjsonRoute
    app.add_exception_handler(RequestValidationError, validation_error_answer)
    app.add_exception_handler(HTTPException, http_error_answer)
    bearer = HTTPBearer(auto_error=False, description="The domain's token (one per district).")

    async def current_domain(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        # async: a dictionary lookup needs no worker thread (a sync dependency costs a thread hop per request)
        challenge = {"WWW-Authenticate": 'Bearer realm="Learning"'}
        if credentials is None:
            raise ApiError(401, "missing bearer token: send Authorization: Bearer <domain token>", headers=challenge)
        domain = tokens.domain_for(credentials.credentials)
        if domain is None:
            raise ApiError(401, "invalid token: it is not the token of any domain on this server", headers=challenge)
        return domain

    Domain = Annotated[str, Depends(current_domain)]

    @contextmanager
    def transaction(domain: str, write: bool) -> Iterator[Session]:
        lock = write_locks[domain] if write else None
        if lock is not None:
            lock.acquire()
        try:
            with sessions.begin() as session:
                yield session
        finally:
            if lock is not None:
                lock.release()

    def check_batch_size(count: int) -> None:
        if count > limits.MAX_BATCH_ROWS:
            raise ApiError(
                413,
                f"a batch holds at most {limits.MAX_BATCH_ROWS} rows; this one has {count}: "
                "split it into smaller batches",
            )

    def batch_answer(outcomes: list[Any]) -> Response:
        """The BatchAnswer, encoded by orjson: a thousand results as plain values, not validated models."""
        body = {
            "results": [
                {"index": item.index, "key": item.key, "status": item.status, "reason": item.reason, "note": item.note}
                for item in outcomes
            ],
            "summary": summarize(outcomes),
        }
        return Response(content=orjson.dumps(body), media_type="application/json")

    def import_write(domain: str, count: int, apply: Callable[[Session], list[Any]]) -> Response:
        """One import write in one transaction; an armed sandbox fault answers before or after it."""
        check_batch_size(count)
        fault = faults.take(domain)
        if fault is not None and not fault.after_apply:
            raise ApiError(fault.status, fault.message, headers=fault.headers)
        with transaction(domain, write=True) as session:
            answer = batch_answer(apply(session))
        if fault is not None:
            raise ApiError(fault.status, fault.message, headers=fault.headers)
        return answer

    @app.put("/sandbox/faults", include_in_schema=False)
    def arm_faults(domain: Domain, body: FaultPlanBody) -> dict[str, int]:
        """Sandbox only: make this domain's next import writes fail (see faults.py)."""
        faults.arm(domain, body)
        return {"remaining": faults.remaining(domain)}

    @app.get("/health", tags=["server"], summary="Liveness (no token needed)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # --- import: batch upsert, deactivate, remove, read back ------------------------------------

    def add_entity_routes(entity: str) -> None:
        body_model = BATCH_BODIES[entity]
        importer = ENTITY_IMPORTS[entity]
        key_help = " + ".join(importer.key_fields)

        def upsert(domain: Domain, body: body_model) -> Response:  # type: ignore[valid-type]
            def apply(session: Session) -> list[Any]:
                settings = read_settings(session, domain)
                return upsert_batch(session, domain, entity, body.rows, settings, password_hashers[domain])

            return import_write(domain, len(body.rows), apply)

        def list_rows(
            domain: Domain,
            page: Annotated[int, Query(ge=1)] = 1,
            page_size: Annotated[int, Query(ge=1, le=limits.MAX_PAGE_SIZE)] = 100,
        ) -> dict[str, Any]:
            table = importer.table
            with transaction(domain, write=False) as session:
                total = session.scalar(select(func.count()).select_from(table).where(table.domain == domain))
                records = session.scalars(
                    select(table)
                    .where(table.domain == domain)
                    .order_by(table.id)
                    .offset((page - 1) * page_size)
                    .limit(page_size)
                ).all()
                return {
                    "rows": [row_out(record) for record in records],
                    "page": page,
                    "page_size": page_size,
                    "total": total,
                    "has_more": page * page_size < total,
                }

        def read_one(
            domain: Domain, key: Annotated[str, Path(description=f"{key_help}, joined with ':'")]
        ) -> dict[str, Any]:
            with transaction(domain, write=False) as session:
                parts = tuple(key.split(":", len(importer.key_fields) - 1))
                if len(parts) != len(importer.key_fields):
                    raise ApiError(
                        404, f"no {entity} with key {key} in this domain (a key is {key_help}, joined with ':')"
                    )
                found = importer(session, domain, DomainSettingsBody(), datetime.now(UTC)).load_existing([parts])
                if parts not in found:
                    raise ApiError(404, f"no {entity} with key {key} in this domain")
                return row_out(found[parts])

        app.add_api_route(
            f"/api/v1/{entity}/batch",
            upsert,
            methods=["POST"],
            response_model=BatchAnswer,
            tags=["import"],
            summary=f"Upsert up to {limits.MAX_BATCH_ROWS} {entity} by {key_help}",
            responses=BATCH_ERRORS,
            operation_id=f"upsert_{entity}",
        )
        app.add_api_route(
            f"/api/v1/{entity}",
            list_rows,
            methods=["GET"],
            response_model=Page,
            tags=["read back"],
            summary=f"List {entity}, page by page",
            responses=ERROR_RESPONSES,
            operation_id=f"list_{entity}",
        )
        app.add_api_route(
            f"/api/v1/{entity}/{{key}}",
            read_one,
            methods=["GET"],
            response_model=dict[str, Any],
            tags=["read back"],
            summary=f"Read one of {entity} by {key_help}",
            responses={**ERROR_RESPONSES, 404: {"model": Message}},
            operation_id=f"read_{entity}",
        )

    @app.post(
        "/api/v1/users/deactivate",
        response_model=BatchAnswer,
        tags=["import"],
        responses=BATCH_ERRORS,
        summary="Deactivate users (never deleted)",
    )
    def deactivate(domain: Domain, body: DeactivateRequest) -> Response:
        return import_write(domain, len(body.users), lambda session: deactivate_users(session, domain, body.users))

    def add_remove_route(entity: str) -> None:
        body_model = REMOVE_BODIES[entity]

        def remove(domain: Domain, body: body_model) -> Response:  # type: ignore[valid-type]
            return import_write(domain, len(body.rows), lambda session: remove_rows(session, domain, entity, body.rows))

        app.add_api_route(
            f"/api/v1/{entity}/remove",
            remove,
            methods=["POST"],
            response_model=BatchAnswer,
            tags=["import"],
            summary=f"Remove {entity} by key",
            responses=BATCH_ERRORS,
            operation_id=f"remove_{entity}",
        )

    for entity in REMOVABLE:
        add_remove_route(entity)

    # --- domain settings ------------------------------------------------------------------------

    @app.get(
        "/api/v1/domain/settings",
        response_model=DomainSettingsBody,
        tags=["domain"],
        responses=ERROR_RESPONSES,
        summary="Manage Domain settings (grade push per organization, usernames, passwords)",
    )
    def get_settings(domain: Domain) -> DomainSettingsBody:
        with transaction(domain, write=False) as session:
            return read_settings(session, domain)

    @app.put(
        "/api/v1/domain/settings",
        response_model=DomainSettingsBody,
        tags=["domain"],
        responses=ERROR_RESPONSES,
        summary="Change domain settings (fields not sent keep their value)",
    )
    def put_settings(domain: Domain, body: DomainSettingsUpdate) -> DomainSettingsBody:
        with transaction(domain, write=True) as session:
            try:
                return update_settings(session, domain, body)
            except UnknownOrganizations as error:
                raise ApiError(422, str(error)) from error

    # --- admin side -----------------------------------------------------------------------------

    def _user(session: Session, domain: str, user_type: str, external_id: str) -> User:
        user = session.scalar(
            select(User).where(User.domain == domain, User.user_type == user_type, User.external_id == external_id)
        )
        if user is None:
            raise ApiError(404, f"user {user_type}:{external_id} does not exist in this domain")
        return user

    @app.put(
        "/api/v1/admin/users/{user_type}/{external_id}/authentication",
        tags=["admin"],
        responses={**ERROR_RESPONSES, 404: {"model": Message}},
        summary="Set a user's authentication type by hand (imports never change it afterwards)",
    )
    def set_authentication(
        domain: Domain, user_type: UserType, external_id: str, body: AuthenticationBody
    ) -> dict[str, Any]:
        with transaction(domain, write=True) as session:
            user = _user(session, domain, user_type, external_id)
            user.authentication_type = body.authentication_type
            user.authentication_set_by = "admin"
            user.updated_at = datetime.now(UTC)
            session.flush()
            return row_out(user)

    # --- users from before the integration: Import ID transition (admin_users.py) ---------------

    @contextmanager
    def admin_errors() -> Iterator[None]:
        try:
            yield
        except admin_users.Refused as error:
            raise ApiError(error.status, str(error)) from error

    @app.post(
        "/api/v1/admin/users",
        status_code=201,
        tags=["admin"],
        responses={**ERROR_RESPONSES, 409: {"model": Message}},
        summary=(
            "Create a user by hand (no Import ID, or an earlier integration's): what a domain has before the import"
        ),
    )
    def create_hand_made_user(domain: Domain, body: HandMadeUserBody) -> dict[str, Any]:
        with admin_errors(), transaction(domain, write=True) as session:
            return admin_users.admin_user_out(admin_users.create_user(session, domain, body))

    @app.get(
        "/api/v1/admin/users",
        response_model=Page,
        tags=["admin"],
        responses=ERROR_RESPONSES,
        summary="Every user with Learning's own id (learning_id), page by page; without_import_id=true: only "
        "users without an Import ID",
    )
    def list_admin_users(
        domain: Domain,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=limits.MAX_PAGE_SIZE)] = 100,
        without_import_id: bool = False,
    ) -> dict[str, Any]:
        with transaction(domain, write=False) as session:
            return admin_users.list_users(session, domain, page, page_size, without_import_id)

    @app.put(
        "/api/v1/admin/users/{learning_id}/import-id",
        tags=["admin"],
        responses={**ERROR_RESPONSES, 404: {"model": Message}, 409: {"model": Message}},
        summary="Set a user's Import ID (login, password, authentication and content stay the user's; "
        "what named the old Import ID names the new one)",
    )
    def put_import_id(domain: Domain, learning_id: int, body: ImportIdBody) -> dict[str, Any]:
        with admin_errors(), transaction(domain, write=True) as session:
            user, result = admin_users.set_import_id(session, domain, learning_id, body.external_id)
            return {**admin_users.admin_user_out(user), "result": result}

    @app.post(
        "/api/v1/admin/users/{user_type}/{external_id}/notifications",
        status_code=201,
        tags=["admin"],
        responses={**ERROR_RESPONSES, 404: {"model": Message}},
        summary="Send a user a notification by hand (the source document: 'inform users of their credentials later')",
    )
    def notify_user(domain: Domain, user_type: UserType, external_id: str, body: NotificationBody) -> dict[str, Any]:
        with transaction(domain, write=True) as session:
            _user(session, domain, user_type, external_id)
            session.add(
                Notification(
                    domain=domain,
                    user_type=user_type,
                    user_external_id=external_id,
                    kind=body.kind,
                    created_at=datetime.now(UTC),
                )
            )
            session.flush()
            count = session.scalar(select(func.count()).select_from(Notification).where(Notification.domain == domain))
            return {"count": count}

    @app.get(
        "/api/v1/notifications/count",
        tags=["admin"],
        responses=ERROR_RESPONSES,
        summary="How many notifications this domain has sent (imports send none)",
    )
    def notification_count(domain: Domain) -> dict[str, int]:
        with transaction(domain, write=False) as session:
            count = session.scalar(select(func.count()).select_from(Notification).where(Notification.domain == domain))
            return {"count": count or 0}

    # --- teacher side: gradables and scores -------------------------------------------------------

    @contextmanager
    def gradebook_errors() -> Iterator[None]:
        try:
            yield
        except gradebook.NotFound as error:
            raise ApiError(404, str(error)) from error
        except gradebook.Refused as error:
            raise ApiError(422, str(error)) from error

    not_found = {**ERROR_RESPONSES, 404: {"model": Message}}

    @app.post(
        "/api/v1/classes/{class_id}/gradables",
        status_code=201,
        response_model=GradableOut,
        tags=["gradebook"],
        responses=not_found,
        summary="Create a gradable in a class",
    )
    def create_gradable(domain: Domain, class_id: str, body: GradableBody) -> dict[str, Any]:
        with gradebook_errors(), transaction(domain, write=True) as session:
            return gradebook.gradable_out(gradebook.create_gradable(session, domain, class_id, body))

    @app.get(
        "/api/v1/classes/{class_id}/gradables",
        response_model=list[GradableOut],
        tags=["gradebook"],
        responses=not_found,
        summary="The gradables of a class",
    )
    def class_gradables(domain: Domain, class_id: str) -> list[dict[str, Any]]:
        with gradebook_errors(), transaction(domain, write=False) as session:
            return [gradebook.gradable_out(item) for item in gradebook.list_gradables(session, domain, class_id)]

    @app.get(
        "/api/v1/gradables/{gradable_id}",
        response_model=GradableOut,
        tags=["gradebook"],
        responses=not_found,
        summary="One gradable",
    )
    def read_gradable(domain: Domain, gradable_id: int) -> dict[str, Any]:
        with gradebook_errors(), transaction(domain, write=False) as session:
            return gradebook.gradable_out(gradebook.get_gradable(session, domain, gradable_id))

    @app.patch(
        "/api/v1/gradables/{gradable_id}",
        response_model=GradableOut,
        tags=["gradebook"],
        responses=not_found,
        summary="Change a gradable's fields (a gradable_edited entry in the change feed)",
    )
    def change_gradable(domain: Domain, gradable_id: int, body: GradableUpdate) -> dict[str, Any]:
        with gradebook_errors(), transaction(domain, write=True) as session:
            return gradebook.gradable_out(gradebook.update_gradable(session, domain, gradable_id, body))

    @app.delete(
        "/api/v1/gradables/{gradable_id}",
        response_model=GradableOut,
        tags=["gradebook"],
        responses=not_found,
        summary="Delete a gradable (a gradable_deleted entry in the change feed; it takes no more scores)",
    )
    def remove_gradable(domain: Domain, gradable_id: int) -> dict[str, Any]:
        with gradebook_errors(), transaction(domain, write=True) as session:
            return gradebook.gradable_out(gradebook.delete_gradable(session, domain, gradable_id))

    @app.put(
        "/api/v1/classes/{class_id}/link",
        response_model=ClassLinkOut,
        tags=["gradebook"],
        responses=not_found,
        summary="Link a Learning class to an imported class (its gradables and scores are pushed to that class)",
    )
    def put_class_link(domain: Domain, class_id: str, body: ClassLinkBody) -> dict[str, Any]:
        with gradebook_errors(), transaction(domain, write=True) as session:
            return gradebook.link_class(session, domain, class_id, body.imported_class_id)

    @app.delete(
        "/api/v1/classes/{class_id}/link",
        response_model=ClassLinkOut,
        tags=["gradebook"],
        responses=not_found,
        summary="Unlink a Learning class from the imported class it was linked to",
    )
    def delete_class_link(domain: Domain, class_id: str) -> dict[str, Any]:
        with gradebook_errors(), transaction(domain, write=True) as session:
            return gradebook.link_class(session, domain, class_id, None)

    @app.put(
        "/api/v1/gradables/{gradable_id}/scores/{student_external_id}",
        response_model=ScoreOut,
        tags=["gradebook"],
        responses=not_found,
        summary="Enter or change a student's score",
    )
    def put_score(domain: Domain, gradable_id: int, student_external_id: str, body: ScoreBody) -> dict[str, Any]:
        with gradebook_errors(), transaction(domain, write=True) as session:
            return gradebook.set_score(session, domain, gradable_id, student_external_id, body.score)

    @app.get(
        "/api/v1/gradebook/changes",
        response_model=GradebookChanges,
        tags=["gradebook"],
        responses=ERROR_RESPONSES,
        summary="Gradebook changes (gradables, scores, class links) after a cursor, oldest first",
    )
    def gradebook_changes(
        domain: Domain,
        after: Annotated[int, Query(ge=0, description="The last cursor already processed (0 = from the start).")] = 0,
        limit: Annotated[int, Query(ge=1, le=limits.MAX_CHANGES_PER_PAGE)] = 100,
    ) -> dict[str, Any]:
        with transaction(domain, write=False) as session:
            return gradebook.read_changes(session, domain, after, limit)

    # Entity routes after the fixed paths above, and the catch-alls last, so that
    # /api/v1/domain/settings is never read as entity "domain", key "settings".
    for entity in ENTITY_IMPORTS:
        add_entity_routes(entity)

    known = ", ".join(ENTITY_IMPORTS)

    @app.api_route("/api/v1/{entity}/batch", methods=["POST"], include_in_schema=False)
    def unknown_entity_batch(entity: str, domain: Domain) -> None:
        raise ApiError(404, f"unknown entity '{entity}': the entities are {known}")

    @app.api_route("/api/v1/{entity}", methods=["GET"], include_in_schema=False)
    def unknown_entity_list(entity: str, domain: Domain) -> None:
        raise ApiError(404, f"unknown entity '{entity}': the entities are {known}")

    return app
