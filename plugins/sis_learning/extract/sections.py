"""Sections and rosters: sections, section enrollments (CC) and section teachers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.extract import incremental
from sis_learning.extract.listing import (
    SchoolTableRead,
    TableRead,
    _id_map,
    _read_tables,
    _result,
    _run_extract,
    _scope_summaries,
    _stage_listings,
    _stage_page,
    _table_requests,
)
from sis_learning.extract.schools import (
    _first_term_id,
    _school_numbers,
    _schools_in_scope,
)
from sis_learning.extract.values import _boolean, _integer, _integer_value, _text, iso_date
from sis_learning.hooks.http_client import PermissionDeniedError, ValidationFailedError
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.source import STAGED_SOURCE_TABLES
from sis_learning.staging.writer import DISTRICT_SCOPE, EntityStaging


def _sections_listing(
    hook: PowerSchoolHook, config: DistrictConfig, school: str, ids: list[str] | None = None
) -> Listing:
    """A school's sections in terms from the import start year on (the filter is in the request)."""
    q = f"term.start_year=ge={config.import_start_year}"
    return hook.v1_listing(
        school,
        f"/ws/v1/school/{school}/section",
        wrapper="sections",
        item="section",
        resource="section",
        params={"q": f"{q};id==({','.join(ids)})" if ids else q},
    )


