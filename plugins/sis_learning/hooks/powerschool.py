"""PowerSchoolHook: OAuth, page sizes, quirk-proof paging and admin-facing errors for the SIS API.

Implements what the source document asks of the PowerSchool side of the integration
(the PowerSchool Learning plugin's client id and secret, "a page size of at least 100
under the Data Configuration settings", a valid SSL certificate) and every behaviour
``powerschool-api.md`` requires of a client that must work against a real server:

- OAuth client credentials: the token is cached per hook and shared by its threads,
  renewed before it expires, dropped on any 401 and the request retried once; a 401
  with a fresh token is fatal and names the plugin's client id and secret.
- ``/ws/v1/metadata`` gives each resource's maximum page size: the hook uses the largest
  the plugin allows and fails clearly when it is under 100.
- Paging survives every quirk: a single record sent as an object, ``""`` / ``null`` /
  ``[]`` / ``{}`` for an empty page or nested object, digit-only strings sent as
  numbers (identifiers are coerced to strings), a server that clamps the page size.
  Every row is yielded exactly once (de-duplicated by identity), reading stops on a
  short or empty page, never loops forever when ``/count`` drifts mid-run, and where a
  ``/count`` is read the total is cross-checked against it with any mismatch recorded.
- Pages are fetched concurrently (bounded by the hook's ``max_concurrent_requests`` and
  the per-host limiter) and handed to the caller page by page as they arrive, so staging
  streams: a large listing's count is read first and its pages requested at once; many
  listings (one per school) are read side by side, each page by page, with no count for
  one that fits in one page (a clamping server is still caught: see ``read_pages``).
"""

from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson

from sis_learning.exceptions import PageSizeTooSmallError
from sis_learning.hooks.http_client import (
    RETRYABLE_STATUSES,
    ApiError,
    ApiHttpHook,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
    path_kind,
)

MINIMUM_PAGE_SIZE = 100  # "set a page size of at least 100 under this Data Configuration"
TOKEN_RENEW_MARGIN_SECONDS = 60
PLUGIN_SETTINGS = "System > System Settings > Plugin Management Configuration > PowerSchool Learning"
# Nested keys whose value is a list that PowerSchool sends as a bare object when it has one element.
NESTED_LIST_KEYS = frozenset({"school_affiliation", "races", "_table_extension", "_field", "email", "phone"})
SCHOOL_PATH = re.compile(r"^/ws/v1/school/([^/]+)")
# A listing that keeps returning full pages this far past /count is broken: stop, record it.
MAX_PAGES_PAST_COUNT = 50
MAX_PAGES_WITHOUT_COUNT = 100_000


# --------------------------------------------------------------------------- quirk parsing


def as_list(value: Any) -> list[Any]:
    """A PowerSchool list in any of its shapes (object for one item, ``""``/null/{} for none)."""
    if value is None or value == "" or value == {} or value == []:
        return []
    if isinstance(value, list):
        return [item for item in value if item not in (None, "")]
    return [value]


def id_string(value: Any) -> str | None:
    """An identifier as a string: PowerSchool sends digit-only ids as JSON numbers."""
    kind = type(value)
    if kind is str:  # the common cases first: this runs for every id of every row
        return value.strip() or None
    if kind is int:
        return str(value)
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or None


def normalise_lists(record: Any) -> Any:
    """The record with known nested lists always lists (the single-object quirk, nested)."""
    if isinstance(record, dict):
        return {
            key: (
                [normalise_lists(item) for item in as_list(value)]
                if key in NESTED_LIST_KEYS and isinstance(value, (dict, list))
                else normalise_lists(value)
            )
            for key, value in record.items()
        }
    if isinstance(record, list):
        return [normalise_lists(item) for item in record]
    return record


