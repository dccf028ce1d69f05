"""A tiny HTTPS server whose answers a test scripts, for the HTTP client layer's tests.

The PowerSchool sandbox covers the API; this server covers what the sandbox cannot be
asked to do on cue: reset a connection, hang past the client's timeout, count requests
in flight. It serves real TLS with a certificate from ``sandbox.tls``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sandbox.tls import ensure_ca, server_certificate


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    reset_connection: bool = False
    truncate_body: bool = False  # promise the whole body, send half of it, hang up


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Script = Callable[[Seen, int], Answer]


class ScriptedServer:
    def __init__(self, script: Script, tls_directory: Path) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self.ca_bundle = str(ensure_ca(tls_directory))
        certificate, key = server_certificate(tls_directory, ("127.0.0.1",))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers), self.rfile.read(length) if length else b"")
                with server._lock:
                    server.seen.append(seen)
                    number = len(server.seen)
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    answer = server.script(seen, number)
                    if answer.delay_seconds:
                        time.sleep(answer.delay_seconds)
                    if answer.reset_connection:
                        self.connection.shutdown(2)
                        self.close_connection = True
                        return
                    payload = (
                        b""
                        if answer.body is None
                        else (
                            answer.body.encode() if isinstance(answer.body, str) else json.dumps(answer.body).encode()
                        )
                    )
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    if answer.truncate_body:
                        self.end_headers()
                        self.wfile.write(payload[: len(payload) // 2])
                        self.wfile.flush()
                        self.connection.shutdown(2)
                        self.close_connection = True
                        return
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            do_GET = do_POST = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.base_url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def scripted_server(script: Script, tls_directory: Path) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, tls_directory).start()
    try:
        yield server
    finally:
        server.stop()
