"""The PowerSchool SIS API simulator: an HTTPS server over a dataset file.

Implements docs/powerschool-api.md as the pipeline must see it: OAuth client credentials
(``expires_in`` as a string, the same token on repeat, 401 + ``WWW-Authenticate`` for an
expired or unknown token), ``/ws/v1`` with its envelopes, quirks, paging limits and ``q=``
filters, ``/ws/schema`` tables and the guardian PowerQuery, PowerTeacher Pro ``/ws/xte``
(see powerteacher.py), the per-client throttle and fault injection of ServerOptions, and a
separate admin API under ``/sandbox/admin`` (see admin.py) for tests and the demo.

One thread per connection (HTTP/1.1 keep-alive), one SQLite connection per thread; the TLS
handshake happens in the connection's thread so a slow client never blocks the others.
"""

from __future__ import annotations

import hmac
import http.server
import itertools
import random
import re
import secrets
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from base64 import b64decode
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.powerschool import admin, powerteacher, resources, schema_api, store
from sandbox.powerschool.options import ServerOptions
from sandbox.powerschool.query_filter import FilterError
from sandbox.powerschool.routing import (  # noqa: F401  (Request, Response, JSON_TYPE: used by callers too)
    JSON_TYPE,
    HttpError,
    Request,
    Response,
    Route,
    error_response,
    json_response,
)

EXPIRED_TOKEN_CHALLENGE = (
    'Bearer error="invalid_token",realm="PowerSchool",error_description="The access token has expired"'
)
EMPTY_STYLES = ("missing", "null", "empty_string", "empty_list", "empty_object")
REQUEST_LOG_LIMIT = 200_000


@dataclass
class Token:
    value: str
    client_id: str
    expires_at: float