def _normalise_in_place(record: dict[str, Any]) -> dict[str, Any]:
    """:func:`normalise_lists` for a record freshly parsed from a page (owned by the caller).

    Changes only the containers that need it instead of copying every level of every
    record: the same result, at a fraction of the CPU (it runs for every v1 record).
    """
    for key, value in record.items():
        kind = type(value)
        if kind is dict:
            if key in NESTED_LIST_KEYS:
                record[key] = [_normalise_in_place(value)] if value else []
            else:
                _normalise_in_place(value)
        elif kind is list:
            if key in NESTED_LIST_KEYS:
                record[key] = [
                    _normalise_in_place(item) if type(item) is dict else _normalise_value(item)
                    for item in value
                    if item is not None and item != ""
                ]
            else:
                record[key] = [_normalise_value(item) for item in value]
    return record


def _normalise_value(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return _normalise_in_place(value)
    if kind is list:
        return [_normalise_value(item) for item in value]
    return value


def v1_records(body: Any, wrapper: str, item: str) -> list[dict[str, Any]]:
    """Records of a ``/ws/v1`` list page: ``{wrapper: {item: [..] | {..} | "" | null}}``."""
    if not isinstance(body, dict):
        return []
    container = body.get(wrapper, body if item in body else None)
    if isinstance(container, dict):
        items = container.get(item)
    elif isinstance(container, list):
        items = container
    else:
        items = None
    return [_normalise_in_place(record) for record in as_list(items) if type(record) is dict]


def _lower_keys(record: Mapping[str, Any]) -> dict[str, Any]:
    # Column names usually arrive lower-case already: then the record is kept as it is.
    for key in record:
        if not key.islower():
            return {str(key).lower(): value for key, value in record.items()}
    return record if type(record) is dict else dict(record)


def _empty_as_null(row: dict[str, Any]) -> dict[str, Any]:
    """Quirk 5: ``/ws/schema`` sends a NULL column as ``""`` (any type): it is null here.

    Checked once per row at C speed (``in`` over the values); only rows holding an empty
    value are rebuilt.
    """
    if "" in row.values():
        return {key: (None if value == "" else value) for key, value in row.items()}
    return row


def table_records(body: Any, table: str) -> list[dict[str, Any]]:
    """Rows of a ``/ws/schema/table`` page: ``{"record": [{"tables": {table: {...}}}]}``.

    A ``""`` value (how PowerSchool sends NULL, numeric and date columns included) comes
    back as None, so no reader mistakes it for a value.
    """
    if not isinstance(body, dict):
        return []
    rows = []
    name = table.lower()
    lower_columns: set[str] = set()  # a column set already seen to be lower-case (the common case)
    for record in as_list(body.get("record")):
        if type(record) is not dict:
            continue
        tables = record.get("tables")
        if type(tables) is dict:
            columns = tables.get(name)
            if columns is None:
                lowered = _lower_keys(tables)
                columns = lowered.get(name)
                if columns is None and len(lowered) == 1:
                    columns = next(iter(lowered.values()))
        else:
            columns = record
        if type(columns) is dict:
            if columns.keys() == lower_columns:
                rows.append(_empty_as_null(columns))
            else:
                row = _lower_keys(columns)
                if row is columns:
                    lower_columns = set(columns)
                rows.append(_empty_as_null(row))
    return rows


def query_records(body: Any) -> list[dict[str, Any]]:
    """Rows of a PowerQuery page; columns flattened to lower-case names without table prefix.

    As in :func:`table_records`, a ``""`` value is None.
    """
    if not isinstance(body, dict):
        return []
    rows = []
    names: dict[str, str] = {}  # column as sent -> its name (the same few columns on every row)
    for record in as_list(body.get("record")):
        if not isinstance(record, dict):
            continue
        flat: dict[str, Any] = {}
        tables = record.get("tables")
        sources = tables.values() if isinstance(tables, dict) else (record,)
        for source in sources:
            if not isinstance(source, dict):
                continue
            for key, value in source.items():
                name = names.get(key)
                if name is None:
                    name = names[key] = str(key).lower().rsplit(".", 1)[-1]
                if name not in flat:
                    flat[name] = None if value == "" else value
        rows.append(flat)
    return rows


def parse_count(body: Any) -> int | None:
    """``{"resource": {"count": 423}}`` or ``{"count": 423}`` (number or string) -> 423."""
    if isinstance(body, dict):
        if "count" in body:
            try:
                return int(str(body["count"]).strip())
            except ValueError:
                return None
        for value in body.values():
            found = parse_count(value)
            if found is not None:
                return found
    return None


def fingerprint(record: Mapping[str, Any]) -> int:
    """A hash of a record's content, to tell a repeated record from a different one under the same id.

    Flat table rows hash their values directly; nested v1 records through their JSON.
    """
    try:
        return hash(tuple(record.items()))
    except TypeError:  # nested dicts or lists
        return hash(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))


