"""Why is this student, teacher, parent or class not in Learning? An answer for any SIS id or number.

``explain(engine, config, identifier, powerschool)`` takes what a district knows a record by
(a DCID, a student number, a Teachers.ID, a login, an email, a section or school number)
and answers from the staged tables of the district's latest finished import: in Learning
or not, rejected (the rule, the reason, what caused it), left out by rule (excluded_rows),
imported without a field (validation_warnings), refused by Learning (change_set). When
staging has no trace of it, the import never read it: PowerSchool is asked for that one
record (``/ws/schema/table`` reads by id, number, login or email) and the answer says why
the extract leaves it out, by the source document's rules: not an active enrollment
(inactive, pre-registered, transferred out, graduated), not active staff, a school the
district did not select, a term before the import start year, a section with no teacher,
a guardian without a Parent Portal account.

``make explain ID=...`` (scripts/explain.py) prints the answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig

log = logging.getLogger(__name__)

# PowerSchool's Students.Enroll_Status (only 0 is imported: "active enrollment").
ENROLL_STATUS = {
    "-1": "pre-registered",
    "0": "active",
    "1": "inactive",
    "2": "transferred out",
    "3": "graduated",
    "4": "imported as historical",
}
USER_TYPES = {"student": "S", "teacher": "T", "parent": "P"}


@dataclass
class Finding:
    """One record the identifier names, and what the import did with it."""

    kind: str  # student | teacher | parent | class | school
    dcid: str
    name: str
    lines: list[str] = field(default_factory=list)
    in_learning: bool = False

    def text(self) -> str:
        head = f"{self.kind.capitalize()} {self.name} (DCID {self.dcid}):"
        return "\n".join([head, *(f"  - {line}" for line in self.lines)])


@dataclass
class Answer:
    identifier: str
    run_id: str | None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    district_id: str | None = None

    def text(self) -> str:
        run = f"the latest finished import, run {self.run_id}" if self.run_id else "no finished import yet"
        where = f"district {self.district_id}'s staging" if self.district_id else "the district's staging"
        out = [f"{self.identifier!r} in {where} ({run}):"]
        out += [finding.text() for finding in self.findings]
        out += self.notes
        if not self.findings and not self.notes:
            out.append(
                "Nothing found: neither staging nor PowerSchool has a record by this id, number, login or email."
            )
        return "\n".join(out)


# ---- the staged side -----------------------------------------------------------------------------


def latest_finished_import(engine: Engine, district_id: str) -> str | None:
    """The run id of the district's latest import that finished (success first, else failed)."""
    if not inspect(engine).has_table("sync_runs"):  # a staging database no run has written to yet
        return None
    with engine.connect() as connection:
        for statuses in (("success",), ("failed",)):
            row = connection.execute(
                text(
                    "SELECT run_id FROM sync_runs WHERE district_id = :district AND kind = 'import' "
                    f"AND status IN ({', '.join(repr(s) for s in statuses)}) ORDER BY started_at DESC LIMIT 1"
                ),
                {"district": district_id},
            ).first()
            if row is not None:
                return row.run_id
    return None


# (kind, staged table, dcid column, columns an identifier may equal, name columns)
STAGED = (
    (
        "student",
        "stg_students",
        "student_id",
        ("student_id", "local_id", "student_number", "student_username", "email"),
        ("first_name", "last_name"),
    ),
    (
        "teacher",
        "stg_staff",
        "staff_id",
        ("staff_id", "local_id", "users_dcid", "teacher_username", "admin_username", "email"),
        ("first_name", "last_name"),
    ),
    (
        "parent",
        "stg_guardians",
        "guardian_id",
        ("guardian_id", "portal_username", "email"),
        ("first_name", "last_name"),
    ),
    ("class", "stg_sections", "section_id", ("section_id", "local_id"), ("section_number", "expression")),
    ("school", "stg_schools", "school_id", ("school_id", "school_number"), ("name",)),
)
# Where each kind's rows are judged (validate's entity) and kept in Learning (snapshot entity).
ENTITY = {"student": "students", "teacher": "staff", "parent": "guardians", "class": "sections", "school": "schools"}
SNAPSHOT = {"student": "users", "teacher": "users", "parent": "users", "class": "classes", "school": "organizations"}


