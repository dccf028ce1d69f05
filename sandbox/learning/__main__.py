"""Start the reference Learning server.

    python -m sandbox.learning [--port N] [--domain demo:TOKEN] [--database URL]

Serves HTTPS with a certificate from the sandbox CA (sandbox/tls.py); clients verify
against the CA bundle it prints. Domains come from ``--domain NAME:TOKEN`` (repeatable)
or ``SANDBOX_LEARNING_DOMAINS``; with neither, one domain ``demo`` gets a random token kept
in ``.sandbox/learning/tokens.json`` (mode 0600) so it stays the same across restarts.
Tokens are never printed. ``--write-openapi PATH`` writes the OpenAPI document and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from sandbox.learning.database import DEFAULT_DATABASE_PATH, default_database_url
from sandbox.learning.domains import DOMAINS_ENV, DomainSpecError, new_token, parse_domain_specs, parse_domains_env

DEFAULT_PORT = 8781
PORT_ENV = "SANDBOX_LEARNING_PORT"
GENERATED_TOKENS_PATH = DEFAULT_DATABASE_PATH.parent / "tokens.json"
# The line a supervisor (sandbox/learning/testing.py) waits for; the URL follows it.
LISTENING_PREFIX = "Learning sandbox listening on "


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.learning", description="Reference PowerSchool Learning server"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get(PORT_ENV, DEFAULT_PORT)),
        help=f"port (default {DEFAULT_PORT}; 0 = any free port, printed on start)",
    )
    parser.add_argument(
        "--domain",
        action="append",
        default=[],
        metavar="NAME:TOKEN",
        help=f"a domain (district) and its bearer token; repeatable (or {DOMAINS_ENV}=a:T1,b:T2)",
    )
    parser.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL (default: SANDBOX_LEARNING_DATABASE, else a SQLite file under .sandbox/learning)",
    )
    parser.add_argument("--tls-dir", type=Path, default=None, help="sandbox CA directory (default .sandbox/tls)")
    parser.add_argument(
        "--hostname", action="append", default=[], help="extra name in the certificate (default localhost)"
    )
    parser.add_argument("--no-tls", action="store_true", help="serve plain HTTP (only for debugging)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument(
        "--write-openapi", type=Path, metavar="PATH", help="write the OpenAPI document to PATH and exit"
    )
    return parser.parse_args(argv)


def _generated_domains() -> dict[str, str]:
    """The ``demo`` domain with a token kept on disk (readable by the owner only)."""
    if GENERATED_TOKENS_PATH.exists():
        return json.loads(GENERATED_TOKENS_PATH.read_text())
    GENERATED_TOKENS_PATH.parent.mkdir(parents=True, exist_ok=True)
    domains = {"demo": new_token()}
    descriptor = os.open(GENERATED_TOKENS_PATH, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(domains, handle)
    return domains


def write_openapi(path: Path) -> None:
    from sandbox.learning.app import create_app

    app = create_app({"openapi": new_token()}, "sqlite://")
    path.write_text(json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    if arguments.write_openapi:
        write_openapi(arguments.write_openapi)
        print(f"wrote {arguments.write_openapi}")
        return 0
    try:
        domains = parse_domain_specs(arguments.domain)
        if not domains and os.environ.get(DOMAINS_ENV):
            domains = parse_domains_env(os.environ[DOMAINS_ENV])
    except DomainSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    token_note = ""
    if not domains:
        domains = _generated_domains()
        token_note = f" (tokens in {GENERATED_TOKENS_PATH})"
    database_url = arguments.database or default_database_url()

    import uvicorn

    from sandbox.learning.app import create_app

    app = create_app(domains, database_url)
    listener = socket.socket(socket.AF_INET6 if ":" in arguments.host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((arguments.host, arguments.port))
    except OSError as error:
        print(f"error: cannot listen on {arguments.host}:{arguments.port}: {error.strerror}", file=sys.stderr)
        return 2
    port = listener.getsockname()[1]
    host_in_url = f"[{arguments.host}]" if ":" in arguments.host else arguments.host

    ssl_options: dict[str, str] = {}
    ca_bundle = None
    if not arguments.no_tls:
        from sandbox import tls

        tls_directory = arguments.tls_dir or tls.DEFAULT_TLS_DIR
        ca_bundle = tls.ensure_ca(tls_directory)
        hostnames = list(dict.fromkeys(["localhost", arguments.host, *arguments.hostname]))
        certificate, key = tls.server_certificate(tls_directory, hostnames)
        ssl_options = {"ssl_certfile": str(certificate), "ssl_keyfile": str(key)}
    scheme = "http" if arguments.no_tls else "https"

    print(f"{LISTENING_PREFIX}{scheme}://{host_in_url}:{port}")
    print(f"  domains: {', '.join(sorted(domains))}{token_note}")
    print(f"  database: {make_url(database_url).render_as_string(hide_password=True)}")
    print(f"  CA bundle: {ca_bundle if ca_bundle else '(plain HTTP)'}", flush=True)

    config = uvicorn.Config(
        app, log_level=arguments.log_level, access_log=arguments.log_level == "debug", **ssl_options
    )
    uvicorn.Server(config).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