def extract_sections(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage the sections of terms from the import start year on.

    The start year filter is part of the request (``q=term.start_year=ge=YEAR``), so older
    sections are never transferred, staged or counted (counting them would cost one more
    request per school for a figure nothing downstream uses). Incremental: the ``sections``
    table's ``whenmodified`` names the changed sections, each school with one is asked for
    them by id, the rest is carried forward.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
        return {
            "section_id": id_string(record.get("id")),
            "local_id": _text(record.get("local_id")),
            "school_id": _text(record.get("school_id")) or listing.scope,
            "course_id": _text(record.get("course_id")),
            "term_id": _text(record.get("term_id")),
            "section_number": _text(record.get("section_number")),
            "expression": _text(record.get("expression")),
            "external_expression": _text(record.get("external_expression")),
            "staff_id": _text(record.get("staff_id")),
            "gradebook_type": _text(record.get("gradebooktype")),
        }

    def read_changed(plan: incremental.ReadPlan) -> dict[str, Any]:
        changed, cursor = incremental.changed_rows(hook, "sections", ("dcid", "schoolid"), plan)
        numbers = _school_numbers(hook, schools)
        ids_by_school: dict[str, list[str]] = {}
        for row in changed:
            school = numbers.get(id_string(row.get("schoolid")) or "")
            if school is not None and id_string(row.get("dcid")):
                ids_by_school.setdefault(school, []).append(id_string(row.get("dcid")) or "")
        return incremental.per_school_changes(
            hook,
            engine,
            config,
            run_id,
            "sections",
            plan,
            schools,
            changed=changed,
            cursor_reads=[cursor],
            ids_by_school=ids_by_school,
            listing_for=lambda school, ids: _sections_listing(hook, config, school, ids),
            build=build,
            ids_per_read=hook.max_page_size("section") - 1,
        )

    def read_full(plan: incremental.ReadPlan) -> dict[str, Any]:
        listings = [_sections_listing(hook, config, school) for school in schools]
        notes = {schools[0]: [plan.note]} if plan.fallback and schools else None
        return _run_extract(hook, engine, config, run_id, "sections", listings, build, notes=notes)

    return incremental.read_with_plan(
        hook, engine, config, run_id, "sections", school_ids is not None, read_changed, read_full
    )


def _section_map_reads(
    hook: PowerSchoolHook, config: DistrictConfig, numbers: Mapping[str, str]
) -> dict[str, TableRead]:
    """The table reads behind :func:`_section_map`: sections from the start year, and terms."""
    sections = SchoolTableRead(
        hook, "sections", ("id", "dcid", "schoolid", "termid"), numbers, q=f"termid=ge={_first_term_id(config)}"
    )
    terms = SchoolTableRead(hook, "terms", ("id", "dcid", "schoolid"), numbers)
    return {"sections": (sections, ("id", "dcid", "schoolid", "termid")), "terms": (terms, ("schoolid", "id", "dcid"))}


def _section_map(
    found: Mapping[str, list[tuple[str | None, ...]]], numbers: Mapping[str, str]
) -> dict[str, tuple[str, str, str | None]]:
    """Sections.ID -> (Sections.DCID, school id, term id) for the sections extract stages."""
    term_ids = {(number or "", term or ""): dcid or "" for number, term, dcid in found["terms"]}
    sections: dict[str, tuple[str, str, str | None]] = {}
    for section_id, dcid, number, term in found["sections"]:
        if section_id and dcid:
            number = number or ""
            sections[section_id] = (dcid, numbers.get(number, number), term_ids.get((number, term or "")))
    return sections


def extract_section_enrollments(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage the section enrollments (rosters) of the sections extract stages.

    District-wide through the CC table (one paged read instead of one call per section),
    translating Students.ID / Sections.ID to DCIDs; a negative CC.SectionID is a dropped
    enrollment (staged with ``dropped`` true). Only enrollments of active students of
    the selected schools in sections from the import start year on are staged, the
    same population the students and sections extracts stage; the others are counted
    in the note. When the plugin may not read CC (403 or "No access to the field"), it
    falls back to ``/ws/v1/section/{id}/section_enrollment`` for every section from the
    import start year on (reading the section and active student ids itself, so it does
    not depend on other extract tasks).

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)

    def read_full(plan: incremental.ReadPlan) -> dict[str, Any]:
        try:
            return _section_enrollments_from_cc(hook, engine, config, run_id, schools, plan)
        except (PermissionDeniedError, ValidationFailedError) as refused:
            hook.log.warning("CC table read refused (%s); reading enrollments section by section", refused)
            return _section_enrollments_per_section(hook, engine, config, run_id, schools, reason=str(refused))

    def read_changed(plan: incremental.ReadPlan) -> dict[str, Any]:
        return _section_enrollments_changed(hook, engine, config, run_id, schools, plan)

    return incremental.read_with_plan(
        hook, engine, config, run_id, "section_enrollments", school_ids is not None, read_changed, read_full
    )


CC_COLUMNS = ("id", "dcid", "studentid", "sectionid", "dateenrolled", "dateleft")
STUDENT_MAP_COLUMNS = ("id", "dcid", "schoolid", "enroll_status")
SECTION_MAP_COLUMNS = ("id", "dcid", "schoolid", "termid")


class _CcRows:
    """CC rows -> staged section enrollments, by Students.ID / Sections.ID -> DCID maps."""

    def __init__(self, sections: Mapping[str, tuple[str, str, str | None]], students: Mapping[str, str]) -> None:
        self.sections = sections  # Sections.ID -> (DCID, school id, term id), the staged sections only
        self.students = students  # Students.ID -> DCID, the active students of the selected schools only
        self.skipped = {"section": 0, "student": 0}

    def build(self, row: Mapping[str, Any], _listing: Listing | None = None) -> dict[str, Any] | None:
        sections, students = self.sections, self.students
        # Table values are strings: a positive section id is looked up as it came (the
        # common case, once per CC row); anything else (a dropped enrollment's negative
        # id, a number, spaces) goes the general way.
        raw_section_id = row.get("sectionid")
        section = sections.get(raw_section_id) if type(raw_section_id) is str else None
        dropped = False
        if section is None:
            raw_section = _integer_value(raw_section_id)
            section = sections.get(str(abs(raw_section))) if raw_section is not None else None
            dropped = raw_section is not None and raw_section < 0
        if section is None:
            self.skipped["section"] += 1
            return None
        raw_student_id = row.get("studentid")
        student = students.get(raw_student_id) if type(raw_student_id) is str else None
        if student is None:
            student = students.get(id_string(raw_student_id) or "")
        if student is None:
            self.skipped["student"] += 1
            return None
        section_id, school_id, term_id = section
        return {
            "enrollment_id": id_string(row.get("dcid") or row.get("id")),
            "section_id": section_id,
            "student_id": student,
            "school_id": school_id,
            "term_id": term_id,
            "entry_date": iso_date(row.get("dateenrolled")),
            "exit_date": iso_date(row.get("dateleft")),
            "dropped": dropped,
        }

    def notes(self) -> list[str]:
        skipped = self.skipped
        return [
            note
            for note in (
                f"{skipped['section']} CC rows of sections not staged (other schools or terms) left out"
                if skipped["section"]
                else "",
                f"{skipped['student']} CC rows of students not active in the selected schools left out"
                if skipped["student"]
                else "",
            )
            if note
        ]


def _section_enrollments_from_cc(
    hook: PowerSchoolHook,
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    schools: list[str],
    plan: incremental.ReadPlan,
) -> dict[str, Any]:
    numbers = _school_numbers(hook, schools)
    # Only the columns staging uses: a CC row's school and term are its section's (from the
    # section map), so CC.SchoolID and CC.TermID are filtered on but not transferred (a
    # quarter less for PowerSchool to render and for extract to parse, per CC row).
    cc_read = SchoolTableRead(hook, "cc", CC_COLUMNS, numbers, q=f"termid=ge={_first_term_id(config)}")
    cc = cc_read.whole
    # Refusals come first and cheaply: the count of CC is read before any map is built.
    hook.read_counts([cc])
    students_read = SchoolTableRead(hook, "students", ("id", "dcid"), numbers, q="enroll_status==0")
    reads = {**_section_map_reads(hook, config, numbers), "students": (students_read, ("id", "dcid"))}
    found = _read_tables(hook, reads)
    rows = _CcRows(_section_map(found, numbers), _id_map(found.pop("students")))
    found.clear()
    staging = EntityStaging(engine, config, run_id, "section_enrollments")
    staging.clear([DISTRICT_SCOPE])
    parts = cc_read.parts()
    _stage_listings(
        hook,
        staging,
        parts,
        rows.build,
        source_id=lambda row: id_string(row.get("dcid") or row.get("id")),
        page_by_page=len(parts) > 1,
    )
    cc_read.finish()
    summaries = _scope_summaries([cc], staging.written, {DISTRICT_SCOPE: [plan.note, *rows.notes()]})
    # The cross-check compares CC rows read with CC's count, not the staged subset.
    summaries[0]["mismatch"] = cc.mismatch
    staging.write_counts(summaries)
    return _result(
        hook,
        "section_enrollments",
        summaries,
        source="cc",
        translation_requests=_table_requests(reads),
        carried_forward=0,
    )


def _section_enrollments_changed(
    hook: PowerSchoolHook,
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    schools: list[str],
    plan: incremental.ReadPlan,
) -> dict[str, Any]:
    """CC rows changed since the cursor, those of students and sections new in scope, the rest carried.

    Self-contained (it reads no other task's rows of this run): today's active students and
    staged sections are the base run's staged ones updated with the students and sections
    the cursors say changed; ids are translated only for the CC rows read, by id.
    """
    assert plan.base_run_id is not None
    base = plan.base_run_id
    district = config.district_id
    numbers = _school_numbers(hook, schools)
    first_term = _first_term_id(config)
    cursor = incremental.cursor_column("cc")
    cc_read = SchoolTableRead(hook, "cc", CC_COLUMNS, numbers, q=f"termid=ge={first_term};{cursor}=ge={plan.read_from}")
    hook.read_counts([cc_read.whole])  # a refused cursor fails here, before anything is staged
    base_rows = incremental.staged_total(engine, district, base, "section_enrollments")
    incremental.check_change_share("section_enrollments", cc_read.whole.reported_count or 0, base_rows)
    changed_students, students_cursor = incremental.changed_rows(hook, "students", STUDENT_MAP_COLUMNS, plan)
    changed_sections, sections_cursor = incremental.changed_rows(hook, "sections", SECTION_MAP_COLUMNS, plan)
    terms_listing = hook.table_listing(
        DISTRICT_SCOPE, "terms", ("id", "dcid", "schoolid"), q=f"schoolid==({','.join(sorted(numbers))})"
    )
    term_ids = {
        (id_string(row.get("schoolid")) or "", id_string(row.get("id")) or ""): id_string(row.get("dcid"))
        for row in incremental.read_rows(hook, [terms_listing])
    }
    requests = [cc_read.whole, students_cursor, sections_cursor, terms_listing]

    # Today's active students (DCIDs) and staged sections (DCID -> school, term): the base
    # run's, updated with what the cursors say changed.
    base_students = incremental.staged_ids(engine, district, base, "students", "student_id")
    active = set(base_students)
    student_ids: dict[str, str] = {}  # Students.ID -> DCID of the active students met so far
    new_students: list[str] = []  # Students.ID of students active now and not in the base run

    def note_student(row: Mapping[str, Any]) -> None:
        student_id, dcid = id_string(row.get("id")), id_string(row.get("dcid"))
        if not student_id or not dcid:
            return
        if id_string(row.get("enroll_status")) == "0" and id_string(row.get("schoolid")) in numbers:
            active.add(dcid)
            student_ids[student_id] = dcid
        else:
            active.discard(dcid)

    for row in changed_students:
        note_student(row)
    new_students = [student_id for student_id, dcid in student_ids.items() if dcid not in base_students]
    base_sections = {
        dcid: (school, term)
        for dcid, school, term in incremental.staged_values(
            engine, district, base, "sections", "section_id", "school_id", "term_id"
        )
        if dcid
    }
    staged_sections = dict(base_sections)
    section_ids: dict[str, tuple[str, str, str | None]] = {}  # Sections.ID -> (DCID, school, term) in scope
    moved: dict[str, tuple[str, str | None]] = {}  # sections whose school or term changed

    def note_section(row: Mapping[str, Any]) -> None:
        section_id, dcid = id_string(row.get("id")), id_string(row.get("dcid"))
        number, term = id_string(row.get("schoolid")) or "", id_string(row.get("termid")) or ""
        if not section_id or not dcid:
            return
        if number in numbers and (_integer_value(term) or 0) >= first_term:
            place = (numbers[number], term_ids.get((number, term)))
            staged_sections[dcid] = place
            section_ids[section_id] = (dcid, *place)
            if dcid in base_sections and base_sections[dcid] != place:
                moved[dcid] = place
        else:
            staged_sections.pop(dcid, None)

    for row in changed_sections:
        note_section(row)
    new_sections = [
        section_id for section_id, (dcid, _school, _term) in section_ids.items() if dcid not in base_sections
    ]

    # The CC rows to stage afresh: changed ones, and every row of a student or section new in scope.
    parts = cc_read.parts()
    reads: list[Listing] = []
    for column, ids in (("studentid", new_students), ("sectionid", [*new_sections, *(f"-{i}" for i in new_sections)])):
        reads += incremental.by_id_reads(hook, "cc", CC_COLUMNS, column, ids, q=f"termid=ge={first_term}")
    cc_rows: dict[str, dict[str, Any]] = {}
    for _listing, page in hook.read_pages([*parts, *reads], page_by_page=True):
        for row in page:
            cc_rows.setdefault(id_string(row.get("dcid") or row.get("id")) or "", row)
    cc_read.finish()
    # Ids of those rows not met yet: read by id (unchanged students and sections).
    unknown_students = {id_string(row.get("studentid")) or "" for row in cc_rows.values()} - set(student_ids) - {""}
    unknown_sections = {
        str(abs(value)) for row in cc_rows.values() if (value := _integer_value(row.get("sectionid")))
    } - set(section_ids)
    map_reads = [
        *incremental.by_id_reads(hook, "students", STUDENT_MAP_COLUMNS, "id", unknown_students),
        *incremental.by_id_reads(hook, "sections", SECTION_MAP_COLUMNS, "id", unknown_sections),
    ]
    for listing, page in hook.read_pages(map_reads, page_by_page=True):
        for row in page:
            if listing.path.endswith("/students"):
                # Unchanged since the base run: active now exactly when it was staged then.
                dcid = id_string(row.get("dcid"))
                if dcid in active:
                    student_ids[id_string(row.get("id")) or ""] = dcid
            else:
                dcid = id_string(row.get("dcid"))
                if dcid in staged_sections:
                    section_ids[id_string(row.get("id")) or ""] = (dcid, *staged_sections[dcid])
    rows = _CcRows(section_ids, student_ids)
    staging = EntityStaging(engine, config, run_id, "section_enrollments")
    staging.clear([DISTRICT_SCOPE])
    records = list(cc_rows.values())
    source_id = lambda row: id_string(row.get("dcid") or row.get("id"))  # noqa: E731
    for start in range(0, len(records), 5000):
        page = records[start : start + 5000]
        _stage_page(
            staging,
            DISTRICT_SCOPE,
            [(record, row) for record in page if (row := rows.build(record))],
            source_id,
            "section_enrollments",
        )
    staging.close()
    read = staging.written.get(DISTRICT_SCOPE, 0)
    left_students = base_students - active
    left_sections = set(base_sections) - set(staged_sections)
    carried = incremental.carry_forward(
        engine,
        config,
        run_id,
        "section_enrollments",
        base,
        drop={"enrollment_id": set(cc_rows), "student_id": left_students, "section_id": left_sections},
        scopes=[DISTRICT_SCOPE],
    )
    if moved:
        table = STAGED_SOURCE_TABLES["section_enrollments"].__table__
        with engine.begin() as connection:
            for dcid, (school, term) in moved.items():
                connection.execute(
                    table.update()
                    .where(
                        table.c.district_id == district,
                        table.c.run_id == run_id,
                        table.c.section_id == dcid,
                    )
                    .values(school_id=school, term_id=term)
                )
    all_reads = [*requests, *reads, *map_reads]
    note = (
        f"{plan.note}; {len(cc_rows)} CC rows read as changed or new ({len(changed_students)} students and "
        f"{len(changed_sections)} sections changed, {len(new_students)} students and {len(new_sections)} sections "
        f"new in scope), {read} staged afresh, {carried} unchanged rows carried forward from run {base}"
    )
    summary = {
        "scope": DISTRICT_SCOPE,
        # The scope's rows: cleared, then those staged afresh and those carried (never both).
        "rows": read + carried,
        "reported_count": None,
        "requests": sum(listing.requests for listing in all_reads),
        "pages": sum(listing.pages for listing in all_reads),
        "mismatch": False,
        "note": "; ".join([note, *rows.notes()]),
    }
    staging.write_counts([summary])
    return _result(
        hook,
        "section_enrollments",
        [summary],
        source="cc",
        carried_forward=carried,
        translation_requests=sum(listing.requests for listing in map_reads),
    )


def _section_enrollments_per_section(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, schools: list[str], reason: str
) -> dict[str, Any]:
    # The fallback reads its own section and student ids (the same listings extract_sections
    # and extract_students read), so it does not depend on those tasks having run first.
    section_listings = [_sections_listing(hook, config, school) for school in schools]
    sections: dict[str, tuple[str | None, str | None]] = {}
    for listing, rows in hook.read_pages(section_listings, page_by_page=True):
        for row in rows:
            sections[id_string(row.get("id")) or ""] = (
                _text(row.get("school_id")) or listing.scope,
                _text(row.get("term_id")),
            )
    student_listings = [
        hook.v1_listing(
            school, f"/ws/v1/school/{school}/student", wrapper="students", item="student", resource="student"
        )
        for school in schools
    ]
    # The same population as the CC read: enrollments of active students of the selected schools.
    students = {
        id_string(row.get("id"))
        for _listing, rows in hook.read_pages(student_listings, page_by_page=True)
        for row in rows
    }
    reference_requests = sum(listing.requests for listing in [*section_listings, *student_listings])
    listings = [
        hook.v1_listing(
            DISTRICT_SCOPE,
            f"/ws/v1/section/{section_id}/section_enrollment",
            wrapper="section_enrollments",
            item="section_enrollment",
            resource="section_enrollment",
            counted=False,
            label=f"section {section_id}",
        )
        for section_id in sections
    ]
    skipped_students = 0

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any] | None:
        nonlocal skipped_students
        student_id = _text(record.get("student_id"))
        if student_id not in students:
            skipped_students += 1
            return None
        section_id = _text(record.get("section_id")) or listing.path.split("/")[4]
        school_id, term_id = sections.get(section_id, (None, None))
        return {
            "enrollment_id": id_string(record.get("id")),
            "section_id": section_id,
            "student_id": student_id,
            "school_id": school_id,
            "term_id": term_id,
            "entry_date": iso_date(record.get("entry_date")),
            "exit_date": iso_date(record.get("exit_date")),
            "dropped": bool(_boolean(record.get("dropped"))),
        }

    staging = EntityStaging(engine, config, run_id, "section_enrollments")
    staging.clear([DISTRICT_SCOPE])
    _stage_listings(hook, staging, listings, build)
    note = f"read per section ({len(listings)} sections) because the CC table read was refused: {reason}"
    if skipped_students:
        note += f"; {skipped_students} enrollments of students not active in the selected schools left out"
    summary = {
        "scope": DISTRICT_SCOPE,
        "rows": staging.written.get(DISTRICT_SCOPE, 0),
        "reported_count": None,
        "requests": sum(listing.requests for listing in listings),
        "pages": sum(listing.pages for listing in listings),
        "mismatch": False,
        "note": note,
    }
    staging.write_counts([summary])
    return _result(
        hook, "section_enrollments", [summary], source="per_section", translation_requests=reference_requests
    )