def _rows(connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(text(sql), params)]


def _how_read(connection, district_id: str, run_id: str, kind: str, dcid: str, table: str) -> str:
    """Whether the run read this record from PowerSchool or carried it forward unchanged (an incremental read)."""
    params = {"district": district_id, "run": run_id, "entity": ENTITY[kind], "id": dcid}
    [read] = _rows(
        connection,
        "SELECT mode, base_run_id FROM extract_reads WHERE district_id = :district AND run_id = :run "
        "AND entity = :entity",
        **params,
    ) or [{"mode": None, "base_run_id": None}]
    if read["mode"] == "incremental" and read["base_run_id"]:
        changed = _rows(
            connection,
            "SELECT 1 AS found FROM extract_changes WHERE district_id = :district AND run_id = :run "
            "AND entity = :entity AND source_id = :id",
            **params,
        )
        if not changed:
            return (
                f"unchanged in PowerSchool since run {read['base_run_id']}: this import read only what changed "
                f"and carried it forward (table {table})"
            )
        return f"changed in PowerSchool since run {read['base_run_id']}: read again by this import (table {table})"
    return f"read by this import from PowerSchool (table {table})"


def _staged_matches(connection, district_id: str, run_id: str, identifier: str) -> list[Finding]:
    found: dict[tuple[str, str], Finding] = {}
    wanted = identifier.strip().lower()
    for kind, table, dcid_column, columns, name_columns in STAGED:
        condition = " OR ".join(f"LOWER(CAST({column} AS VARCHAR(400))) = :wanted" for column in columns)
        for row in _rows(
            connection,
            f"SELECT * FROM {table} WHERE district_id = :district AND run_id = :run AND ({condition})",
            district=district_id,
            run=run_id,
            wanted=wanted,
        ):
            dcid = str(row[dcid_column])
            name = " ".join(str(row[column]) for column in name_columns if row.get(column)) or "(no name)"
            finding = found.setdefault((kind, dcid), Finding(kind, dcid, name))
            matched = [column for column in columns if str(row.get(column) or "").lower() == wanted]
            line = f"matched by {', '.join(matched)}; {_how_read(connection, district_id, run_id, kind, dcid, table)}"
            if line not in finding.lines:
                finding.lines.append(line)
            if row.get("source_problem"):
                finding.lines.append(
                    f"PowerSchool sent it with a problem ({row['source_problem']}): "
                    f"{row.get('source_problem_reason') or ''}".rstrip(": ")
                )
    return list(found.values())


