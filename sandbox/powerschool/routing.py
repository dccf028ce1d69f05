"""The simulator's HTTP primitives: a parsed request, a response, a route and the JSON answers.

Below the server and the modules whose routes it serves (admin, powerteacher), so they
import these without importing the server (no import cycle).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json;charset=UTF-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # http.client.HTTPMessage (case-insensitive get)
    body: bytes

    def parameter(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay_seconds: float = 0.0
    reset: bool = False
    truncate: bool = False  # send the headers and half the body, then reset the connection


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, [("Content-Type", JSON_TYPE), *(headers or [])])


def error_response(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return json_response(status, {"message": message}, headers)


class HttpError(Exception):
    """Raised by a handler to answer with an error status and ``{"message": ...}``."""

    def __init__(self, status: int, message: str, payload: Any = None):
        super().__init__(message)
        self.status, self.message, self.payload = status, message, payload

    def response(self) -> Response:
        return json_response(self.status, self.payload if self.payload is not None else {"message": self.message})


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]
    kind: str  # "oauth", "api" or "admin": decides auth, throttle, faults and logging