def extract_section_teachers(
    hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None
) -> dict[str, Any]:
    """Stage section teachers (lead and co-teachers) from SectionTeacher + RoleDef.

    Sections.ID and Teachers.ID are translated to DCIDs; rows of sections extract does not
    stage and of teachers who are not active are left out and counted in the note.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    numbers = _school_numbers(hook, schools)
    roles_listing = hook.table_listing(
        DISTRICT_SCOPE, "roledef", ("id", "name"), identity=lambda row: id_string(row.get("id"))
    )
    teachers_listing = hook.table_listing(DISTRICT_SCOPE, "teachers", ("id", "dcid"), q="status==1")
    reads = {
        **_section_map_reads(hook, config, numbers),
        "roles": (roles_listing, ("id", "name")),
        "teachers": (teachers_listing, ("id", "dcid")),
    }
    found = _read_tables(hook, reads)
    sections = _section_map(found, numbers)
    roles = _id_map(found["roles"])
    teachers = _id_map(found["teachers"])
    listing = hook.table_listing(
        DISTRICT_SCOPE,
        "sectionteacher",
        ("id", "sectionid", "teacherid", "roleid", "start_date", "end_date", "priorityorder"),
        identity=lambda row: id_string(row.get("id")),
    )
    skipped = {"section": 0, "teacher": 0}

    def build(row: Mapping[str, Any], _listing: Listing) -> dict[str, Any] | None:
        section = sections.get(id_string(row.get("sectionid")) or "")
        if section is None:
            skipped["section"] += 1
            return None
        staff_id = teachers.get(id_string(row.get("teacherid")) or "")
        if staff_id is None:
            skipped["teacher"] += 1
            return None
        return {
            "section_id": section[0],
            "staff_id": staff_id,
            "role": roles.get(id_string(row.get("roleid")) or ""),
            "start_date": iso_date(row.get("start_date")),
            "end_date": iso_date(row.get("end_date")),
            "priority_order": _integer(row.get("priorityorder")),
        }

    staging = EntityStaging(engine, config, run_id, "section_teachers")
    staging.clear([DISTRICT_SCOPE])
    _stage_listings(hook, staging, [listing], build, source_id=lambda row: id_string(row.get("id")))
    notes = [
        f"{skipped['section']} rows of sections not staged (other schools or terms) left out"
        if skipped["section"]
        else "",
        f"{skipped['teacher']} rows of teachers who are not active left out" if skipped["teacher"] else "",
    ]
    summaries = _scope_summaries([listing], staging.written, {DISTRICT_SCOPE: [note for note in notes if note]})
    staging.write_counts(summaries)
    translation_requests = _table_requests(reads)
    return _result(hook, "section_teachers", summaries, translation_requests=translation_requests)
