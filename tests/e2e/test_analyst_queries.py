"""The analyst's questions, as the README and docs/staged-tables.md write them, on a real demo run.

The module stages what `make demo` stages (the demo district's import, the everyday SIS
changes, the import again; the shipped demo.yaml, SQLite staging) and then a grade push, so
`sync_runs` holds a newer run that is not an import. Then:

- every ```sql block of README.md and docs/staged-tables.md runs as written (on SQLite and on
  PostgreSQL staging, the 30-day window in each one's syntax as the query's comment says) and returns the
  table printed under it (``<!-- checked: exact -->``), or its columns and number of rows
  (``<!-- checked: columns -->``, for rows that hold times and run ids);
- `make explain`'s logic (sis_learning.explain) answers for a student imported without their
  shared login, by number, a duplicate teacher login, a class left out by rule and a student in Learning by email, from
  staging; and, with a staging that never saw them, asks PowerSchool and names the rule for
  students that are pre-registered, transferred out or graduated, inactive staff, a section
  in a term before the import start year, a section with no teacher, a guardian without a
  Parent Portal account, a student of a school the district did not select;
- `scripts/explain.py` (what `make explain` runs) prints the answer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

DOCUMENTS = (REPO_ROOT / "README.md", REPO_ROOT / "docs" / "staged-tables.md")
QUERY = re.compile(
    r"```sql\n(?P<sql>.*?)```\s*\n(?:<!-- checked: (?P<check>exact|columns) -->\n(?P<table>(?:\|[^\n]*\|\n)+))?", re.S
)


@dataclass
class Staged:
    staging_url: str
    services: Any
    runs: list[str]


@contextmanager
def staging_database(request: pytest.FixtureRequest, state: Path) -> Iterator[str]:
    """A fresh staging database: SQLite in ``state``, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{state / 'staging.sqlite'}"
        return
    import uuid

    from sqlalchemy.engine import make_url

    server = request.getfixturevalue("postgres_server")  # skips (or fails in CI) without a server
    name = f"sis_learning_analyst_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        from sis_learning.staging import base

        for key in [key for key in base._ENGINES if name in key]:
            base._ENGINES.pop(key).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def staged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staged]:
    from airflow.dag_processing.dagbag import DagBag

    from scripts.demo_environment import apply_everyday_changes, demo_services

    state = tmp_path_factory.mktemp("analyst")
    with (
        staging_database(request, state) as staging_url,
        pytest.MonkeyPatch.context() as patch,
        demo_services(dataset="demo", state_dir=state) as services,
    ):
        patch.setenv("SIS_LEARNING_STAGING_URL", staging_url)
        for name, value in services.env.items():
            patch.setenv(name, value)
        dag = DagBag(dag_folder=str(REPO_ROOT / "dags" / "sis_import.py")).dags["sis_import__demo"]
        first = dag.test()
        apply_everyday_changes(services.powerschool, services.learning)
        second = dag.test()
        assert (first.state, second.state) == ("success", "success")

        # A teacher enters a score in Learning; grade push writes it to PowerTeacher.
        from sis_learning.grade_push_tasks import push_grades

        class_id, student = sorted(key for key in services.learning.rosters("demo") if key[1].startswith("S:"))[0]
        gradable = services.learning.create_gradable("demo", class_id, "Reading check", 10)
        services.learning.set_score("demo", gradable["id"], student.removeprefix("S:"), "9")
        pushed = push_grades("demo", "manual__grade_push_after_the_imports")
        assert pushed["scores_pushed"] == 1, pushed
        yield Staged(staging_url, services, [first.run_id, second.run_id])
        from sis_learning.staging import base

        engine = base._ENGINES.pop(staging_url, None)
        if engine is not None:
            engine.dispose()


