"""The SIS simulator and the SMTP catcher as compose services (the local trial only).

Their own command lines are made for one machine: the SMTP catcher binds 127.0.0.1 and
the SIS simulator's certificate names only localhost. In the compose stack the Airflow
workers reach them from other containers as ``sandbox-powerschool`` and ``sandbox-smtp``,
so this entry point adds exactly that (listen on all interfaces, put the service's host
name in the certificate) and otherwise runs the sandboxes' own code. The reference
Learning server takes ``--host``/``--hostname`` itself and needs no wrapper. When the
simulator and the catcher grow those options, the compose file calls them directly and
this file goes.

    python docker/sandbox_services.py powerschool --dataset demo --port 8443
    python docker/sandbox_services.py smtp --port 8025 --mailbox /opt/airflow/.sandbox/mailbox

``SANDBOX_HOSTNAMES`` (comma-separated) lists the extra certificate names;
``SANDBOX_BIND_HOST`` the address to listen on (all interfaces unless set).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def extra_hostnames() -> list[str]:
    return [name.strip() for name in os.environ.get("SANDBOX_HOSTNAMES", "").split(",") if name.strip()]


def bind_host() -> str:
    """All interfaces (a container is reached from the other services), or ``SANDBOX_BIND_HOST``
    (127.0.0.1 when every service shares the host's network: docker/compose.host-network.yaml)."""
    return os.environ.get("SANDBOX_BIND_HOST") or "0.0.0.0"  # noqa: S104


def powerschool(argv: list[str]) -> int:
    from sandbox import tls
    from sandbox.powerschool.__main__ import main

    issue = tls.server_certificate

    def server_certificate(directory=tls.DEFAULT_TLS_DIR, hostnames=tls.DEFAULT_HOSTNAMES):
        return issue(directory, [*hostnames, *extra_hostnames()])

    # The simulator looks the function up on the module at start, so this reaches it.
    tls.server_certificate = server_certificate
    return main(["--host", bind_host(), *argv])


def smtp(argv: list[str]) -> int:
    from aiosmtpd.controller import Controller

    from sandbox.smtp import DEFAULT_MAILBOX, Mailbox

    parser = argparse.ArgumentParser(prog="sandbox_services.py smtp")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--mailbox", type=Path, default=DEFAULT_MAILBOX)
    arguments = parser.parse_args(argv)
    controller = Controller(Mailbox(directory=arguments.mailbox), hostname=bind_host(), port=arguments.port)
    controller.start()
    print(f"SMTP catcher on {bind_host()}:{arguments.port}, messages saved in {arguments.mailbox}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    services = {"powerschool": powerschool, "smtp": smtp}
    if len(sys.argv) < 2 or sys.argv[1] not in services:
        print(f"usage: {sys.argv[0]} {{{','.join(services)}}} [options]", file=sys.stderr)
        sys.exit(2)
    sys.exit(services[sys.argv[1]](sys.argv[2:]))