def _judge(connection, district_id: str, run_id: str, finding: Finding) -> None:
    """What the run did with a staged record: rejected, excluded, warned, sent, in Learning."""
    entity = ENTITY[finding.kind]
    params = {"district": district_id, "run": run_id, "entity": entity, "id": finding.dcid}
    for row in _rows(
        connection,
        "SELECT rule, reason, caused_by, blocks FROM rejected_rows WHERE district_id = "
        ":district AND run_id = :run AND entity = :entity AND source_id = :id",
        **params,
    ):
        line = f"REJECTED by rule {row['rule']}: {row['reason']}"
        if row.get("caused_by"):
            line += f" (caused by {row['caused_by']})"
        if row.get("blocks"):
            line += f"; this also holds back {row['blocks']}"
        finding.lines.append(line + ". Fix it in PowerSchool; the next import takes it.")
    for row in _rows(
        connection,
        "SELECT rule, reason FROM excluded_rows WHERE district_id = :district AND "
        "run_id = :run AND entity = :entity AND source_id = :id",
        **params,
    ):
        finding.lines.append(f"LEFT OUT by rule {row['rule']} (by design, not an error): {row['reason']}")
    for row in _rows(
        connection,
        "SELECT rule, field, reason FROM validation_warnings WHERE district_id = :district "
        "AND run_id = :run AND entity = :entity AND source_id = :id",
        **params,
    ):
        finding.lines.append(f"imported without its {row['field']} (warning {row['rule']}): {row['reason']}")
    key = f"{USER_TYPES[finding.kind]}:{finding.dcid}" if finding.kind in USER_TYPES else finding.dcid
    snapshot = {"district": district_id, "entity": SNAPSHOT[finding.kind], "key": key}
    for row in _rows(
        connection,
        "SELECT action, status, learning_result, reason FROM change_set WHERE district_id = "
        ':district AND run_id = :run AND entity = :entity AND "key" = :key',
        **{**snapshot, "run": run_id},
    ):
        if row["status"] == "refused":
            finding.lines.append(f"Learning REFUSED the {row['action']} in this run: {row['reason']}")
        elif row["action"] != "unchanged":
            finding.lines.append(f"this run sent a {row['action']} to Learning ({row['status']})")
    rows = _rows(
        connection,
        "SELECT active, run_id FROM learning_snapshot WHERE district_id = :district AND "
        'entity = :entity AND "key" = :key',
        **snapshot,
    )
    if rows and rows[0]["active"]:
        finding.in_learning = True
        finding.lines.append(
            f"IN LEARNING as {SNAPSHOT[finding.kind]} {key} (last accepted in run {rows[0]['run_id']})"
        )
    elif rows:
        finding.lines.append(
            f"in Learning but disabled/removed (since run {rows[0]['run_id']}): PowerSchool no "
            "longer gives it to the import"
        )
    else:
        finding.lines.append("NOT IN LEARNING")


# ---- the PowerSchool side -----------------------------------------------------------------------

# (kind, table, projection, columns an identifier may equal: (column, numeric?))
TABLES = (
    (
        "student",
        "students",
        (
            "dcid",
            "id",
            "student_number",
            "first_name",
            "last_name",
            "schoolid",
            "enroll_status",
            "student_web_id",
            "email",
        ),
        (("dcid", True), ("student_number", True), ("id", True), ("student_web_id", False), ("email", False)),
    ),
    (
        "teacher",
        "teachers",
        (
            "dcid",
            "id",
            "users_dcid",
            "first_name",
            "last_name",
            "schoolid",
            "status",
            "teacherloginid",
            "loginid",
            "email_addr",
        ),
        (
            ("dcid", True),
            ("id", True),
            ("users_dcid", True),
            ("teacherloginid", False),
            ("loginid", False),
            ("email_addr", False),
        ),
    ),
    (
        "class",
        "sections",
        ("dcid", "id", "schoolid", "course_number", "section_number", "termid", "teacher"),
        (("dcid", True), ("id", True)),
    ),
    ("parent", "guardian", ("guardianid", "firstname", "lastname", "accountidentifier"), (("guardianid", True),)),
)


def _ask(hook: Any, table: str, projection: tuple[str, ...], q: str) -> list[dict[str, Any]]:
    listing = hook.table_listing("explain", table, projection, q=q)
    return list(hook.read_all(listing))


def _selected_school_numbers(hook: Any, config: DistrictConfig) -> dict[str, str]:
    """school number -> name of the district's selected schools."""
    from sis_learning.extract.schools import selected_school_ids

    selected = set(selected_school_ids(hook, config))
    return {
        str(row.get("school_number")): str(row.get("name"))
        for row in hook.district_schools()
        if str(row.get("id")) in selected
    }


