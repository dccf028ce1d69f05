"""The JSON fixture format: a hand-written district, modelled on the PowerSchool SIS tables.

A fixture is one JSON object: an optional ``"district"`` object (district_name,
district_timezone, google_domains, office365_domains, import_start_year, powerschool_version)
and one key per SIS table of docs/architecture.md ("The PowerSchool data model the sandbox
serves"), each a list of rows with lower-case column names. Columns left out are null;
``teachers.school_affiliations`` (a list of school numbers) defaults to the home school.
docs/sandbox-powerschool.md documents every table and column with an example.

``load_fixture`` validates and writes a fixture into a dataset file; ``export_fixture`` writes
any dataset (a generated one, say) back out as a fixture, which is also how the format's
example is produced.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from sandbox.powerschool import store

FORMAT = "powerschool-sandbox-fixture/1"
DISTRICT_KEYS = {
    "district_name": "Fixture School District",
    "district_timezone": "America/Chicago",
    "google_domains": [],
    "office365_domains": [],
    "import_start_year": 2025,
    "powerschool_version": "24.7.0.0",
}
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "schools": ("id", "dcid", "school_number", "name"),
    "terms": ("id", "dcid", "schoolid", "yearid", "firstday", "lastday"),
    "courses": ("id", "dcid", "course_number", "schoolid"),
    "sections": ("id", "dcid", "schoolid", "course_number", "termid"),
    "roledef": ("id", "name"),
    "sectionteacher": ("id", "sectionid", "teacherid", "roleid"),
    "teachers": ("id", "dcid", "users_dcid", "status"),
    "students": ("id", "dcid", "schoolid", "enroll_status"),
    "cc": ("id", "dcid", "studentid", "sectionid"),
    "guardian": ("guardianid",),
    "guardianstudent": ("guardianid", "studentsdcid"),
    "pcas_account": ("pcas_accounttoken",),
    "pcas_emailcontact": ("pcas_accounttoken",),
    "teachercategory": ("id", "name", "categorytype"),
}


def fixture_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fail(path: Path, message: str) -> store.DatasetError:
    return store.DatasetError(f"fixture {path}: {message}")


def load_fixture(path: Path, target: Path) -> dict[str, int]:
    """Validate the fixture at ``path`` and write it as a new dataset file ``target``; return row counts."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise _fail(path, f"not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise _fail(path, "the top level must be a JSON object with one key per table")
    unknown = sorted(set(document) - set(store.TABLE_COLUMNS) - {"district", "format"})
    if unknown:
        raise _fail(path, f"unknown table(s) {', '.join(unknown)}; known: {', '.join(store.SIS_TABLES)}")
    district = {**DISTRICT_KEYS, **(document.get("district") or {})}
    unknown_keys = sorted(set(district) - set(DISTRICT_KEYS))
    if unknown_keys:
        raise _fail(path, f"unknown district key(s) {', '.join(unknown_keys)}; known: {', '.join(DISTRICT_KEYS)}")
    if "roledef" not in document:
        document["roledef"] = [{"id": role_id, "name": name} for role_id, name in store.ROLE_NAMES.items()]
    counts: dict[str, int] = {}
    connection = sqlite3.connect(target)
    try:
        store.create_schema(connection)
        for table, columns in store.TABLE_COLUMNS.items():
            rows = document.get(table) or []
            if not isinstance(rows, list):
                raise _fail(path, f"{table} must be a list of rows")
            affiliations: list[tuple[int, int]] = []
            values = []
            for index, row in enumerate(rows):
                if not isinstance(row, dict):
                    raise _fail(path, f"{table}[{index}] must be an object")
                extra = set(row) - set(columns) - ({"school_affiliations"} if table == "teachers" else set())
                if extra:
                    raise _fail(
                        path,
                        f"{table}[{index}] has unknown column(s) {', '.join(sorted(extra))}; "
                        f"columns of {table}: {', '.join(columns)}",
                    )
                missing = [column for column in REQUIRED_COLUMNS[table] if row.get(column) in (None, "")]
                if missing:
                    raise _fail(path, f"{table}[{index}] lacks required column(s) {', '.join(missing)}")
                values.append(tuple(row.get(column) for column in columns))
                if table == "teachers":
                    schools = row.get("school_affiliations")
                    if schools is None:
                        schools = [row["schoolid"]] if row.get("schoolid") is not None else []
                    affiliations.extend((row["id"], school) for school in schools)
            placeholders = ",".join("?" * len(columns))
            try:
                connection.executemany(f"INSERT INTO {table} ({','.join(columns)}) VALUES ({placeholders})", values)
                if affiliations:
                    connection.executemany(
                        "INSERT INTO teacher_schools (teacherid, schoolid) VALUES (?, ?)", affiliations
                    )
            except sqlite3.IntegrityError as error:
                raise _fail(path, f"{table}: {error} (ids and dcids must be unique)") from error
            counts[table] = len(values)
        store.create_indexes(connection)
        store.write_info(connection, {**district, "name": path.stem, "source": "fixture", "fixture": str(path)})
        connection.commit()
    finally:
        connection.close()
    return counts


def export_fixture(dataset: Path, target: Path) -> None:
    """Write a dataset file out in the fixture format (pretty-printed JSON)."""
    with store.DatasetStore(dataset) as source:
        info = source.info()
        document: dict[str, Any] = {
            "format": FORMAT,
            "district": {key: info.get(key, default) for key, default in DISTRICT_KEYS.items()},
        }
        for table in store.SIS_TABLES:
            document[table] = list(source.rows(table))
    Path(target).write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