def documented_queries() -> list[tuple[str, str, str | None, list[list[str]]]]:
    found = []
    for document in DOCUMENTS:
        for match in QUERY.finditer(document.read_text()):
            table = [
                [cell.strip() for cell in line.strip().strip("|").split("|")]
                for line in (match.group("table") or "").splitlines()
            ]
            rows = [row for row in table if not all(set(cell) <= {"-"} for cell in row)]
            found.append((f"{document.name}:{match.start()}", match.group("sql"), match.group("check"), rows))
    return found


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize("where, sql, check, table", documented_queries(), ids=lambda item: str(item)[:40])
def test_the_documented_query_returns_the_documented_rows(staged, where, sql, check, table):
    assert check, f"{where}: every query in the docs has its result under it, marked <!-- checked: ... -->"
    engine = create_engine(staged.staging_url)
    if engine.dialect.name == "postgresql":  # the one dialect difference, as the query's comment says
        sql = sql.replace("DATETIME('now', '-30 days')", "CURRENT_TIMESTAMP - INTERVAL '30 days'")
    try:
        with engine.connect() as connection:
            result = connection.execute(text(sql.replace(":", r"\:")))
            columns = list(result.keys())
            rows = [[_cell(value) for value in row] for row in result]
    finally:
        engine.dispose()
    header, expected = table[0], table[1:]
    assert columns == header, where
    if check == "exact":
        assert rows == expected, f"{where}: the documented rows differ from what the query returns:\n{rows}"
    else:
        assert len(rows) == len(expected), (where, rows)
        for name in ("kind", "status", "stage"):
            if name in columns:
                position = columns.index(name)
                assert [row[position] for row in rows] == [row[position] for row in expected], (where, name, rows)


def test_there_is_a_documented_lookup_from_number_login_or_email_to_the_dcid():
    sql = [query for _, query, _, _ in documented_queries()]
    assert any("student_number" in q and "teacher_username" in q and "email" in q and "dcid" in q for q in sql)
    assert all("kind = 'import'" in q for q in sql if "sync_runs" in q and "LIMIT 1" in q)


# ---- make explain -----------------------------------------------------------------------------


def _explain(staging_url: str, identifier: str, hook: Any = None, config: Any = None):
    from sis_learning.config import load_district_by_id
    from sis_learning.explain import explain
    from sis_learning.staging.base import create_all, get_engine

    return explain(create_all(get_engine(staging_url)), config or load_district_by_id("demo"), identifier, hook)


def test_explain_answers_from_staging(staged):
    shared = _explain(staged.staging_url, "300154")  # a student number
    assert shared.run_id == staged.runs[-1]  # the latest finished import, not the grade push
    assert shared.text().startswith(
        f"'300154' in district demo's staging (the latest finished import, run {shared.run_id}):"
    )
    [student] = [f for f in shared.findings if f.kind == "student"]
    # Another student holds the login: this one came in without it (a warning), with another login.
    assert student.dcid == "1000154" and student.in_learning
    assert any(
        "imported without its student_username (warning login_unique)" in line and "ava.gonzalez11" in line
        for line in student.lines
    )

    teachers = _explain(staged.staging_url, "ETHOMAS3").findings  # a login, any case
    # Teachers.ID 3 and 12 (their DCIDs follow the Students.DCIDs in the demo district: one sequence per table);
    # both in Learning, 1000594 with another login.
    assert sorted((f.dcid, f.in_learning) for f in teachers) == [("1000585", True), ("1000594", True)]

    [section] = [f for f in _explain(staged.staging_url, "300023").findings if f.kind == "class"]
    assert any("LEFT OUT by rule no_teacher" in line for line in section.lines) and not section.in_learning

    [present] = _explain(staged.staging_url, "ava.gonzalez11@students.demo-usd.org").findings
    assert present.dcid == "1000011" and present.in_learning


