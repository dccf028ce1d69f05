"""LearningHook: the pipeline's client of the Learning API (docs/architecture.md, "The Learning API").

PowerSchool Learning has no public write API; the project defines one (upsert by
external id, per-row results, deactivate users, remove rosters and links, domain
settings, a gradebook change feed) and this hook is the only code that speaks it. It
builds on the one HTTP client layer (``hooks/http_client.ApiHttpHook``: TLS always
verified with the connection extra ``ca_bundle``, retries with backoff on 429/5xx, clear
exception classes, a bound on requests in flight).

Configured by an Airflow connection: host = Learning's base URL, password = the
district domain's bearer token, extra ``ca_bundle``. Tests and scripts build one with
``LearningHook.from_settings(base_url, token, ca_bundle)`` and need no metadata DB.

Every write is keyed (upsert by external id, deactivate/remove by key), so repeating a
request is safe: a retried batch comes back "unchanged". That is what makes the load
crash-safe.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson

from sis_learning.entities import LEARNING_ENTITIES
from sis_learning.exceptions import LearningResponseError
from sis_learning.hooks.http_client import (
    ApiHttpHook,
    AuthenticationError,
    UnexpectedResponseError,
    describe_body,
    path_kind,
    redact_url,
)

# The Learning API's limit, and the entities it knows, with the fields that key them.
MAX_BATCH_ROWS = 1000
ENTITY_KEY_FIELDS: dict[str, tuple[str, ...]] = {entity.name: entity.key_fields for entity in LEARNING_ENTITIES}
REMOVABLE_ENTITIES = tuple(entity.name for entity in LEARNING_ENTITIES if entity.vanished_action == "remove")
UPSERT_RESULTS = frozenset({"created", "updated", "unchanged", "failed"})

# A batch is up to 1,000 rows each way: encoded and decoded by orjson (several times
# faster than the json module; a district's load sends and reads over a million rows).


class LearningHook(ApiHttpHook):
    """Batch upsert / deactivate / remove / read back / settings / gradebook change feed.

    Args: ``learning_conn_id`` the Airflow connection of the district's Learning domain (host,
    password = the domain token, extra ``ca_bundle``); ``options`` as ``ApiHttpHook``. Built
    from a district's config by ``hooks.district.learning_hook``.
    """

    conn_name_attr = "learning_conn_id"
    default_conn_name = "learning_default"
    hook_name = "PowerSchool Learning (sis_learning)"
    service_name: ClassVar[str] = "PowerSchool Learning"
    default_headers: ClassVar[dict[str, str]] = {"Accept": "application/json", "Content-Type": "application/json"}

    def __init__(self, learning_conn_id: str = default_conn_name, **options: Any) -> None:
        self.learning_conn_id = learning_conn_id
        super().__init__(http_conn_id=learning_conn_id, **options)

    @classmethod
    def from_settings(  # type: ignore[override] - the token is Learning's only credential
        cls,
        base_url: str,
        token: str | None = None,
        ca_bundle: str | Path | None = None,
        **hook_options: Any,
    ) -> LearningHook:
        """A hook from plain values (tests, scripts, benchmarks): no Airflow lookup."""
        connection = cls.connection_from_settings(base_url, None, token, ca_bundle, conn_id=cls.default_conn_name)
        return cls(connection=connection, **hook_options)

    # ---- authentication: a bearer token per domain (district)

    def auth_headers(self) -> dict[str, str]:
        token = self.connection().password
        if not token:
            raise AuthenticationError(
                None,
                f"Airflow connection {self.conn_id!r} has no password: set it to the Learning domain's API token.",
                "",
            )
        return {"Authorization": f"Bearer {token}"}

    def describe_error(self, status, method, path, message, errors):
        if status == 401:
            return AuthenticationError, (
                f"PowerSchool Learning refused the token of Airflow connection {self.conn_id!r} (HTTP 401 on "
                f"{method} {path}). Set the connection's password to the district domain's current API token."
            )
        return super().describe_error(status, method, path, message, errors)

    # ---- helpers

    @staticmethod
    def _check_entity(entity: str, allowed: Sequence[str] | None = None) -> None:
        allowed = tuple(allowed or ENTITY_KEY_FIELDS)
        if entity not in allowed:
            raise ValueError(f"unknown Learning entity {entity!r}: expected one of {', '.join(allowed)}")

    @staticmethod
    def _check_batch(rows: Sequence[Any]) -> None:
        if not rows:
            raise ValueError("a Learning batch needs at least one row")
        if len(rows) > MAX_BATCH_ROWS:
            raise ValueError(f"a Learning batch takes at most {MAX_BATCH_ROWS} rows, got {len(rows)}: split it")

    def _results(self, path: str, body: Any, sent: int) -> list[dict[str, Any]]:
        """The per-row results, checked: one per row sent, in index order."""
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            url = f"{self.base_url}/{path.lstrip('/')}"
            raise LearningResponseError(
                200,
                f"PowerSchool Learning answered POST {url} with 200 and {describe_body(body)}, not the "
                'documented batch answer {"results": [...], "summary": {...}}.',
                url,
                method="POST",
            )
        if len(results) != sent:
            raise LearningResponseError(
                200,
                f"PowerSchool Learning answered POST {path} with {len(results)} results for {sent} rows sent.",
                path,
                method="POST",
            )
        in_order = all(
            isinstance(result, dict) and result.get("index") == position for position, result in enumerate(results)
        )
        if in_order:
            return results
        ordered = sorted(results, key=lambda result: result.get("index", 0) if isinstance(result, dict) else 0)
        if [result.get("index") if isinstance(result, dict) else None for result in ordered] != list(range(sent)):
            raise LearningResponseError(
                200,
                f"PowerSchool Learning answered POST {path} with row indexes that do not match the rows sent.",
                path,
                method="POST",
            )
        return ordered

    def _post_batch(self, path: str, body: dict[str, Any], kind: str, sent: int) -> list[dict[str, Any]]:
        """POST a batch body (orjson-encoded) and return its checked per-row results."""
        response = self.request("POST", path, data=orjson.dumps(body), expected=(200,), kind=kind)
        try:
            answer = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UnexpectedResponseError(
                response.status_code,
                f"{self.service_name} answered POST {redact_url(response.url)} ({path_kind(path)}) with "
                f"{'an empty body' if not response.content else describe_body(None, response)}, not the "
                "documented batch answer.",
                redact_url(response.url),
                method="POST",
            ) from None
        return self._results(path, answer, sent)

    # ---- writes

    def upsert(self, entity: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /api/v1/{entity}/batch``: upsert up to 1000 rows by key.

        Returns one result per row, in order: ``{"index", "key", "status":
        created|updated|unchanged|failed, "reason"}``. A users row may carry ``password``
        (applied by Learning on create only) and ``password_temporary``.
        """
        self._check_entity(entity)
        self._check_batch(rows)
        body = {"rows": [row if type(row) is dict else dict(row) for row in rows]}
        return self._post_batch(f"api/v1/{entity}/batch", body, f"POST {entity}/batch", len(rows))

    def deactivate_users(self, users: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /api/v1/users/deactivate``: disable users (never deleted); per-row results.

        Each user is ``{"user_type", "external_id"}``; a result's key is ``"<user_type>:<external_id>"``.
        """
        self._check_batch(users)
        body = {
            "users": [{"user_type": str(user["user_type"]), "external_id": str(user["external_id"])} for user in users]
        }
        return self._post_batch("api/v1/users/deactivate", body, "POST users/deactivate", len(users))

    def remove(self, entity: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /api/v1/{rosters|parent_links}/remove``: rows are their key fields only."""
        self._check_entity(entity, REMOVABLE_ENTITIES)
        self._check_batch(rows)
        fields = ENTITY_KEY_FIELDS[entity]
        body = {"rows": [{name: str(row[name]) for name in fields} for row in rows]}
        return self._post_batch(f"api/v1/{entity}/remove", body, f"POST {entity}/remove", len(rows))

    # ---- reads

    def read_page(self, entity: str, page: int = 1, page_size: int = MAX_BATCH_ROWS) -> dict[str, Any]:
        """``GET /api/v1/{entity}?page=&page_size=``: one page, as Learning answers it."""
        self._check_entity(entity)
        return self.request_json(
            "GET",
            f"api/v1/{entity}",
            params={"page": page, "page_size": page_size},
            kind=f"GET {entity}",
            envelope=_is_page,
            documented='the page envelope {"rows": [...], "page", "page_size", "total", "has_more"}',
        )

    def read_all(self, entity: str, page_size: int = MAX_BATCH_ROWS) -> Iterator[dict[str, Any]]:
        """Every row of an entity, page by page (for checks and read-back, not for the load)."""
        page = 1
        while True:
            body = self.read_page(entity, page, page_size)
            rows = _page_rows(body, entity)
            yield from rows
            if not rows or len(rows) < page_size or (isinstance(body, dict) and body.get("has_more") is False):
                return
            page += 1

    def read(self, entity: str, key: str) -> dict[str, Any] | None:
        """``GET /api/v1/{entity}/{key}``: one row, or None when Learning has no such key."""
        self._check_entity(entity)
        response = self.request("GET", f"api/v1/{entity}/{key}", expected=(200, 404), kind=f"GET {entity}/{{key}}")
        if response.status_code == 404:
            return None
        return response.json()

    # ---- users from before the integration: the Import ID transition (transition.py)

    def admin_users(self, without_import_id: bool = False, page_size: int = MAX_BATCH_ROWS) -> Iterator[dict[str, Any]]:
        """``GET /api/v1/admin/users``: every user of the domain with Learning's own ``learning_id``."""
        page = 1
        while True:
            body = self.request_json(
                "GET",
                "api/v1/admin/users",
                params={
                    "page": page,
                    "page_size": page_size,
                    "without_import_id": "true" if without_import_id else "false",
                },
                kind="GET admin/users",
                envelope=_is_page,
                documented='the page envelope {"rows": [...], "page", "page_size", "total", "has_more"}',
            )
            yield from body["rows"]
            if not body.get("has_more"):
                return
            page += 1

    def set_import_id(self, learning_id: int, external_id: str) -> dict[str, Any]:
        """``PUT /api/v1/admin/users/{learning_id}/import-id``: the user and ``result`` (updated|unchanged).

        A 409 (another user holds that Import ID) raises this hook's refusal error; the
        caller records it for that user.
        """
        return self.request_json(
            "PUT",
            f"api/v1/admin/users/{int(learning_id)}/import-id",
            json={"external_id": str(external_id)},
            kind="PUT admin/users/{id}/import-id",
            envelope=lambda body: isinstance(body, dict) and "learning_id" in body,
            documented="the user with its new external_id and result",
        )

    # ---- domain settings (grade push per organization lives here, as in Learning)

    def get_domain_settings(self) -> dict[str, Any]:
        return self.request_json(
            "GET", "api/v1/domain/settings", envelope=_is_settings, documented="the domain settings object"
        )

    def put_domain_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        return self.request_json(
            "PUT",
            "api/v1/domain/settings",
            json=dict(settings),
            envelope=_is_settings,
            documented="the domain settings object",
        )

    # ---- gradebook change feed (grade push)

    def gradebook_changes(self, after: int = 0, limit: int = 500) -> dict[str, Any]:
        """``GET /api/v1/gradebook/changes?after=&limit=``: ``{"changes", "next_cursor", "has_more"}``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        return self.request_json(
            "GET",
            "api/v1/gradebook/changes",
            params={"after": int(after), "limit": limit},
            kind="GET gradebook/changes",
            envelope=_is_change_page,
            documented='{"changes": [...], "next_cursor", "has_more"}',
        )

    def iter_gradebook_changes(self, after: int = 0, limit: int = 500) -> Iterator[dict[str, Any]]:
        """Every change after the cursor, following ``next_cursor`` until ``has_more`` is false."""
        cursor = int(after)
        while True:
            body = self.gradebook_changes(cursor, limit)
            yield from body.get("changes", [])
            next_cursor = body.get("next_cursor")
            if not body.get("has_more") or next_cursor is None or int(next_cursor) <= cursor:
                return
            cursor = int(next_cursor)


def _is_page(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("rows"), list) and "has_more" in body


def _is_settings(body: Any) -> bool:
    # The settings object has only settings (no "message" of an error answer, no list envelope).
    return isinstance(body, dict) and bool(body) and "message" not in body and "rows" not in body


def _is_change_page(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("changes"), list)


def _page_rows(body: Any, entity: str) -> list[dict[str, Any]]:
    # The list is under "rows" (or the entity's name); tolerate either.
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for name in ("rows", entity, "items"):
            if isinstance(body.get(name), list):
                return body[name]
    return []
