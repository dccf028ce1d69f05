"""The embedded default: the sandboxes and the Airflow connections that point the demo
district at them. Used by `make demo`, `make airflow`, the end-to-end tests and the
scale-out scripts, so there is one place that knows how the demo is wired.

Connections are given to Airflow as ``AIRFLOW_CONN_<ID>`` environment variables (JSON
form): nothing is written to the metadata database, and the sandbox credentials are
local, generated values, never real secrets.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_STATE_DIR = REPO_ROOT / "var" / "demo"
# The staging databases of this checkout: `make airflow` (and the DAGs' default), `make demo`.
LOCAL_STAGING_FILES = (REPO_ROOT / "var" / "staging.sqlite", DEMO_STATE_DIR / "staging.sqlite")


def local_staging_url() -> str:
    """The staging database a person at this checkout means (`make explain`, `make retention`).

    ``SIS_LEARNING_STAGING_URL`` when set; else whichever of var/staging.sqlite (`make airflow`)
    and var/demo/staging.sqlite (`make demo`) holds the latest import run (started or finished):
    a person who just ran the demo means the demo's. A file's modification time is only the
    tie-break (no run in either): reading a SQLite file in WAL mode can rewrite it (the last
    connection folds the write-ahead log back in), so "written last" moved when a person merely
    queried the other file.
    """
    if os.environ.get("SIS_LEARNING_STAGING_URL"):
        return os.environ["SIS_LEARNING_STAGING_URL"]
    files = [path for path in LOCAL_STAGING_FILES if path.exists()]
    return f"sqlite:///{max(files, key=_latest_activity) if files else LOCAL_STAGING_FILES[0]}"


def _latest_activity(path: Path) -> tuple[str, float]:
    """(the latest run's start or finish as stored, "" for none; the file's or its log's mtime)."""
    written = max(p.stat().st_mtime for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    try:
        # Read-only: this connection never checkpoints, so the look changes neither file's time.
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            latest = connection.execute(
                "SELECT max(max(coalesce(finished_at, '')), max(started_at)) FROM sync_runs"
            ).fetchone()[0]
    except sqlite3.Error:  # not a staging database yet (no sync_runs), or unreadable
        latest = None
    return (latest or "", written)


def missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite staging URL that does not exist (opening it would create an empty one)."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None if path.exists() else path


@dataclass
class DemoServices:
    powerschool: Any
    learning: Any
    smtp: Any
    learning_token: str
    env: dict[str, str] = field(default_factory=dict)


def connection_env(
    district_id: str,
    powerschool: Any,
    learning: Any,
    learning_token: str,
    smtp: Any,
    smtp_connection_id: str = "smtp_sandbox",
) -> dict[str, str]:
    """AIRFLOW_CONN_* variables for one district pointed at the sandboxes."""
    return {
        f"AIRFLOW_CONN_POWERSCHOOL_{district_id.upper()}": json.dumps(
            {
                "conn_type": "http",
                "host": powerschool.base_url,
                "login": powerschool.client_id,
                "password": powerschool.client_secret,
                "extra": {"ca_bundle": str(powerschool.ca_bundle)},
            }
        ),
        f"AIRFLOW_CONN_LEARNING_{district_id.upper()}": json.dumps(
            {
                "conn_type": "http",
                "host": learning.base_url,
                "password": learning_token,
                "extra": {"ca_bundle": str(learning.ca_bundle)},
            }
        ),
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
        learning = stack.enter_context(
            running_learning(
                domains={district_id: token},
                database_url=learning_database_url or f"sqlite:///{state_dir / 'learning.sqlite'}",
            )
        )
        smtp = stack.enter_context(running_smtp(mailbox_dir=state_dir / "mailbox"))
        env = connection_env(district_id, powerschool, learning, token, smtp)
        # The default password is a secret reference in the district YAML (env:DEMO_DEFAULT_PASSWORD);
        # the demo makes a fresh one each time, so no password is ever committed.
        env[f"{district_id.upper()}_DEFAULT_PASSWORD"] = secrets.token_urlsafe(12)
        yield DemoServices(powerschool=powerschool, learning=learning, smtp=smtp, learning_token=token, env=env)


def apply_everyday_changes(powerschool: Any, learning: Any, domain: str = "demo") -> list[str]:
    """Between two imports: a student enrolled in a class, another dropped from it, a rename.

    Picks its records among what the first import put in Learning (deterministically: the
    lowest ids), so each change is one the second import must carry over: one roster row
    created, one removed, one user updated. Returns what it did, in words.
    """
    classes = learning.classes(domain)
    users = learning.users(domain)  # keyed "S:<dcid>": a user is identified by type and DCID
    rosters = learning.rosters(domain)  # (class_id, "S:<dcid>") -> role
    students = {key: user for key, user in users.items() if user.get("user_type") == "S"}

    def number(value: str) -> int:
        value = str(value).rsplit(":", 1)[-1]
        return int(value) if value.isdigit() else 0

    in_class_of: dict[str, list[str]] = {}
    for (c, user), role in rosters.items():
        if role == "student":
            in_class_of.setdefault(c, []).append(user)

    def candidates(class_id: str) -> list[str]:
        """Students of the class's school who are not in it (one of them is enrolled)."""
        organization = classes[class_id].get("organization_id")
        return [
            key
            for key, user in students.items()
            if user.get("organization_id") == organization and key not in in_class_of[class_id]
        ]

    # The lowest class that has a student to drop and a schoolmate to enroll (a district where
    # few classes reached Learning may have none: then there is nothing to change, said so).
    usable = sorted((key for key in in_class_of if key in classes and candidates(key)), key=number)
    if not usable or len(students) < 3:
        return ["no class in Learning has a student to drop and another to enroll: no everyday changes made"]
    class_id = usable[0]
    in_class = sorted(in_class_of[class_id], key=number)
    leaver = in_class[0]
    newcomer = min(candidates(class_id), key=number)
    renamed = max((key for key in students if key not in (leaver, newcomer)), key=number)
    powerschool.enroll_student(number(newcomer), number(class_id))
    powerschool.drop_enrollment(number(leaver), number(class_id))
    old_name = students[renamed].get("last_name")
    new_last_name = f"{old_name}-Okafor"
    powerschool.rename("student", number(renamed), last_name=new_last_name)

    def name(key: str) -> str:
        return f"{students[key].get('first_name')} {students[key].get('last_name')}"

    return [
        f"enrolled student {number(newcomer)} ({name(newcomer)}) in class {class_id} ({classes[class_id].get('name')})",
        f"dropped student {number(leaver)} ({name(leaver)}) from class {class_id}",
        f"renamed student {number(renamed)}: {old_name} -> {new_last_name}",
    ]


def seed_existing_users(
    learning: Any, domain: str, organizations: list[dict[str, Any]], sis_users: list[dict[str, Any]], csv_path: Path
) -> dict[str, list[int]]:
    """A Learning domain as a district has it before the integration, for the Import ID transition.

    From the SIS users an import would send (``sis_users``: a preview run's learning_users),
    deterministically (lowest ids): the schools; three students made by hand with their
    Google email but another login (matched by SSO email); two teachers made by hand with
    their SIS login and no SSO email (matched by login); two parents an earlier integration
    left with its own Import IDs, and the district's CSV mapping them (matched by the CSV);
    two former teachers who are not in the SIS (unmatched); and a student whose Google
    email is one student's while the CSV names another (ambiguous). Returns the
    ``learning_id``s per kind; writes the CSV to ``csv_path``.
    """
    learning.upsert(
        domain,
        "organizations",
        [{"organization_id": row["organization_id"], "name": row["name"]} for row in organizations],
    )

    def number(row: dict[str, Any]) -> int:
        return int(row["external_id"]) if str(row["external_id"]).isdigit() else 0

    def of_type(user_type: str, sso: bool | None = None) -> list[dict[str, Any]]:
        rows = [
            row
            for row in sis_users
            if row["user_type"] == user_type and (sso is None or bool(row.get("sso_email_address")) == sso)
        ]
        return sorted(rows, key=number)

    def made(**fields: Any) -> int:
        return learning.create_user_by_hand(domain, **fields)["learning_id"]

    kinds: dict[str, list[int]] = {"sso_email": [], "login": [], "district_csv": [], "unmatched": [], "ambiguous": []}
    students = of_type("S", sso=True)
    for index, row in enumerate(students[:3]):
        kinds["sso_email"].append(
            made(
                user_type="S",
                first_name=row["first_name"],
                last_name=row["last_name"],
                login=f"before.integration.s{index}",
                email=row["sso_email_address"],
                organization_id=row["organization_id"],
                authentication_type="google",
            )
        )
    for row in of_type("T")[:2]:
        kinds["login"].append(
            made(
                user_type="T",
                first_name=row["first_name"],
                last_name=row["last_name"],
                login=row["login"],
                email=None,
                organization_id=row["organization_id"],
            )
        )
    lines = ["user_type,old_id,new_id"]
    for index, row in enumerate(of_type("P")[:2]):
        old_id = f"legacy-p{index}"
        kinds["district_csv"].append(
            made(
                user_type="P",
                first_name=row["first_name"],
                last_name=row["last_name"],
                login=f"legacy.parent{index}",
                external_id=old_id,
                organization_id=row["organization_id"],
            )
        )
        lines.append(f"P,{old_id},{row['external_id']}")
    first_school = organizations[0]["organization_id"]
    for index in range(2):
        kinds["unmatched"].append(
            made(
                user_type="T",
                first_name="Former",
                last_name=f"Teacher{index}",
                login=f"former.teacher{index}",
                organization_id=first_school,
            )
        )
    x, z = students[3], students[4]
    kinds["ambiguous"].append(
        made(
            user_type="S",
            first_name=x["first_name"],
            last_name=x["last_name"],
            login="before.integration.mixed",
            email=x["sso_email_address"],
            organization_id=x["organization_id"],
        )
    )
    lines.append(f"S,before.integration.mixed,{z['external_id']}")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text("\n".join(lines) + "\n")
    return kinds