def _why_not_read(
    hook: Any, config: DistrictConfig, kind: str, row: dict[str, Any], schools: dict[str, str]
) -> list[str]:
    """Why the import's extract does not read this PowerSchool record (the source document's rules)."""
    reasons: list[str] = []
    school = str(row.get("schoolid") or "")
    if school and school not in schools:
        reasons.append(
            f"its school (number {school}) is not one of the district's selected schools "
            f"({config.source_file or 'the district file'}: schools)"
        )
    if kind == "student":
        status = str(row.get("enroll_status") if row.get("enroll_status") is not None else "")
        if status != "0":
            reasons.append(
                f"its enrollment is {ENROLL_STATUS.get(status, f'status {status}')} (Enroll_Status "
                f"{status}): only students with an active enrollment (0) are imported"
            )
    elif kind == "teacher":
        if str(row.get("status") or "") != "1":
            reasons.append(
                f"the staff record is not active (Status {row.get('status')}): only active staff are imported"
            )
    elif kind == "class":
        if not str(row.get("teacher") or "").strip() or str(row.get("teacher")) == "0":
            reasons.append("the section has no teacher: only sections with a teacher become classes")
        term = str(row.get("termid") or "")
        if term.lstrip("-").isdigit():
            from sis_learning.extract.schools import TERM_ID_YEAR_BASE

            start_year = abs(int(term)) // 100 + TERM_ID_YEAR_BASE  # Terms.ID = (YearID * 100) + n
            if start_year < config.import_start_year:
                reasons.append(
                    f"its term ({term}) is in the {start_year}-{start_year + 1} school year, before the "
                    f"district's import_start_year {config.import_start_year}"
                )
    elif kind == "parent":
        if not str(row.get("accountidentifier") or "").strip():
            reasons.append("the guardian has no Parent Portal account: only parents with an account are imported")
        if config.ignore_parents:
            reasons.append("the district's ignore_parents setting is on: no parent is imported")
    return reasons


def _from_powerschool(hook: Any, config: DistrictConfig, identifier: str) -> list[Finding]:
    value = identifier.strip()
    numeric = value.lstrip("-").isdigit()
    schools = _selected_school_numbers(hook, config)
    findings: dict[tuple[str, str], Finding] = {}
    for kind, table, projection, columns in TABLES:
        for column, is_number in columns:
            if is_number != numeric:
                continue
            q = f"{column}=={value}" if numeric else f'{column}=="{value}"'
            for row in _ask(hook, table, projection, q):
                dcid = str(row.get("dcid") or row.get("guardianid"))
                if (kind, dcid) in findings:
                    continue
                name = " ".join(
                    str(row.get(c))
                    for c in ("first_name", "last_name", "firstname", "lastname", "course_number", "section_number")
                    if row.get(c)
                )
                finding = Finding(kind, dcid, name or "(no name)")
                finding.lines.append(
                    f"found in PowerSchool (table {table}, {column} {value}); the import did not read it"
                )
                reasons = _why_not_read(hook, config, kind, row, schools)
                finding.lines += [f"LEFT OUT: {reason}" for reason in reasons] or [
                    "PowerSchool has it as importable (active, in a selected school): it changed after the latest "
                    "import, which read PowerSchool before; the next import takes it"
                ]
                findings[(kind, dcid)] = finding
    return list(findings.values())


# ---- the answer ---------------------------------------------------------------------------------


def explain(engine: Engine, config: DistrictConfig, identifier: str, powerschool: Any | None = None) -> Answer:
    """Why the record(s) ``identifier`` names are, or are not, in Learning.

    :param engine: the staging database
    :param config: the district
    :param identifier: a DCID, student number, Teachers.ID, login, email, section or school number
    :param powerschool: a PowerSchoolHook (asked only when staging has no trace), or None to not ask
    """
    run_id = latest_finished_import(engine, config.district_id)
    answer = Answer(identifier, run_id, district_id=config.district_id)
    if run_id is not None:
        with engine.connect() as connection:
            answer.findings = _staged_matches(connection, config.district_id, run_id, identifier)
            for finding in answer.findings:
                _judge(connection, config.district_id, run_id, finding)
    if answer.findings:
        return answer
    if powerschool is None:
        answer.notes.append(
            "Staging has no trace of it, and PowerSchool was not asked: no connection to it here "
            f"(Airflow connection {config.powerschool.connection_id}; `make airflow` provides the "
            "demo's)."
        )
        return answer
    try:
        answer.findings = _from_powerschool(powerschool, config, identifier)
    except Exception as error:  # PowerSchool unreachable or refusing: say so, staging's answer stands
        answer.notes.append(f"Staging has no trace of it, and PowerSchool could not be asked: {error}")
    return answer
