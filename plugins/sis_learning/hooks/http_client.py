"""The project's one HTTP client layer: TLS always verified, bounded concurrency, retries.

Every call the pipeline makes to PowerSchool SIS or to PowerSchool Learning goes through
:class:`ApiHttpHook` (a subclass of the HTTP provider's ``HttpHook``). It implements the
rules the source document and ``powerschool-api.md`` impose on any client:

- the server is reached over HTTPS with a verified certificate (the integration
  "requires a valid SSL" on the PowerSchool server): the CA bundle comes from the
  connection extra ``ca_bundle``, else the system store; nothing turns verification off;
- rate limits are infrastructure: a process-wide bound on requests in flight per host,
  and a throttle answer (429 "too many requests, wait N seconds", ``Retry-After``)
  pauses every thread talking to that host, not only the one that was refused;
- transient failures (429, 500, 502, 503, 504, timeouts, connection resets) are retried
  with exponential backoff and full jitter, within a maximum number of retries and a
  maximum total wait; fatal answers raise an :class:`ApiError` subclass whose message
  tells a district admin what to fix, and never contains a secret or a token.

Hooks are configured by an Airflow connection (``host``/``schema``/``port`` -> base URL,
``login``/``password``, extra ``ca_bundle``); connections may come from the metadata
database or from an environment variable ``AIRFLOW_CONN_<ID>`` in JSON form, which is how
tests and the demo define them. For tests and scripts, :meth:`ApiHttpHook.from_settings`
builds a hook from plain values with no Airflow metadata database at all.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import requests
from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk import Connection
from requests.adapters import HTTPAdapter

# Statuses that mean "not now" rather than "never": retried with backoff.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses a non-idempotent request may still retry: the server refused before acting.
REFUSED_BEFORE_PROCESSING = frozenset({429, 503})
# Query parameters whose value must never appear in an error message or a log line.
SECRET_PARAMETER_HINTS = ("token", "secret", "password", "key", "auth")
# PowerSchool's throttle message: "too many requests, wait 2 seconds".
WAIT_HINT_PATTERN = re.compile(r"wait\s+(\d+(?:\.\d+)?)\s*(?:seconds?|secs?|s)\b", re.IGNORECASE)


# --------------------------------------------------------------------------- errors


# One module for the pipeline's errors (sis_learning.exceptions); re-exported here.
from sis_learning.exceptions import (  # noqa: E402
    ApiConfigurationError,
    ApiError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RetriesExhaustedError,
    TlsVerificationError,
    UnexpectedResponseError,
    ValidationFailedError,
)
from sis_learning.exceptions import FatalApiError as FatalApiError  # noqa: E402 - re-exported

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a transient failure (full-jitter exponential backoff)."""

    max_retries: int = 6
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0
    max_total_wait_seconds: float = 300.0

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^n)] (spreads retrying clients apart)."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * (2**retry_number))
        return random.uniform(0, ceiling)


@dataclass
class RequestStats:
    """Requests made by one hook, per path kind (ids replaced by ``{id}``), for the metrics."""

    requests: Counter
    retries: Counter
    waited_seconds: float = 0.0
    throttled: int = 0

    def __init__(self) -> None:
        self.requests = Counter()
        self.retries = Counter()
        self._lock = threading.Lock()

    def record_request(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1

    def record_retry(self, kind: str, waited: float, throttled: bool) -> None:
        with self._lock:
            self.retries[kind] += 1
            self.waited_seconds += waited
            self.throttled += int(throttled)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "total_requests": sum(self.requests.values()),
                "retries": dict(self.retries),
                "throttled": self.throttled,
                "waited_seconds": round(self.waited_seconds, 3),
            }


def path_kind(path: str) -> str:
    """``/ws/v1/school/12/student`` -> ``/ws/v1/school/{id}/student`` (for request counts)."""
    parts = [("{id}" if part.lstrip("-").isdigit() else part) for part in path.split("?")[0].split("/")]
    return "/".join(parts).rstrip("/") or "/"