def test_explain_says_whether_the_latest_import_read_a_record_or_carried_it_forward(staged):
    """The second import read students incrementally: an unchanged student was carried forward, a renamed one read."""
    first, second = staged.runs
    engine = create_engine(staged.staging_url)
    with engine.connect() as connection:
        mode = connection.execute(
            text("SELECT mode FROM extract_reads WHERE run_id = :r AND entity = 'students'"), {"r": second}
        ).scalar()
        changed = (
            connection.execute(
                text(
                    "SELECT c.source_id FROM extract_changes c JOIN stg_students s ON s.district_id = c.district_id "
                    "AND s.run_id = c.run_id AND s.student_id = c.source_id "
                    "WHERE c.run_id = :r AND c.entity = 'students' ORDER BY c.source_id"
                ),
                {"r": second},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert mode == "incremental" and changed, (mode, changed)  # the premise: the everyday changes renamed one

    [unchanged] = [f for f in _explain(staged.staging_url, "300154").findings if f.kind == "student"]
    assert unchanged.dcid not in changed
    assert any(
        f"unchanged in PowerSchool since run {first}: this import read only what changed and carried it forward" in line
        for line in unchanged.lines
    ), unchanged.lines
    assert not any("read by this import" in line for line in unchanged.lines)

    [renamed] = [f for f in _explain(staged.staging_url, changed[0]).findings if f.kind == "student"]
    assert any(
        f"changed in PowerSchool since run {first}: read again by this import" in line for line in renamed.lines
    ), renamed.lines


def _records(services, table: str, where: str) -> list[dict[str, Any]]:
    with services.powerschool.store() as dataset:
        return list(dataset.rows(table, where, ()))


def test_explain_asks_powerschool_for_records_the_import_never_saw(staged, tmp_path):
    from sis_learning.config import load_district_by_id
    from sis_learning.hooks.district import powerschool_hook

    services = staged.services
    never_imported = f"sqlite:///{tmp_path / 'empty.sqlite'}"  # a staging that never saw anything
    config = load_district_by_id("demo")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in services.env.items():
            patch.setenv(name, value)
        hook = powerschool_hook(config)

        def why(identifier: str, kind: str, district=config) -> list[str]:
            answer = _explain(never_imported, identifier, hook, district)
            found = [f for f in answer.findings if f.kind == kind]
            assert found, (identifier, answer.text())
            return found[0].lines

        for status, words in ((-1, "pre-registered"), (2, "transferred out"), (3, "graduated")):
            student = _records(services, "students", f"enroll_status = {status}")[0]
            lines = why(str(student["student_number"]), "student")
            assert any(f"its enrollment is {words}" in line for line in lines), lines
        teacher = _records(services, "teachers", "status <> 1")[0]
        assert any("not active" in line for line in why(str(teacher["dcid"]), "teacher"))
        old = _records(services, "sections", "termid < 3500 AND teacher IS NOT NULL AND teacher <> 0")[0]
        assert any("before the district's import_start_year 2025" in line for line in why(str(old["dcid"]), "class"))
        lonely = _records(services, "sections", "teacher IS NULL OR teacher = 0")[0]
        assert any("has no teacher" in line for line in why(str(lonely["dcid"]), "class"))
        guardian = _records(services, "guardian", "accountidentifier IS NULL OR accountidentifier = ''")[0]
        assert any("no Parent Portal account" in line for line in why(str(guardian["guardianid"]), "parent"))

        active = _records(services, "students", "enroll_status = 0 AND schoolid = 400")[0]
        elsewhere = config.model_copy(update={"schools": ("100", "200", "300")})  # school 400 not selected
        lines = why(str(active["student_number"]), "student", elsewhere)
        assert any("school (number 400) is not one of the district's selected schools" in line for line in lines)
        assert not any("enrollment is" in line for line in lines)


def test_make_explain_prints_the_answer(staged):
    env = {**os.environ, "SIS_LEARNING_STAGING_URL": staged.staging_url}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "explain.py"), "300154"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Student" in result.stdout and "(DCID 1000154)" in result.stdout
    assert "(warning login_unique)" in result.stdout and "IN LEARNING" in result.stdout
    assert Path(REPO_ROOT / "Makefile").read_text().count("scripts/explain.py") == 1
