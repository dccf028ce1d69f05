"""A local SMTP catcher for the demo and the tests: a real SMTP server (aiosmtpd) that
accepts every message and keeps it, in memory and as ``.eml`` files in a folder.

    python -m sandbox.smtp --port 8025 --mailbox .sandbox/mailbox

Tests use ``running_smtp()``; the Airflow SMTP connection points at it with SSL and
STARTTLS disabled (``{"disable_ssl": true, "disable_tls": true}`` in the extras), as a
local relay needs.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAILBOX = REPO_ROOT / ".sandbox" / "mailbox"


@dataclass
class Mailbox:
    directory: Path | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                name = f"{time.strftime('%Y%m%dT%H%M%S')}-{len(self.messages):04d}.eml"
                (self.directory / name).write_bytes(envelope.content)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise TimeoutError(f"expected {count} message(s), got {len(self.messages)} within {timeout}s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SmtpSandbox:
    host: str
    port: int
    mailbox: Mailbox

    def airflow_connection_uri(self) -> str:
        """The Airflow connection (JSON form) for a local relay: no SSL, no STARTTLS."""
        import json

        return json.dumps(
            {
                "conn_type": "smtp",
                "host": self.host,
                "port": self.port,
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "sis-learning@localhost",
                    "retry_limit": 2,
                    "timeout": 10,
                },
            }
        )


@contextmanager
def running_smtp(port: int | None = None, mailbox_dir: Path | None = None) -> Iterator[SmtpSandbox]:
    mailbox = Mailbox(directory=mailbox_dir)
    if mailbox_dir is not None:
        # Exists from the start: `make airflow` prints it, and a successful run sends nothing.
        mailbox_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpSandbox(host="127.0.0.1", port=port, mailbox=mailbox)
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMTP catcher for the demo")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--mailbox", type=Path, default=DEFAULT_MAILBOX)
    args = parser.parse_args()
    with running_smtp(args.port, args.mailbox) as smtp:
        print(f"SMTP catcher on {smtp.host}:{smtp.port}, messages saved in {args.mailbox}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