def schema_envelope(body: Any) -> bool:
    """A ``/ws/schema`` page: ``{"name": ..., "record": [...]}`` (record is always an array there)."""
    return isinstance(body, dict) and isinstance(body.get("record"), list)


def record_identity(record: Mapping[str, Any]) -> str | None:
    return id_string(record.get("id"))


# --------------------------------------------------------------------------- listings


@dataclass
class Listing:
    """One paged read (a resource in one scope) and what happened while reading it."""

    scope: str
    label: str
    path: str
    parse: Callable[[Any], list[dict[str, Any]]]
    page_size: int
    params: dict[str, Any] = field(default_factory=dict)
    count_path: str | None = None
    method: str = "GET"
    body: Any = None
    identity: Callable[[Mapping[str, Any]], str | None] = record_identity
    # What a page must look like (the documented envelope); anything else is an error, not an empty page.
    envelope: Callable[[Any], bool] | None = None
    documented: str | None = None
    reported_count: int | None = None
    rows: int = 0
    pages: int = 0
    requests: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)
    # paging state
    effective_page_size: int = 0
    planned_pages: int = 0
    highest_page: int = 0
    stopped: bool = False
    count_read: bool = False
    first_page_size: int = 0
    # Ids listed twice with different values (not a page shift: the source holds two
    # records under one id). Both are kept, for validate to reject as duplicate_source_id.
    conflicting: set[str] = field(default_factory=set)
    _seen: dict[str, int] = field(default_factory=dict, repr=False)  # identity -> fingerprint
    _first_pages: _FirstPages | None = field(default=None, repr=False)

    @property
    def mismatch(self) -> bool:
        return self.reported_count is not None and self.rows != self.reported_count

    @property
    def note(self) -> str | None:
        notes = list(self.notes)
        if self.duplicates:
            notes.append(f"{self.duplicates} repeated rows dropped (pages shifted while reading)")
        if self.conflicting:
            notes.append(
                f"{len(self.conflicting)} ids listed more than once with different values "
                "(every copy kept, to be rejected as duplicate_source_id)"
            )
        if self.mismatch:
            notes.append(f"/count reported {self.reported_count}, read {self.rows}")
        return "; ".join(notes) or None


@dataclass
class _FirstPages:
    """Page 1 of the page-by-page listings of one kind (path), for the clamp check."""

    pending: int = 0
    full_page_seen: bool = False
    short: list[Listing] = field(default_factory=list)


# --------------------------------------------------------------------------- the hook