def redact_url(url: str) -> str:
    """The URL with any secret-looking query parameter's value replaced by ``***``."""
    split = urlsplit(url)
    if not split.query:
        return url
    pairs = [
        (name, "***" if any(hint in name.lower() for hint in SECRET_PARAMETER_HINTS) else value)
        for name, value in parse_qsl(split.query, keep_blank_values=True)
    ]
    return split._replace(query=urlencode(pairs, safe=",=;*()")).geturl()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_wait_hint(text: str | None) -> float | None:
    """PowerSchool's throttle body says "... wait N seconds": the N, when present."""
    if not text:
        return None
    match = WAIT_HINT_PATTERN.search(text)
    return float(match.group(1)) if match else None


# --------------------------------------------------------------------------- concurrency


class HostLimiter:
    """Process-wide bound on requests in flight to one host, and a shared throttle response.

    A throttle answer pauses every thread of the process that talks to the host (a
    plugin's "minimum time between requests" is per plugin, not per thread), and from
    then on request starts are spaced apart: the spacing doubles on each throttle answer
    (from 50 ms up to 2 s) and shrinks by 1% on each success, so a client settles just
    under the server's limit instead of stampeding back after every pause.
    """

    MIN_SPACING_SECONDS = 0.05
    MAX_SPACING_SECONDS = 2.0
    SPACING_DECAY = 0.99
    THROTTLE_BURST_SECONDS = 0.5

    def __init__(self, limit: int) -> None:
        self._condition = threading.Condition()
        self._limit = max(1, int(limit))
        self._in_flight = 0
        self._resume_at = 0.0
        self._spacing = 0.0
        self._last_start = 0.0
        self._throttled_at = -1e9
        self.peak_in_flight = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def spacing_seconds(self) -> float:
        return self._spacing

    def set_limit(self, limit: int) -> None:
        with self._condition:
            self._limit = max(1, int(limit))
            self._condition.notify_all()

    def pause_until(self, monotonic_deadline: float) -> None:
        with self._condition:
            self._resume_at = max(self._resume_at, monotonic_deadline)

    def note_throttled(self) -> None:
        with self._condition:
            now = time.monotonic()
            # The refusals of one burst arrive together: they raise the spacing once.
            if now - self._throttled_at >= self.THROTTLE_BURST_SECONDS:
                self._spacing = min(self.MAX_SPACING_SECONDS, max(self.MIN_SPACING_SECONDS, self._spacing * 2))
                self._throttled_at = now

    def note_success(self) -> None:
        if self._spacing:
            with self._condition:
                self._spacing *= self.SPACING_DECAY
                if self._spacing < 0.001:
                    self._spacing = 0.0

    def acquire(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                wait_for = max(self._resume_at - now, self._last_start + self._spacing - now)
                if wait_for <= 0 and self._in_flight < self._limit:
                    break
                self._condition.wait(timeout=wait_for if wait_for > 0 else None)
            self._in_flight += 1
            self._last_start = time.monotonic()
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)

    def release(self) -> None:
        with self._condition:
            self._in_flight -= 1
            self._condition.notify()

    def __enter__(self) -> HostLimiter:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