class PowerSchoolApp:
    """Everything behind the HTTP layer: state, routing and the API handlers."""

    def __init__(
        self,
        database_path: Path,
        *,
        client_id: str,
        client_secret: str,
        admin_token: str,
        options: ServerOptions | None = None,
        base_url: str = "",
    ):
        self.database_path = Path(database_path)
        self.client_id, self._client_secret, self._admin_token = client_id, client_secret, admin_token
        self.options = options or ServerOptions()
        self.options.validate()
        self.base_url = base_url
        self._local = threading.local()
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()
        self.tokens: dict[str, Token] = {}
        self.last_request_at: dict[str, float] = {}
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)
        self.request_counts: dict[str, int] = {}
        self.sequence = itertools.count(1)
        self.fault_random = random.Random(self.options.fault_seed)
        self.empty_style_turn = itertools.count()
        self.page_keys = resources.PageKeyCache()
        with store.DatasetStore(self.database_path) as dataset:
            self.dataset_info = dataset.info()
        self.routes = [
            Route("POST", re.compile(r"^/oauth/access_token/?$"), self.access_token, "oauth"),
            Route("GET", re.compile(r"^/ws/v1/metadata/?$"), self.metadata, "api"),
            Route(
                "GET",
                re.compile(r"^/ws/v1/district/(?P<kind>school|student)(?P<count>/count)?/?$"),
                self.district_list,
                "api",
            ),
            Route(
                "GET",
                re.compile(
                    r"^/ws/v1/school/(?P<parent>[^/]+)/(?P<kind>student|staff|section|course|term)(?P<count>/count)?/?$"
                ),
                self.school_list,
                "api",
            ),
            Route(
                "GET",
                re.compile(r"^/ws/v1/section/(?P<parent>[^/]+)/(?P<kind>section_enrollment)(?P<count>/count)?/?$"),
                self.school_list,
                "api",
            ),
            Route(
                "GET",
                re.compile(
                    r"^/ws/v1/(?P<kind>school|student|staff|section|course|term|section_enrollment)/(?P<record>[^/]+)/?$"
                ),
                self.single_record,
                "api",
            ),
            Route(
                "GET", re.compile(r"^/ws/schema/table/(?P<table>[^/]+?)(?P<count>/count)?/?$"), self.schema_table, "api"
            ),
            Route(
                "GET", re.compile(r"^/ws/schema/table/(?P<table>[^/]+)/metadata/?$"), self.schema_table_metadata, "api"
            ),
            Route(
                "GET",
                re.compile(r"^/ws/schema/table/(?P<table>[^/]+)/(?P<record>[^/]+)/?$"),
                self.schema_table_row,
                "api",
            ),
            Route(
                "POST", re.compile(r"^/ws/schema/query/(?P<name>[^/]+?)(?P<count>/count)?/?$"), self.power_query, "api"
            ),
            *powerteacher.routes(self),
            *admin.routes(self),
        ]

    # -- plumbing ----------------------------------------------------------------------------
    def connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = store.connect(self.database_path)
            self._local.connection = connection
        return connection

    def write(self, operation: Callable[[Any], Any]) -> Any:
        """Run a write in one transaction; paging positions remembered so far are forgotten."""
        with self.write_lock:
            connection = self.connection()
            with connection:
                result = operation(connection)
            self.page_keys.invalidate()
            return result

    def handle(self, request: Request) -> Response:
        route, match = self._route(request)
        if route is None:
            response = match  # a 404/405 Response
            self._log(request, response.status, None, None)
            return response
        if route.kind == "admin":
            if not hmac.compare_digest(request.headers.get("X-Sandbox-Admin-Token") or "", self._admin_token):
                return error_response(403, "the admin API needs the X-Sandbox-Admin-Token header")
            return self._call(route, match, request)
        fault = self._fault(request)
        if fault is not None and fault.reset:
            self._log(request, 0, None, "reset")
            return fault
        client_id = None
        if route.kind == "api":
            token, refusal = self._authenticate(request)
            if refusal is not None:
                return self._finish(request, refusal, None, fault)
            client_id = token.client_id
            refusal = self._throttle(client_id)
            if refusal is not None:
                return self._finish(request, refusal, client_id, fault)
        if fault is not None and fault.status:
            return self._finish(request, fault, client_id, fault)
        return self._finish(request, self._call(route, match, request), client_id, fault)

    def _call(self, route: Route, match: re.Match[str], request: Request) -> Response:
        try:
            return route.handler(request, **match.groupdict())
        except HttpError as error:
            return error.response()
        except schema_api.ValidationFailed as error:
            return json_response(400, error.body())
        except (FilterError, schema_api.BadRequest) as error:
            return error_response(400, str(error))
        except resources.NotFound as error:
            return error_response(404, str(error))
        except Exception as error:  # a simulator bug: answer 500 and say so on stderr
            traceback.print_exc(file=sys.stderr)
            return error_response(500, f"sandbox internal error: {type(error).__name__}: {error}")

    def _finish(self, request: Request, response: Response, client_id: str | None, fault: Response | None) -> Response:
        if fault is not None:
            response.delay_seconds = fault.delay_seconds
            response.truncate = fault.truncate
        label = None
        if fault is not None:
            label = (
                "error"
                if fault.status
                else "truncated"
                if fault.truncate
                else "slow"
                if fault.delay_seconds >= self.options.slow_ms / 1000
                else "latency"
            )
        self._log(request, response.status, client_id, label)
        return response

    def _route(self, request: Request) -> tuple[Route | None, Any]:
        path_matched = False
        for route in self.routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            path_matched = True
            if route.method == request.method:
                return route, match
        if path_matched:
            return None, error_response(405, f"{request.method} is not allowed on {request.path}")
        return None, error_response(404, f"no such resource: {request.path}")

    def _log(self, request: Request, status: int, client_id: str | None, fault: str | None) -> None:
        if request.path.startswith("/sandbox/admin"):
            return
        key = f"{request.method} {request.path}"
        with self.lock:
            self.request_counts[key] = self.request_counts.get(key, 0) + 1
            self.request_log.append(
                {
                    "sequence": next(self.sequence),
                    "time": time.time(),
                    "method": request.method,
                    "path": request.path,
                    "query": {name: values[-1] for name, values in request.query.items()},
                    "status": status,
                    "client_id": client_id,
                    "fault": fault,
                }
            )

    # -- faults and throttle ----------------------------------------------------------------
    def _fault(self, request: Request) -> Response | None:
        """Roll the fault dice for one request: latency always, then reset, slowness or an error."""
        options = self.options
        if not any(request.path.startswith(prefix) for prefix in options.fault_paths):
            return None
        with self.lock:
            delay = options.latency_ms / 1000
            if options.latency_jitter_ms:
                delay += self.fault_random.uniform(0, options.latency_jitter_ms) / 1000
            roll = self.fault_random.random()
            status_pick = self.fault_random.choice(options.error_statuses)
        if roll < options.reset_rate:
            return Response(0, reset=True)
        roll -= options.reset_rate
        if roll < options.slow_rate:
            return Response(0, delay_seconds=delay + options.slow_ms / 1000)
        roll -= options.slow_rate
        if roll < options.truncate_rate:
            return Response(0, delay_seconds=delay, truncate=True)
        roll -= options.truncate_rate
        if roll < options.error_rate:
            messages = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
            response = error_response(status_pick, messages.get(status_pick, "Injected fault"))
            response.delay_seconds = delay
            return response
        if delay:
            return Response(0, delay_seconds=delay)
        return None

    def _throttle(self, client_id: str) -> Response | None:
        interval = self.options.throttle_ms / 1000
        if not interval:
            return None
        now = time.monotonic()
        with self.lock:
            last = self.last_request_at.get(client_id)
            if last is not None and now - last < interval:
                wait = max(1, int(-(-(interval - (now - last)) // 1)))
                headers = [("Retry-After", str(wait))] if self.options.throttle_retry_after else []
                return error_response(self.options.throttle_status, f"too many requests, wait {wait} seconds", headers)
            self.last_request_at[client_id] = now
        return None

    # -- OAuth ----------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> tuple[Token | None, Response | None]:
        header = request.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        token = self.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.expires_at <= time.time():
            return None, error_response(
                401,
                "Authorization required: the access token is missing, unknown or expired",
                [("WWW-Authenticate", EXPIRED_TOKEN_CHALLENGE)],
            )
        return token, None

    def access_token(self, request: Request) -> Response:
        scheme, _, encoded = (request.headers.get("Authorization") or "").partition(" ")
        try:
            client_id, _, client_secret = b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            client_id = client_secret = ""
        if scheme.lower() != "basic" or not (
            hmac.compare_digest(client_id, self.client_id) and hmac.compare_digest(client_secret, self._client_secret)
        ):
            return json_response(401, {"error": "invalid_client", "error_description": "Bad client credentials"})
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return error_response(415, "the token request must be application/x-www-form-urlencoded")
        form = parse_qs(request.body.decode("utf-8", "replace"))
        if form.get("grant_type", [""])[-1] != "client_credentials":
            return json_response(
                400, {"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"}
            )
        now = time.time()
        with self.lock:
            current = next(
                (token for token in self.tokens.values() if token.client_id == client_id and token.expires_at > now),
                None,
            )
            if current is None:
                current = Token(str(uuid.uuid4()), client_id, now + self.options.token_lifetime_seconds)
                self.tokens[current.value] = current
        remaining = max(1, int(current.expires_at - now))
        expires_in: int | str = remaining if self.options.expires_in_type == "number" else str(remaining)
        return json_response(200, {"access_token": current.value, "token_type": "Bearer", "expires_in": expires_in})

    def expire_tokens(self) -> int:
        with self.lock:
            for token in self.tokens.values():
                token.expires_at = 0
            return len(self.tokens)

    # -- paging ---------------------------------------------------------------------------------
    def page_window(
        self, request: Request, resource_key: str, *, zero_means_all: bool = False
    ) -> tuple[int, int | None]:
        maximum = self.options.max_page_sizes[resource_key]
        try:
            page = int(request.parameter("page") or 1)
            size = int(request.parameter("pagesize") or 0)
        except ValueError as error:
            raise HttpError(400, "page and pagesize must be integers") from error
        if page < 1:
            raise HttpError(400, "page must be 1 or more")
        if size < 0:
            raise HttpError(400, "pagesize must be 0 or more")
        if size == 0:
            if zero_means_all:
                return 0, None
            size = maximum
        if size > maximum:
            if self.options.oversize_page == "refuse":
                raise HttpError(
                    400,
                    f"pagesize {size} exceeds the maximum page size of {maximum} "
                    f"for {resource_key} (see /ws/v1/metadata)",
                )
            size = maximum
        return (page - 1) * size, size

    def empty_style(self) -> str:
        style = self.options.empty_page_style
        if style == "rotate":
            return EMPTY_STYLES[next(self.empty_style_turn) % len(EMPTY_STYLES)]
        return style

    # -- /ws/v1 -----------------------------------------------------------------------------------
    def metadata(self, request: Request) -> Response:
        check_parameters(request, set())
        info = self.dataset_info
        metadata: dict[str, Any] = {
            "powerschool_version": info.get("powerschool_version", "24.7.0.0"),
            "district_timezone": info.get("district_timezone", "America/Chicago"),
            "plugin_id": 1,
            "plugin_name": "PowerSchool Learning",
            "state": "sandbox",
            "district_name": info.get("district_name"),
        }
        for resource, size in sorted(self.options.max_page_sizes.items()):
            metadata[f"{resource}_max_page_size"] = size
        return json_response(200, {"metadata": metadata})

    def district_list(self, request: Request, kind: str, count: str | None) -> Response:
        return self._list(request, kind, None, count)

    def school_list(self, request: Request, parent: str, kind: str, count: str | None) -> Response:
        return self._list(request, kind, parent, count)

    def _list(self, request: Request, kind: str, parent: str | None, count: str | None) -> Response:
        check_parameters(request, V1_COUNT_PARAMETERS if count else V1_LIST_PARAMETERS)
        connection = self.connection()
        spec = resources.list_spec(connection, kind, parent, request.parameter("q"))
        if count:
            total = resources.count_rows(connection, source=spec.source, where=spec.where, parameters=spec.parameters)
            return json_response(200, {"resource": {"count": max(0, total + self.options.count_offset)}})
        order_by = resources.sort_order(kind, request.parameter("sort"), request.parameter("sortdescending"))
        offset, limit = self.page_window(request, spec.resource.max_page_size_key)
        rows = resources.read_page(
            connection,
            self.page_keys,
            select=spec.select,
            source=spec.source,
            where=spec.where,
            parameters=spec.parameters,
            order_key=spec.order_key,
            offset=offset,
            limit=limit,
            order_by=order_by,
        )
        items = resources.render(
            connection, kind, rows, _expansions(request), parent, extensions=_expansions(request, "extensions")
        )
        payload = resources.list_envelope(spec.resource, items, self.empty_style())
        return json_response(200, payload)

    def single_record(self, request: Request, kind: str, record: str) -> Response:
        check_parameters(request, V1_SINGLE_PARAMETERS)
        view = resources.single(
            self.connection(), kind, record, _expansions(request), _expansions(request, "extensions")
        )
        return json_response(200, {kind: view})

    # -- /ws/schema -------------------------------------------------------------------------------
    def schema_table(self, request: Request, table: str, count: str | None) -> Response:
        check_parameters(request, SCHEMA_COUNT_PARAMETERS if count else SCHEMA_TABLE_PARAMETERS)
        read = schema_api.table_read(
            table,
            request.parameter("projection"),
            request.parameter("q"),
            self.options.field_grants,
            projection_required=not count,
            sort=None if count else request.parameter("sort"),
            sortdescending=None if count else request.parameter("sortdescending"),
        )
        connection = self.connection()
        order_key = f"{read.table}.rowid"
        if count:
            total = resources.count_rows(connection, source=read.table, where=read.where, parameters=read.parameters)
            return json_response(200, {"count": total})
        offset, limit = self.page_window(request, "schema_table_query")
        select = ", ".join(f"{read.table}.{column}" for column in read.columns) or f"{read.table}.rowid"
        rows = resources.read_page(
            connection,
            self.page_keys,
            select=select,
            source=read.table,
            where=read.where,
            parameters=read.parameters,
            order_key=order_key,
            offset=offset,
            limit=limit,
            order_by=read.order_by,
        )
        records = [schema_api.table_record(read.table, row, read.columns) for row in rows]
        return json_response(200, records_envelope(read.table, records))

    def schema_table_metadata(self, request: Request, table: str) -> Response:
        check_parameters(request, set())
        return json_response(200, schema_api.table_metadata(table, self.options.field_grants))

    def schema_table_row(self, request: Request, table: str, record: str) -> Response:
        """One row by its key (the DCID, or the table's own id): ``{"id", "name", "tables": {table: {...}}}``."""
        check_parameters(request, {"projection"})
        read = schema_api.table_read(table, request.parameter("projection"), None, self.options.field_grants)
        try:
            key = int(record)
        except ValueError:
            raise resources.NotFound(f"{read.table} record {record} not found") from None
        select = ", ".join(f"{read.table}.{column}" for column in read.columns) or f"{read.table}.rowid"
        row = (
            self.connection()
            .execute(
                f"SELECT {select}, {read.table}.rowid AS page_key FROM {read.table} WHERE {read.table}.rowid = ?",
                (key,),
            )
            .fetchone()
        )
        if row is None:
            raise resources.NotFound(f"{read.table} record {record} not found")
        return json_response(200, schema_api.table_record(read.table, row, read.columns))

    def power_query(self, request: Request, name: str, count: str | None) -> Response:
        check_parameters(request, set() if count else {"page", "pagesize"})
        if name != schema_api.GUARDIAN_QUERY:
            raise HttpError(404, f"PowerQuery {name} not found (the sandbox serves {schema_api.GUARDIAN_QUERY})")
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if request.body.strip() and content_type != "application/json":
            raise HttpError(415, "PowerQuery arguments must be sent as application/json")
        students = schema_api.guardian_arguments(request.body)
        select, source, where, parameters = schema_api.guardian_query(students, self.options.field_grants)
        connection = self.connection()
        if count:
            total = resources.count_rows(connection, source=source, where=where, parameters=parameters)
            return json_response(200, {"count": total})
        offset, limit = self.page_window(request, "schema_table_query", zero_means_all=True)
        rows = resources.read_page(
            connection,
            self.page_keys,
            select=select,
            source=source,
            where=where,
            parameters=parameters,
            order_key="gs.rowid",
            offset=offset,
            limit=limit,
        )
        return json_response(200, records_envelope(name, [schema_api.guardian_record(row) for row in rows]))


# The query parameters each call honours. Anything else is refused with a 400 naming it:
# a server that silently ignored, say, ``sort`` or ``order`` would hand a client a result
# it did not ask for. students_to_include / teachers_to_include are accepted on table reads
# because PowerSchool documents them as having no effect for plugins.
V1_LIST_PARAMETERS = {"page", "pagesize", "q", "expansions", "extensions", "sort", "sortdescending"}
V1_COUNT_PARAMETERS = {"q", "expansions", "extensions"}
V1_SINGLE_PARAMETERS = {"expansions", "extensions"}
SCHEMA_TABLE_PARAMETERS = {
    "projection",
    "q",
    "page",
    "pagesize",
    "sort",
    "sortdescending",
    "students_to_include",
    "teachers_to_include",
}
SCHEMA_COUNT_PARAMETERS = {"projection", "q", "students_to_include", "teachers_to_include"}


def check_parameters(request: Request, allowed: set[str]) -> None:
    unsupported = sorted(name for name in request.query if name.lower() not in allowed)
    if unsupported:
        takes = ", ".join(sorted(allowed)) or "no parameters"
        raise HttpError(
            400,
            f"unsupported parameter(s) {', '.join(unsupported)} on {request.method} {request.path}; "
            f"this call takes {takes}",
        )


def records_envelope(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``/ws/schema`` page: ``record`` is always an array, also for one row or none (quirks 1 and 6)."""
    if not records:
        return {"name": name, "record": []}
    return {"name": name, "record": records, "@extensions": ""}


def _expansions(request: Request, parameter: str = "expansions") -> set[str]:
    """The comma-separated names of ``expansions=`` (or ``extensions=``), lower case."""
    raw = ",".join(request.query.get(parameter, []))
    return {item.strip().lower() for item in raw.split(",") if item.strip()}


# -- the HTTP layer ------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PowerSchool"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is closed after this

    def log_message(self, format: str, *args: Any) -> None:  # the app keeps its own request log
        return

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self.send_error(400, "malformed request body framing")
            return
        target = urlsplit(self.path)
        request = Request(self.command, target.path, parse_qs(target.query, keep_blank_values=True), self.headers, body)
        response = self.server.app.handle(request)  # type: ignore[attr-defined]
        if response.reset:
            self._reset()
            return
        if response.delay_seconds:
            time.sleep(response.delay_seconds)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        # Headers and body leave in one write (one TLS record for small answers).
        self._headers_buffer.append(b"\r\n")
        if response.truncate:
            # The promised Content-Length never arrives: the client sees a cut-off body.
            self._headers_buffer.append(response.body[: len(response.body) // 2])
            self.flush_headers()
            self._reset()
            return
        if self.command != "HEAD":
            self._headers_buffer.append(response.body)
        self.flush_headers()

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send a TCP RST: the client sees "connection reset by peer".
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass


class TLSServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threading HTTPS server; each connection's TLS handshake runs in its own thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: PowerSchoolApp, ssl_context: ssl.SSLContext):
        self.app = app
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        # Without TCP_NODELAY, headers and body in separate TLS records meet the client's
        # delayed ACK and every response costs ~40 ms.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            connection.settimeout(_Handler.timeout)
            self.RequestHandlerClass(connection, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            try:
                connection.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that disconnects mid-request is normal under fault injection; stay quiet.
        return


def make_ssl_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


def new_secret() -> str:
    return secrets.token_urlsafe(24)