class PowerSchoolHook(ApiHttpHook):
    """Reads the PowerSchool SIS API for the PowerSchool Learning plugin of one district.

    Connection: host (and schema https, port) of the PowerSchool server, login = the
    plugin's client id, password = its client secret, extra ``ca_bundle`` for a private CA.

    Args: ``powerschool_conn_id`` that connection's id; ``options`` as ``ApiHttpHook``
    (``max_concurrent_requests``, ``retry_policy``, ``timeout_seconds``, ``connection``).
    Built from a district's config by ``hooks.district.powerschool_hook``.
    """

    conn_name_attr = "powerschool_conn_id"
    default_conn_name = "powerschool_default"
    conn_type = "http"
    hook_name = "PowerSchool SIS"
    service_name: ClassVar[str] = "PowerSchool"
    # 412 "Resubmit" is PowerTeacher Pro's way of asking for a retry of a score write.
    retry_statuses: ClassVar[frozenset[int]] = RETRYABLE_STATUSES | {412}

    def __init__(self, powerschool_conn_id: str = default_conn_name, **options: Any) -> None:
        self.powerschool_conn_id = powerschool_conn_id
        super().__init__(http_conn_id=powerschool_conn_id, **options)
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._metadata: dict[str, Any] | None = None
        self._district_schools: list[dict[str, Any]] | None = None
        self.district_schools_listing: Listing | None = None  # how the cached list was read
        self.tokens_issued = 0

    @classmethod
    def from_settings(  # type: ignore[override]
        cls,
        base_url: str,
        client_id: str,
        client_secret: str,
        ca_bundle: str | Path | None = None,
        **hook_options: Any,
    ) -> PowerSchoolHook:
        """A hook from plain values (tests, scripts): no Airflow connection lookup at all."""
        connection = cls.connection_from_settings(base_url, client_id, client_secret, ca_bundle)
        return cls(connection=connection, **hook_options)

    # ---- OAuth client credentials

    def access_token(self) -> str:
        with self._token_lock:
            if self._token and time.monotonic() < self._token_expires_at:
                return self._token
            connection = self.connection()
            if not connection.login or not connection.password:
                raise AuthenticationError(
                    None,
                    f"Airflow connection {self.conn_id!r} needs the PowerSchool Learning plugin's client id as "
                    f"login and client secret as password ({PLUGIN_SETTINGS} > Data Provider Configuration).",
                    self.base_url,
                )
            basic = base64.b64encode(f"{connection.login}:{connection.password}".encode()).decode()
            answer = self.request_json(
                "POST",
                "/oauth/access_token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
                authenticate=False,
                kind="POST /oauth/access_token",
            )
            token = answer.get("access_token") if isinstance(answer, dict) else None
            if not token:
                raise AuthenticationError(
                    200,
                    "PowerSchool answered the token request without an access_token: check that the "
                    f"PowerSchool Learning plugin is enabled ({PLUGIN_SETTINGS} > Enable).",
                    f"{self.base_url}/oauth/access_token",
                    method="POST",
                )
            try:
                lifetime = float(str(answer.get("expires_in", 3600)).strip())
            except ValueError:
                lifetime = 3600.0
            self._token = str(token)
            # Renew a little before the end (a tenth of a short lifetime), never after it.
            margin = min(TOKEN_RENEW_MARGIN_SECONDS, lifetime / 10)
            self._token_expires_at = time.monotonic() + max(0.0, lifetime - margin)
            self.tokens_issued += 1
            return self._token

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    def refresh_credentials(self, rejected_headers: Mapping[str, str]) -> bool:
        """Drop the token a 401 refused (unless another thread already replaced it); retry once."""
        with self._token_lock:
            if rejected_headers.get("Authorization") == f"Bearer {self._token}":
                self._token = None
                self._token_expires_at = 0.0
        return True

    def describe_error(
        self, status: int, method: str, path: str, message: str, errors: list[dict[str, Any]]
    ) -> tuple[type[ApiError], str]:
        where = f"{method} {path}"
        said = f' (PowerSchool said: "{message}")' if message else ""
        no_access = [error for error in errors if "no access" in str(error.get("code", "")).lower()]
        if no_access:
            fields = ", ".join(f"{error.get('resource', '?')}.{error.get('field', '?')}" for error in no_access)
            return ValidationFailedError, (
                f"The PowerSchool Learning plugin has no access to the field {fields} (on {where}). A PowerSchool "
                f"administrator must grant read access to it in the plugin's field access ({PLUGIN_SETTINGS} > "
                f"Data Access), then re-run the import."
            )
        if path.startswith("/oauth/access_token") and status in (400, 401, 403):
            return AuthenticationError, (
                f"PowerSchool refused the client id and secret in Airflow connection {self.conn_id!r} (HTTP {status} "
                f"on {where}){said}. Copy the Client ID (connection login) and Client Secret (connection password) "
                f"from {PLUGIN_SETTINGS} > Data Provider Configuration, and check the plugin is enabled."
            )
        if status == 401:
            return AuthenticationError, (
                f"PowerSchool rejected a freshly issued access token on {where} (HTTP 401){said}. Check the "
                f"PowerSchool Learning plugin's client id and secret in Airflow connection {self.conn_id!r} and "
                f"that the plugin is enabled ({PLUGIN_SETTINGS})."
            )
        if status == 403:
            return PermissionDeniedError, (
                f"PowerSchool denied the PowerSchool Learning plugin access to {where} (HTTP 403){said}. A "
                f"PowerSchool administrator must grant the plugin access to this data ({PLUGIN_SETTINGS} > Data "
                f"Access), then re-run the import."
            )
        if status == 404:
            school = SCHOOL_PATH.match(path)
            if school:
                return NotFoundError, (
                    f"PowerSchool has no school with id {school.group(1)} (HTTP 404 on {where}). Check the "
                    f"district's `schools` setting: it lists Schools.DCID values or school numbers."
                )
            return NotFoundError, f"PowerSchool has no {path} (HTTP 404 on {where}){said}."
        return super().describe_error(status, method, path, message, errors)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test connection": a token and the metadata, with the admin-facing error."""
        try:
            self.access_token()
            version = self.metadata().get("powerschool_version", "unknown version")
        except ApiError as error:
            return False, str(error)
        return True, f"PowerSchool {version} at {self.base_url} accepted the plugin's credentials"

    # ---- metadata and page sizes

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            body = self.request_json(
                "GET",
                "/ws/v1/metadata",
                envelope=lambda answer: isinstance(answer, dict) and isinstance(answer.get("metadata"), dict),
                documented='{"metadata": {...}}',
            )
            metadata = body.get("metadata") if isinstance(body, dict) else None
            self._metadata = metadata if isinstance(metadata, dict) else {}
        return self._metadata

    def max_page_size(self, resource: str) -> int:
        """The largest page the plugin allows for ``resource`` (e.g. ``student``), at least 100."""
        metadata = self.metadata()
        key = f"{resource}_max_page_size"
        raw = metadata.get(key)
        if raw in (None, ""):
            # Not advertised: 100 is the minimum every integration-ready plugin allows.
            self.log.warning("PowerSchool metadata has no %s; using %d", key, MINIMUM_PAGE_SIZE)
            return MINIMUM_PAGE_SIZE
        try:
            size = int(str(raw).strip())
        except ValueError:
            self.log.warning("PowerSchool metadata %s=%r is not a number; using %d", key, raw, MINIMUM_PAGE_SIZE)
            return MINIMUM_PAGE_SIZE
        if size < MINIMUM_PAGE_SIZE:
            raise PageSizeTooSmallError(
                None,
                f"The PowerSchool Learning plugin allows only {size} records per page for {resource} "
                f"({key} in /ws/v1/metadata); the integration needs at least {MINIMUM_PAGE_SIZE}. In PowerSchool, "
                f"open {PLUGIN_SETTINGS} > Data Configuration and set the page size to at least "
                f"{MINIMUM_PAGE_SIZE} (the largest allowed value makes the import fastest).",
                f"{self.base_url}/ws/v1/metadata",
            )
        return size

    # ---- listings (paged reads)

    def v1_listing(
        self,
        scope: str,
        path: str,
        *,
        wrapper: str,
        item: str,
        resource: str,
        params: Mapping[str, Any] | None = None,
        counted: bool = True,
        label: str | None = None,
    ) -> Listing:
        """A ``/ws/v1`` list (``counted``: the resource has a ``/count`` endpoint)."""
        return Listing(
            scope=scope,
            label=label or f"{path}",
            path=path,
            parse=lambda body: v1_records(body, wrapper, item),
            page_size=self.max_page_size(resource),
            params=dict(params or {}),
            count_path=f"{path}/count" if counted else None,
            envelope=lambda body: isinstance(body, dict) and (wrapper in body or item in body),
            documented=f'the {wrapper} list envelope {{"{wrapper}": {{"{item}": [...]}}}}',
        )

    def table_listing(
        self,
        scope: str,
        table: str,
        projection: Iterable[str],
        *,
        q: str | None = None,
        identity: Callable[[Mapping[str, Any]], str | None] | None = None,
    ) -> Listing:
        """A ``/ws/schema/table/{table}`` read: every value comes back as a string."""
        params: dict[str, Any] = {"projection": ",".join(projection)}
        if q:
            params["q"] = q
        path = f"/ws/schema/table/{table}"
        return Listing(
            scope=scope,
            label=f"table {table}",
            path=path,
            parse=lambda body: table_records(body, table),
            page_size=self.max_page_size("schema_table_query"),
            params=params,
            count_path=f"{path}/count",
            envelope=schema_envelope,
            documented=f'the table envelope {{"name": "{table.lower()}", "record": [...]}}',
            identity=identity or (lambda row: id_string(row.get("dcid") or row.get("id"))),
        )

    def query_listing(
        self,
        scope: str,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        identity: Callable[[Mapping[str, Any]], str | None],
    ) -> Listing:
        """A PowerQuery (``POST /ws/schema/query/{name}``), paged like a table read."""
        path = f"/ws/schema/query/{name}"
        return Listing(
            scope=scope,
            label=f"PowerQuery {name}",
            path=path,
            parse=query_records,
            page_size=self.max_page_size("schema_table_query"),
            count_path=f"{path}/count",
            envelope=schema_envelope,
            documented='the PowerQuery envelope {"name": ..., "record": [...]}',
            method="POST",
            body=dict(arguments or {}),
            identity=identity,
        )

    def read_count(self, listing: Listing) -> int | None:
        params = {key: value for key, value in listing.params.items() if key not in ("page", "pagesize")}
        body = self.request_json(
            listing.method,
            listing.count_path or f"{listing.path}/count",
            params=params or None,
            json=listing.body if listing.method == "POST" else None,
            envelope=lambda answer: parse_count(answer) is not None,
            documented='a count ({"resource": {"count": N}} or {"count": N})',
        )
        return parse_count(body)

    def read_page(self, listing: Listing, page: int) -> list[dict[str, Any]]:
        params = {**listing.params, "page": page, "pagesize": listing.page_size}
        body = self.request_json(
            listing.method,
            listing.path,
            params=params,
            json=listing.body if listing.method == "POST" else None,
            envelope=listing.envelope,
            documented=listing.documented,
        )
        return listing.parse(body)

    def read_pages(
        self, listings: Iterable[Listing], *, page_by_page: bool = False
    ) -> Iterator[tuple[Listing, list[dict[str, Any]]]]:
        """Yield ``(listing, new rows)`` page by page, in completion order, for all listings.

        Pages are fetched concurrently, at most ``max_concurrent_requests`` at a time and at
        most twice that many pages held, in one of two plans:

        - counted (the default, for one or a few large listings such as the CC table):
          each listing's ``/count`` is read first, then every page the count calls for is
          requested at once. A listing continues past its count only while its last page
          comes back full (the count drifted up), never beyond ``MAX_PAGES_PAST_COUNT``
          pages and never when a page brings nothing new.
        - ``page_by_page`` (for many listings, such as one per school): page 1 of every
          listing first, then a listing's next page only after a full one; the concurrency
          comes from reading the listings side by side. A short page ends a listing, so a
          listing that fits in one page costs one request and no ``/count``. A server that
          clamps the page size below what metadata advertises is still caught: a clamped
          listing's page 1 is short, but exactly as long as the longest page 1 of its kind
          (a clamp gives every larger listing the same length), and at least 100 rows long
          (the least page size the integration accepts; a shorter page is an end). So when
          no listing of a kind returned a full page 1, the listings whose page 1 is that
          longest length, if 100 rows or more, have their ``/count`` read (usually one
          request); a count above the rows read means the server clamps, and the listing
          is paged on the size it returned.
        """
        listings = list(listings)
        work: deque[tuple[Listing, int]] = deque()  # page 0 = the planning /count, -1 = the clamp check
        groups: dict[str, _FirstPages] = {}
        for listing in listings:
            listing.effective_page_size = listing.page_size
            if listing.count_read:
                self._plan_pages(listing, listing.reported_count, work)
            elif listing.count_path and not page_by_page:
                work.append((listing, 0))
            else:
                listing.highest_page = 1
                work.append((listing, 1))
                if page_by_page and listing.count_path:
                    group = groups.setdefault(path_kind(listing.path), _FirstPages())
                    group.pending += 1
                    listing._first_pages = group
        window = max(2, self.max_concurrent_requests * 2)
        in_flight: dict[Future, tuple[Listing, int]] = {}
        executor = ThreadPoolExecutor(max_workers=self.max_concurrent_requests, thread_name_prefix="powerschool")
        try:
            while work or in_flight:
                while work and len(in_flight) < window:
                    listing, page = work.popleft()
                    call = (self.read_count, listing) if page <= 0 else (self.read_page, listing, page)
                    in_flight[executor.submit(*call)] = (listing, page)
                    listing.requests += 1
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for future in done:
                    listing, page = in_flight.pop(future)
                    result = future.result()  # a fatal error propagates here
                    if page == 0:
                        self._plan_pages(listing, result, work)
                        continue
                    if page < 0:
                        self._check_clamp(listing, result, work)
                        continue
                    fresh = self._accept_page(listing, page, result, work)
                    if fresh:
                        yield listing, fresh
        finally:
            for future in in_flight:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)

    def read_counts(self, listings: Iterable[Listing]) -> None:
        """Read the ``/count`` of several listings concurrently (sets ``reported_count``).

        A listing whose count was read this way is not counted again by :meth:`read_pages`.
        """
        listings = [listing for listing in listings if not listing.count_read]
        with ThreadPoolExecutor(max_workers=self.max_concurrent_requests, thread_name_prefix="powerschool") as pool:
            counts = list(pool.map(self.read_count, listings))
        for listing, count in zip(listings, counts, strict=True):
            listing.reported_count = count
            listing.count_read = True
            listing.requests += 1

    def _plan_pages(self, listing: Listing, count: int | None, work: deque[tuple[Listing, int]]) -> None:
        listing.reported_count = count
        listing.count_read = True
        if count is None:
            listing.notes.append("/count gave no number")
        # Page 1 is read even when the count is 0: the count may be stale, and it is one request.
        listing.planned_pages = max(1, math.ceil((count or 0) / listing.page_size))
        listing.highest_page = listing.planned_pages
        work.extend((listing, page) for page in range(1, listing.planned_pages + 1))

    def _note_first_page(self, listing: Listing, size: int, work: deque[tuple[Listing, int]]) -> None:
        """Page 1 of a page-by-page listing arrived: once all of its kind have, check for a clamp."""
        group = listing._first_pages
        listing._first_pages = None
        listing.first_page_size = size
        group.pending -= 1
        if size >= listing.page_size:
            group.full_page_seen = True
        elif size >= MINIMUM_PAGE_SIZE:
            # Shorter than the least page size any usable plugin serves (100), a page cannot
            # have been clamped: it is the end of its listing.
            group.short.append(listing)
        if group.pending or group.full_page_seen or not group.short:
            return
        longest = max(suspect.first_page_size for suspect in group.short)
        for suspect in group.short:
            if suspect.first_page_size == longest:
                work.append((suspect, -1))

    def _check_clamp(self, listing: Listing, count: int | None, work: deque[tuple[Listing, int]]) -> None:
        """The count of a listing whose short page 1 may have been clamped: page on if it was."""
        listing.reported_count = count
        listing.count_read = True
        if count is None:
            listing.notes.append("/count gave no number")
            return
        size = listing.first_page_size
        if count <= size or listing.highest_page != 1 or listing.stopped:
            return  # page 1 held the whole listing (any difference is recorded as a mismatch)
        listing.effective_page_size = size
        listing.notes.append(f"server returned pages of {size} rows although {listing.page_size} were asked")
        listing.planned_pages = math.ceil(count / size)
        listing.highest_page = listing.planned_pages
        work.extend((listing, page) for page in range(2, listing.planned_pages + 1))

    def _accept_page(
        self, listing: Listing, page: int, rows: list[dict[str, Any]], work: deque[tuple[Listing, int]]
    ) -> list[dict[str, Any]]:
        listing.pages += 1
        seen = listing._seen
        identity_of = listing.identity
        fresh = []
        for row in rows:
            identity = identity_of(row)
            if identity is not None:
                content = fingerprint(row)
                previous = seen.get(identity)
                if previous is None:
                    seen[identity] = content
                elif previous == content:
                    # The same record again: a page shifted while reading (a row inserted or
                    # deleted before it). Dropped and counted.
                    listing.duplicates += 1
                    continue
                else:
                    listing.conflicting.add(identity)
            fresh.append(row)
        listing.rows += len(fresh)
        size = len(rows)
        if page == 1 and listing._first_pages is not None:
            self._note_first_page(listing, size, work)
        if (
            page == 1
            and 0 < size < listing.page_size
            and listing.reported_count is not None
            and listing.reported_count > size
        ):
            # The server clamped the page size below what metadata advertised: page on its size.
            listing.effective_page_size = size
            listing.notes.append(f"server returned pages of {size} rows although {listing.page_size} were asked")
            needed = math.ceil(listing.reported_count / size)
            work.extend((listing, extra) for extra in range(listing.highest_page + 1, needed + 1))
            listing.highest_page = max(listing.highest_page, needed)
            return fresh
        if page != listing.highest_page or listing.stopped:
            return fresh
        if size == 0 or size < listing.effective_page_size:
            return fresh  # a short or empty last page: the listing is complete
        if not fresh:
            listing.stopped = True
            listing.notes.append(f"page {page} repeated rows already read: stopped paging")
            return fresh
        limit = (
            listing.planned_pages + MAX_PAGES_PAST_COUNT
            if listing.reported_count is not None
            else MAX_PAGES_WITHOUT_COUNT
        )
        if page >= limit:
            listing.stopped = True
            listing.notes.append(f"stopped after {page} pages: full pages kept coming past the reported count")
            return fresh
        listing.highest_page = page + 1
        work.append((listing, page + 1))
        return fresh

    def read_all(self, listing: Listing) -> Iterator[dict[str, Any]]:
        """Every row of one listing (small reads: schools, translation maps)."""
        for _listing, rows in self.read_pages([listing]):
            yield from rows

    # ---- schools

    def district_schools(self) -> list[dict[str, Any]]:
        """All schools of the district (``/ws/v1/district/school``), cached on the hook."""
        if self._district_schools is None:
            listing = self.v1_listing(
                "district", "/ws/v1/district/school", wrapper="schools", item="school", resource="school"
            )
            # Read page by page: a district's schools usually fit in one page, then no /count.
            self._district_schools = [
                row for _listing, rows in self.read_pages([listing], page_by_page=True) for row in rows
            ]
            self.district_schools_listing = listing
        return self._district_schools