_LIMITERS: dict[str, HostLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(host: str, limit: int) -> HostLimiter:
    """The limiter of ``host`` (``name:port``); the most recently configured limit wins."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(host)
        if limiter is None:
            limiter = _LIMITERS[host] = HostLimiter(limit)
        elif limiter.limit != limit:
            limiter.set_limit(limit)
        return limiter


# --------------------------------------------------------------------------- the hook


class ApiHttpHook(HttpHook):
    """Base hook for an HTTPS JSON API: see the module docstring for the rules it keeps.

    Subclasses set ``service_name`` (used in messages), add authentication by overriding
    :meth:`auth_headers` and :meth:`refresh_credentials`, and may specialise
    :meth:`describe_error` to tell an admin what to fix.

    Args: ``http_conn_id`` the Airflow connection (host, login, password, extra
    ``ca_bundle``); ``connection`` a Connection object used instead of looking the id up
    (tests, the benchmark); ``max_concurrent_requests`` requests in flight at once from this
    hook (and the host limiter's starting limit); ``retry_policy`` retries, backoff and
    Retry-After handling (default ``RetryPolicy()``); ``timeout_seconds`` per request.
    """

    conn_name_attr = "http_conn_id"
    default_conn_name = "http_default"
    conn_type = "http"
    hook_name = "HTTPS API (sis_learning)"
    service_name: ClassVar[str] = "The API server"
    retry_statuses: ClassVar[frozenset[int]] = RETRYABLE_STATUSES
    default_headers: ClassVar[dict[str, str]] = {"Accept": "application/json"}

    def __init__(
        self,
        http_conn_id: str = default_conn_name,
        *,
        connection: Connection | None = None,
        max_concurrent_requests: int = 4,
        retry_policy: RetryPolicy | None = None,
        timeout_seconds: float = 60.0,
    ) -> None:
        super().__init__(method="GET", http_conn_id=http_conn_id)
        if max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be at least 1")
        self._connection = connection
        self.max_concurrent_requests = max_concurrent_requests
        self.retry_policy = retry_policy or RetryPolicy()
        self.timeout_seconds = timeout_seconds
        self.stats = RequestStats()
        self._thread_local = threading.local()
        self._configured = False
        self._configure_lock = threading.Lock()
        self._verify: str | bool = True
        self._limiter: HostLimiter | None = None

    # ---- construction without an Airflow metadata database

    @classmethod
    def connection_from_settings(
        cls,
        base_url: str,
        login: str | None = None,
        password: str | None = None,
        ca_bundle: str | Path | None = None,
        conn_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Connection:
        extras = dict(extra or {})
        if ca_bundle is not None:
            extras["ca_bundle"] = str(ca_bundle)
        return Connection(
            conn_id=conn_id or cls.default_conn_name,
            conn_type=cls.conn_type,
            host=base_url.rstrip("/"),
            login=login,
            password=password,
            extra=json.dumps(extras),
        )

    @classmethod
    def from_settings(
        cls,
        base_url: str,
        login: str | None = None,
        password: str | None = None,
        ca_bundle: str | Path | None = None,
        **hook_options: Any,
    ) -> ApiHttpHook:
        """A hook from plain values (tests, scripts): no Airflow connection lookup at all."""
        connection = cls.connection_from_settings(base_url, login, password, ca_bundle)
        return cls(connection=connection, **hook_options)

    # ---- connection

    @property
    def conn_id(self) -> str:
        return getattr(self, self.conn_name_attr, None) or self.http_conn_id

    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self.get_connection(self.conn_id)
        return self._connection

    def _configure(self) -> None:
        """Resolve the base URL, the CA bundle and the host limiter once (thread-safe)."""
        if self._configured:
            return
        with self._configure_lock:
            if self._configured:
                return
            connection = self.connection()
            if not connection.host:
                raise ApiConfigurationError(
                    None,
                    f"Airflow connection {self.conn_id!r} has no host: set it to the server's address "
                    f"(for example https://district.powerschool.com).",
                    "",
                )
            self._set_base_url(connection)
            split = urlsplit(self.base_url)
            if split.scheme != "https":
                raise ApiConfigurationError(
                    None,
                    f"Airflow connection {self.conn_id!r} points to {split.scheme}://{split.netloc}: "
                    f"{self.service_name} must be reached over HTTPS (set schema to https or use an "
                    f"https:// host).",
                    self.base_url,
                )
            extra = connection.extra_dejson or {}
            for name in ("verify", "verify_ssl"):
                if name in extra and str(extra[name]).strip().lower() in {"false", "0", "no", "off"}:
                    raise ApiConfigurationError(
                        None,
                        f"Airflow connection {self.conn_id!r} sets extra {name!r} to false: certificate "
                        f"verification cannot be turned off. Put the server's CA certificate in a file "
                        f"and name it in the extra 'ca_bundle' instead.",
                        self.base_url,
                    )
            ca_bundle = extra.get("ca_bundle")
            if ca_bundle:
                if not Path(ca_bundle).is_file():
                    raise ApiConfigurationError(
                        None,
                        f"Airflow connection {self.conn_id!r}: the CA bundle file {ca_bundle!r} (extra "
                        f"'ca_bundle') does not exist on this worker.",
                        self.base_url,
                    )
                self._verify = str(ca_bundle)
            else:
                self._verify = True  # the system trust store
            self._limiter = limiter_for(split.netloc, self.max_concurrent_requests)
            self._configured = True

    @property
    def limiter(self) -> HostLimiter:
        self._configure()
        assert self._limiter is not None
        return self._limiter

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """This thread's ``requests.Session`` (one per thread: sessions are not thread-safe)."""
        self._configure()
        session = getattr(self._thread_local, "session", None)
        if session is None:
            session = requests.Session()
            # Proxies from the environment stay honoured; credentials never come from ~/.netrc:
            # a session-level auth (one that changes nothing) stops requests from looking the
            # host up in ~/.netrc on every request, which would replace our Authorization
            # header with the file's login (and costs a file lookup per request).
            session.trust_env = True
            session.auth = _keep_request_auth
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, self.max_concurrent_requests))
            session.mount("https://", adapter)
            session.headers.update(self.default_headers)
            self._thread_local.session = session
        if headers:
            session.headers.update(headers)
        return session

    def close(self) -> None:
        session = getattr(self._thread_local, "session", None)
        if session is not None:
            session.close()
            self._thread_local.session = None

    # ---- extension points for subclasses

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request (none by default)."""
        return {}

    def refresh_credentials(self, rejected_headers: Mapping[str, str]) -> bool:
        """Called on a 401; return True to retry the request once with new credentials."""
        return False

    def describe_error(
        self, status: int, method: str, path: str, message: str, errors: list[dict[str, Any]]
    ) -> tuple[type[ApiError], str]:
        """The exception class and the admin-facing message for a fatal answer."""
        where = f"{method} {path}"
        detail = f": {message}" if message else ""
        if status == 401:
            return AuthenticationError, (
                f"{self.service_name} refused the credentials of Airflow connection {self.conn_id!r} "
                f"(HTTP 401 on {where}){detail}. Check the connection's login and password."
            )
        if status == 403:
            return PermissionDeniedError, (
                f"{self.service_name} denied permission for {where} (HTTP 403){detail}. The account in "
                f"Airflow connection {self.conn_id!r} needs access to it."
            )
        if status == 404:
            return NotFoundError, f"{self.service_name} has no {path} (HTTP 404 on {where}){detail}."
        if status in (409, 422) or errors or message.lower().startswith("validation failed"):
            fields = ", ".join(
                f"{error.get('resource', '?')}.{error.get('field', '?')} ({error.get('code', '?')})" for error in errors
            )
            return ValidationFailedError, (
                f"{self.service_name} refused {where} (HTTP {status}){detail}"
                + (f"; fields: {fields}" if fields else "")
            )
        return ApiError, f"{self.service_name} answered HTTP {status} to {where}{detail}."

    # ---- the one request method

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        expected: Iterable[int] = (200,),
        idempotent: bool = True,
        kind: str | None = None,
        authenticate: bool = True,
    ) -> requests.Response:
        """Send one request, retrying transient failures; return the response or raise.

        ``path`` is relative to the connection's base URL. ``expected`` lists the statuses
        that count as success. ``idempotent=False`` (e.g. creating a resource) retries only
        answers that prove the server did nothing (429, 503, connection refused).
        """
        self._configure()
        method = method.upper()
        expected = frozenset(expected)
        kind = kind or f"{method} {path_kind(path)}"
        url = self.url_from_endpoint(path)
        policy = self.retry_policy
        retries = 0
        waited = 0.0
        credentials_refreshed = False
        last_problem = ""
        while True:
            request_headers = dict(headers or {})
            sent_auth = self.auth_headers() if authenticate else {}
            request_headers.update(sent_auth)
            hint: float | None = None
            retryable = False
            response: requests.Response | None = None
            session = self.get_conn()
            self.stats.record_request(kind)
            try:
                with self.limiter:
                    response = session.request(
                        method,
                        url,
                        params=params,
                        json=json,
                        data=data,
                        headers=request_headers,
                        timeout=self.timeout_seconds,
                        verify=self._verify,
                        allow_redirects=False,
                    )
            except requests.exceptions.SSLError as error:
                raise TlsVerificationError(
                    None,
                    f"Could not verify the TLS certificate of {self.service_name} at {urlsplit(url).netloc} "
                    f"({type(error).__name__}). If the server uses a private certificate authority, put its "
                    f"CA certificate in a file and name it in the extra 'ca_bundle' of Airflow connection "
                    f"{self.conn_id!r}.",
                    redact_url(url),
                    method=method,
                ) from None
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,  # the connection broke mid-body
            ) as error:
                # A connect failure means nothing was sent; a read timeout may have been processed.
                sent_nothing = isinstance(error, requests.exceptions.ConnectTimeout) or (
                    isinstance(error, requests.exceptions.ConnectionError)
                    and not isinstance(error, requests.exceptions.ReadTimeout)
                    and "refused" in str(error).lower()
                )
                retryable = idempotent or sent_nothing
                last_problem = f"{type(error).__name__}"
                if not retryable:
                    raise ApiError(
                        None,
                        f"{self.service_name} did not answer {method} {path_kind(path)} ({last_problem}); the "
                        f"request is not safe to repeat automatically, so check whether it took effect.",
                        redact_url(url),
                        method=method,
                    ) from None
            if response is not None:
                status = response.status_code
                if status in expected:
                    self.limiter.note_success()
                    return response
                body_message, errors = _error_body(response)
                if status == 401 and authenticate and not credentials_refreshed:
                    credentials_refreshed = True
                    if self.refresh_credentials(sent_auth):
                        continue
                if status in self.retry_statuses and (idempotent or status in REFUSED_BEFORE_PROCESSING):
                    retryable = True
                    hint = parse_retry_after(response.headers.get("Retry-After"))
                    if hint is None and status in (429, 503):
                        hint = parse_wait_hint(body_message or response.text[:500])
                    last_problem = f"HTTP {status}" + (f" {body_message}" if body_message else "")
                    response.close()
                else:
                    error_class, message = self.describe_error(status, method, path.split("?")[0], body_message, errors)
                    raise error_class(status, message, redact_url(url), method=method, errors=errors)
            # retryable failure: back off, or give up within the budget
            delay = policy.backoff(retries)
            if hint is not None:
                delay = hint + random.uniform(0, policy.base_delay_seconds)
            if retries >= policy.max_retries or waited + delay > policy.max_total_wait_seconds:
                raise RetriesExhaustedError(
                    response.status_code if response is not None else None,
                    f"{self.service_name} kept failing {method} {path_kind(path)}: {retries + 1} attempts over "
                    f"{waited:.1f}s of waiting, last answer {last_problem}. This is usually temporary (the "
                    f"task can be retried); if it persists check the server's health and its API request "
                    f"limits.",
                    redact_url(url),
                    method=method,
                )
            if hint is not None:
                # A throttle hint applies to the plugin as a whole: pause every thread.
                self.limiter.pause_until(time.monotonic() + delay)
            if response is not None and response.status_code == 429:
                self.limiter.note_throttled()
            self.log.warning(
                "%s %s: %s; retry %d/%d in %.2fs",
                method,
                path_kind(path),
                last_problem,
                retries + 1,
                policy.max_retries,
                delay,
            )
            self.stats.record_retry(kind, delay, throttled=hint is not None)
            time.sleep(delay)
            waited += delay
            retries += 1

    def request_json(
        self,
        method: str,
        path: str,
        *,
        envelope: Callable[[Any], bool] | None = None,
        documented: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """:meth:`request`, then the JSON body (a clear error when the body is not JSON).

        With ``envelope``, the body must be what the API documents for this URL
        (``documented`` says what, for the message): a 200 with an empty body, a bare
        ``{"message": ...}``, an HTML page or another resource's envelope raises
        :class:`UnexpectedResponseError` naming the URL and what came back, instead of
        being read as an empty listing.
        """
        response = self.request(method, path, **kwargs)
        content = response.content
        url = redact_url(response.url or path)
        if not content:
            if envelope is not None:
                raise UnexpectedResponseError(
                    response.status_code,
                    f"{self.service_name} answered {method} {url} with {response.status_code} "
                    f"and an empty body, not {documented or 'the documented JSON envelope'}.",
                    url,
                    method=method,
                )
            return None
        try:
            # orjson parses a page several times faster than the standard library (a large
            # part of extract's CPU); what it refuses (NaN, integers past 64 bits) the
            # standard library still reads.
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            try:
                body = response.json()
            except ValueError:
                raise UnexpectedResponseError(
                    response.status_code,
                    f"{self.service_name} answered {method} {url} with {describe_body(None, response)}"
                    + (f", not {documented}." if documented else "."),
                    url,
                    method=method,
                ) from None
        if envelope is not None and not envelope(body):
            raise UnexpectedResponseError(
                response.status_code,
                f"{self.service_name} answered {method} {url} with {response.status_code} and "
                f"{describe_body(body, response)}, not {documented or 'the documented JSON envelope'}.",
                url,
                method=method,
            )
        return body

    def test_connection(self) -> tuple[bool, str]:
        try:
            self._configure()
        except ApiError as error:
            return False, str(error)
        return True, f"Configured for {self.base_url}"


def describe_body(body: Any, response: requests.Response | None = None) -> str:
    """What came back, for an error message: its shape and keys, never its row values."""
    if body is None and response is not None:
        kind = response.headers.get("Content-Type", "unknown content type")
        text = response.content[:200].lstrip().lower()
        what = "an HTML page" if text.startswith((b"<!doctype html", b"<html")) else "a body that is not JSON"
        if what != "an HTML page" and text[:1] in (b"{", b"["):
            what = "a JSON body cut short (not valid JSON)"
        return f"{what} ({kind}, {len(response.content)} bytes)"
    if isinstance(body, dict):
        keys = ", ".join(sorted(str(key) for key in body)[:8]) or "none"
        message = body.get("message")
        said = f" saying {message[:200]!r}" if isinstance(message, str) and message else ""
        return f"a JSON object with keys {keys}{said}"
    if isinstance(body, list):
        return f"a JSON array of {len(body)} item(s)"
    return f"a JSON {type(body).__name__}"


def _keep_request_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """The session's auth: the request keeps the headers the hook gave it."""
    return request


def _error_body(response: requests.Response) -> tuple[str, list[dict[str, Any]]]:
    """The ``message`` and ``errors`` of an error body (PowerSchool and Learning alike)."""
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip()
        return (text[:300] if text and not text.lstrip().startswith("<") else ""), []
    if not isinstance(body, dict):
        return "", []
    message = body.get("message") or body.get("detail") or body.get("error_description") or body.get("error") or ""
    if not isinstance(message, str):
        message = json.dumps(message)[:300]
    errors = body.get("errors") or []
    if isinstance(errors, dict):
        errors = [errors]
    return message, [error for error in errors if isinstance(error, dict)]
