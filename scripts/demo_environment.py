"""The embedded default: the sandboxes and the Airflow connections that point the demo
district at them. Used by `make demo`, `make airflow`, the end-to-end tests and the
scale-out scripts, so there is one place that knows how the demo is wired.

Connections are given to Airflow as ``AIRFLOW_CONN_<ID>`` environment variables (JSON
form): nothing is written to the metadata database, and the sandbox credentials are
local, generated values, never real secrets.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_STATE_DIR = REPO_ROOT / "var" / "demo"


@dataclass
class DemoServices:
    powerschool: Any
    learning: Any
    smtp: Any
    learning_token: str
    env: dict[str, str] = field(default_factory=dict)


def connection_env(district_id: str, powerschool: Any, learning: Any, learning_token: str, smtp: Any,
                   smtp_connection_id: str = "smtp_sandbox") -> dict[str, str]:
    """AIRFLOW_CONN_* variables for one district pointed at the sandboxes."""
    return {
        f"AIRFLOW_CONN_POWERSCHOOL_{district_id.upper()}": json.dumps({
            "conn_type": "http",
            "host": powerschool.base_url,
            "login": powerschool.client_id,
            "password": powerschool.client_secret,
            "extra": {"ca_bundle": str(powerschool.ca_bundle)},
        }),
        f"AIRFLOW_CONN_LEARNING_{district_id.upper()}": json.dumps({
            "conn_type": "http",
            "host": learning.base_url,
            "password": learning_token,
            "extra": {"ca_bundle": str(learning.ca_bundle)},
        }),
        f"AIRFLOW_CONN_{smtp_connection_id.upper()}": smtp.airflow_connection_uri(),
    }


@contextmanager
def demo_services(
    dataset: str | Path = "demo",
    state_dir: Path = DEMO_STATE_DIR,
    district_id: str = "demo",
    powerschool_options: dict[str, Any] | None = None,
    learning_database_url: str | None = None,
) -> Iterator[DemoServices]:
    """Start the SIS simulator, the reference Learning server and the SMTP catcher."""
    from sandbox.learning.testing import running_learning
    from sandbox.powerschool.testing import running_powerschool
    from sandbox.smtp import running_smtp

    state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        powerschool = stack.enter_context(running_powerschool(dataset, options=powerschool_options))
        learning = stack.enter_context(running_learning(
            domains={district_id: token},
            database_url=learning_database_url or f"sqlite:///{state_dir / 'learning.sqlite'}",
        ))
        smtp = stack.enter_context(running_smtp(mailbox_dir=state_dir / "mailbox"))
        env = connection_env(district_id, powerschool, learning, token, smtp)
        # The default password is a secret reference in the district YAML (env:DEMO_DEFAULT_PASSWORD);
        # the demo makes a fresh one each time, so no password is ever committed.
        env[f"{district_id.upper()}_DEFAULT_PASSWORD"] = secrets.token_urlsafe(12)
        yield DemoServices(powerschool=powerschool, learning=learning, smtp=smtp, learning_token=token, env=env)


def apply_everyday_changes(powerschool: Any, import_start_year: int = 2025) -> list[str]:
    """Between two imports: a student enrolled in a section, an enrollment dropped, a rename.

    Picks its records from the simulator's live data (deterministically: lowest DCIDs), so
    the second import has a small, known change to send. Returns what it did, in words.
    """
    yearid = import_start_year - 1990
    data = powerschool.store()
    try:
        section = data.query(
            "SELECT s.dcid, s.id, s.schoolid, s.course_number, s.section_number FROM sections s "
            "JOIN terms t ON t.id = s.termid AND t.schoolid = s.schoolid "
            "WHERE t.yearid >= ? AND s.teacher != 0 ORDER BY s.dcid LIMIT 1", (yearid,))[0]
        newcomer = data.query(
            "SELECT dcid, first_name, last_name FROM students WHERE enroll_status = 0 AND schoolid = ? "
            "AND student_web_id IS NOT NULL AND student_web_id != '' "
            "AND id NOT IN (SELECT studentid FROM cc WHERE abs(sectionid) = ?) ORDER BY dcid LIMIT 1",
            (section["schoolid"], section["id"]))[0]
        leaver = data.query(
            "SELECT st.dcid AS student_dcid, st.first_name, st.last_name, s.dcid AS section_dcid "
            "FROM cc JOIN students st ON st.id = cc.studentid JOIN sections s ON s.id = cc.sectionid "
            "WHERE cc.sectionid > 0 AND st.enroll_status = 0 AND s.dcid != ? ORDER BY cc.id LIMIT 1",
            (section["dcid"],))[0]
        renamed = data.query(
            "SELECT dcid, first_name, last_name FROM students WHERE enroll_status = 0 AND dcid NOT IN (?, ?) "
            "ORDER BY dcid DESC LIMIT 1", (newcomer["dcid"], leaver["student_dcid"]))[0]
    finally:
        data.close()
    powerschool.enroll_student(int(newcomer["dcid"]), int(section["dcid"]))
    powerschool.drop_enrollment(int(leaver["student_dcid"]), int(leaver["section_dcid"]))
    new_last_name = f"{renamed['last_name']}-Okafor"
    powerschool.rename("student", int(renamed["dcid"]), last_name=new_last_name)
    return [
        f"enrolled student {newcomer['dcid']} ({newcomer['first_name']} {newcomer['last_name']}) "
        f"in section {section['dcid']} ({section['course_number']}.{section['section_number']})",
        f"dropped student {leaver['student_dcid']} ({leaver['first_name']} {leaver['last_name']}) "
        f"from section {leaver['section_dcid']}",
        f"renamed student {renamed['dcid']}: {renamed['last_name']} -> {new_last_name}",
    ]
