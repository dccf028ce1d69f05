"""Sections and rosters: sections, section enrollments (CC) and section teachers.
"""

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
    _in_list,
    _read_tables,
    _result,
    _run_extract,
    _scope_summaries,
    _stage_listings,
    _table_requests,
)
from sis_learning.extract.schools import (
    _first_term_id,
    _school_numbers,
    _schools_in_scope,
)
from sis_learning.extract.values import _boolean, _integer, _numeric_first, _text, iso_date
from sis_learning.extract.writer import DISTRICT_SCOPE, EntityStaging
from sis_learning.hooks.http_client import PermissionDeniedError, ValidationFailedError
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string


def _sections_listing(hook: PowerSchoolHook, config: DistrictConfig, school: str) -> Listing:
    """A school's sections in terms from the import start year on (the filter is in the request)."""
    return hook.v1_listing(
        school,
        f"/ws/v1/school/{school}/section",
        wrapper="sections",
        item="section",
        resource="section",
        params={"q": f"term.start_year=ge={config.import_start_year}"},
    )


def extract_sections(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the sections of terms from the import start year on.

    The start year filter is part of the request (``q=term.start_year=ge=YEAR``), so older
    sections are never transferred, staged or counted (counting them would cost one more
    request per school for a figure nothing downstream uses).

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    listings = [_sections_listing(hook, config, school) for school in schools]

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

    return _run_extract(hook, engine, config, run_id, "sections", listings, build)


def _section_map_reads(hook: PowerSchoolHook, config: DistrictConfig, numbers: Mapping[str, str]) -> dict[str, TableRead]:
    """The table reads behind :func:`_section_map`: sections from the start year, and terms."""
    sections = SchoolTableRead(hook, "sections", ("id", "dcid", "schoolid", "termid"), numbers, q=f"termid=ge={_first_term_id(config)}")
    terms = SchoolTableRead(hook, "terms", ("id", "dcid", "schoolid"), numbers)
    return {"sections": (sections, ("id", "dcid", "schoolid", "termid")), "terms": (terms, ("schoolid", "id", "dcid"))}


def _section_map(found: Mapping[str, list[tuple[str | None, ...]]], numbers: Mapping[str, str]) -> dict[str, tuple[str, str, str | None]]:
    """Sections.ID -> (Sections.DCID, school id, term id) for the sections extract stages."""
    term_ids = {(number or "", term or ""): dcid or "" for number, term, dcid in found["terms"]}
    sections: dict[str, tuple[str, str, str | None]] = {}
    for section_id, dcid, number, term in found["sections"]:
        if section_id and dcid:
            number = number or ""
            sections[section_id] = (dcid, numbers.get(number, number), term_ids.get((number, term or "")))
    return sections


def extract_section_enrollments(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
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
    try:
        return _section_enrollments_from_cc(hook, engine, config, run_id, schools)
    except (PermissionDeniedError, ValidationFailedError) as refused:
        hook.log.warning("CC table read refused (%s); reading enrollments section by section", refused)
        return _section_enrollments_per_section(hook, engine, config, run_id, schools, reason=str(refused))


CC_COLUMNS = ("id", "dcid", "studentid", "sectionid", "dateenrolled", "dateleft")
# Ids per CC read of the enrollments of students or sections new since the base run.
CC_IDS_PER_READ = 400


def _section_enrollments_from_cc(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, schools: list[str]) -> dict[str, Any]:
    numbers = _school_numbers(hook, schools)
    plan = incremental.plan_read(engine, config, run_id, "section_enrollments")
    # Only the columns staging uses: a CC row's school and term are its section's (from the
    # section map), so CC.SchoolID and CC.TermID are filtered on but not transferred (a
    # quarter less for PowerSchool to render and for extract to parse, per CC row).
    in_terms = f"termid=ge={_first_term_id(config)}"

    def cc_read_from(plan: incremental.ReadPlan) -> SchoolTableRead:
        cursor = incremental.ENTITY_CURSORS["section_enrollments"][1]
        q = f"{in_terms};{cursor}=ge={plan.read_from}" if plan.incremental else in_terms
        return SchoolTableRead(hook, "cc", CC_COLUMNS, numbers, q=q)

    cc_read = cc_read_from(plan)
    cc = cc_read.whole
    # Refusals come first and cheaply: the count of CC is read before any map is built.
    try:
        hook.read_counts([cc])
    except (PermissionDeniedError, ValidationFailedError) as refused:
        if not plan.incremental:
            raise
        # The plugin may read CC but not its cursor: read in full, and say so in the report.
        hook.log.warning("CC cursor read refused (%s); reading CC in full", refused)
        plan = incremental.ReadPlan("section_enrollments", incremental.FULL, plan.read_at,
                                    note=f"full read: the plugin may not filter CC on whenmodified ({refused})")
        cc_read = cc_read_from(plan)
        cc = cc_read.whole
        hook.read_counts([cc])
    students_read = SchoolTableRead(hook, "students", ("id", "dcid"), numbers, q="enroll_status==0")
    reads = {**_section_map_reads(hook, config, numbers), "students": (students_read, ("id", "dcid"))}
    found = _read_tables(hook, reads)
    sections = _section_map(found, numbers)
    students = _id_map(found.pop("students"))
    found.clear()
    skipped = {"section": 0, "student": 0}
    read_ids: set[str] = set()  # every CC row read (incremental: none of them is carried forward)
    track = plan.incremental

    def build(row: Mapping[str, Any], _listing: Listing) -> dict[str, Any] | None:
        if track:
            source_id = id_string(row.get("dcid") or row.get("id"))
            if source_id is not None:
                if source_id in read_ids:
                    return None  # read by both the cursor read and a new student's or section's read
                read_ids.add(source_id)
        # Table values are strings: a positive section id is looked up as it came (the
        # common case, once per CC row); anything else (a dropped enrollment's negative
        # id, a number, spaces) goes the general way.
        raw_section_id = row.get("sectionid")
        section = sections.get(raw_section_id) if type(raw_section_id) is str else None
        dropped = False
        if section is None:
            raw_section = _integer(raw_section_id)
            section = sections.get(str(abs(raw_section))) if raw_section is not None else None
            dropped = raw_section is not None and raw_section < 0
        if section is None:
            skipped["section"] += 1
            return None
        raw_student_id = row.get("studentid")
        student = students.get(raw_student_id) if type(raw_student_id) is str else None
        if student is None:
            student = students.get(id_string(raw_student_id) or "")
        if student is None:
            skipped["student"] += 1
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

    staging = EntityStaging(engine, config, run_id, "section_enrollments")
    staging.clear([DISTRICT_SCOPE])
    parts = cc_read.parts()
    newcomers: list[Listing] = []
    if plan.incremental:
        assert plan.base_run_id is not None
        newcomers = _newcomer_reads(hook, engine, config, plan.base_run_id, sections, students)
    listings = [*parts, *newcomers]
    _stage_listings(hook, staging, listings, build, source_id=lambda row: id_string(row.get("dcid") or row.get("id")),
                    page_by_page=len(listings) > 1)
    cc_read.finish()
    notes = [
        f"{skipped['section']} CC rows of sections not staged (other schools or terms) left out" if skipped["section"] else "",
        f"{skipped['student']} CC rows of students not active in the selected schools left out" if skipped["student"] else "",
    ]
    carried = 0
    if plan.incremental:
        assert plan.base_run_id is not None
        place = {dcid: (school_id, term_id) for dcid, school_id, term_id in sections.values()}
        active = set(students.values())

        def keep(row: dict[str, Any]) -> dict[str, Any] | None:
            # What a full read would stage of an unchanged row, by today's sections and students.
            where = place.get(row["section_id"])
            if where is None or row["student_id"] not in active:
                return None
            row["school_id"], row["term_id"] = where
            return row

        carried = incremental.carry_forward(engine, config, run_id, "section_enrollments", plan.base_run_id,
                                            read_ids, keep, DISTRICT_SCOPE)
        changed = staging.written.get(DISTRICT_SCOPE, 0)
        staging.written[DISTRICT_SCOPE] = changed + carried
        notes.append(f"{len(read_ids)} CC rows read as changed or new ({sum(part.requests for part in newcomers)} "
                     f"requests for {len(newcomers)} reads of newly active students' or new sections' rows), "
                     f"{carried} unchanged rows carried forward from run {plan.base_run_id}")
    summaries = _scope_summaries([cc], staging.written, {DISTRICT_SCOPE: [plan.note, *(note for note in notes if note)]})
    # The cross-check compares CC rows read with CC's count, not the staged subset.
    summaries[0]["mismatch"] = cc.mismatch
    summaries[0]["requests"] += sum(listing.requests for listing in newcomers)
    summaries[0]["pages"] += sum(listing.pages for listing in newcomers)
    staging.write_counts(summaries)
    incremental.record_read(engine, config, run_id, plan)
    translation_requests = _table_requests(reads)
    return _result(hook, "section_enrollments", summaries, source="cc", translation_requests=translation_requests,
                   read_mode=plan.mode, carried_forward=carried)


def _newcomer_reads(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, base_run_id: str,
                    sections: Mapping[str, tuple[str, str, str | None]], students: Mapping[str, str]) -> list[Listing]:
    """CC reads for students and sections in scope now but not in the base run.

    Their enrollments may be unchanged (a student whose enrollment became active again, a
    section whose term moved into the import years): the cursor does not see them, and the
    base run left them out, so they are read by id.
    """
    base_students = incremental.staged_ids(engine, config.district_id, base_run_id, "students", "student_id")
    base_sections = incremental.staged_ids(engine, config.district_id, base_run_id, "sections", "section_id")
    new_students = sorted((student_id for student_id, dcid in students.items() if dcid not in base_students), key=_numeric_first)
    new_sections = sorted((section_id for section_id, (dcid, _school, _term) in sections.items() if dcid not in base_sections),
                          key=_numeric_first)
    listings = []
    for column, ids in (("studentid", new_students), ("sectionid", [*new_sections, *(f"-{i}" for i in new_sections)])):
        for start in range(0, len(ids), CC_IDS_PER_READ):
            listing = hook.table_listing(DISTRICT_SCOPE, "cc", CC_COLUMNS, q=_in_list(column, ids[start:start + CC_IDS_PER_READ]))
            listing.label = f"cc of new {column} ({len(ids[start:start + CC_IDS_PER_READ])})"
            listings.append(listing)
    return listings


def _section_enrollments_per_section(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, schools: list[str], reason: str) -> dict[str, Any]:
    # The fallback reads its own section and student ids (the same listings extract_sections
    # and extract_students read), so it does not depend on those tasks having run first.
    section_listings = [_sections_listing(hook, config, school) for school in schools]
    sections: dict[str, tuple[str | None, str | None]] = {}
    for listing, rows in hook.read_pages(section_listings, page_by_page=True):
        for row in rows:
            sections[id_string(row.get("id")) or ""] = (_text(row.get("school_id")) or listing.scope, _text(row.get("term_id")))
    student_listings = [
        hook.v1_listing(school, f"/ws/v1/school/{school}/student", wrapper="students", item="student", resource="student")
        for school in schools
    ]
    # The same population as the CC read: enrollments of active students of the selected schools.
    students = {id_string(row.get("id")) for _listing, rows in hook.read_pages(student_listings, page_by_page=True) for row in rows}
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
    return _result(hook, "section_enrollments", [summary], source="per_section", translation_requests=reference_requests)


def extract_section_teachers(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage section teachers (lead and co-teachers) from SectionTeacher + RoleDef.

    Sections.ID and Teachers.ID are translated to DCIDs; rows of sections extract does not
    stage and of teachers who are not active are left out and counted in the note.

    Args: ``hook`` the district's PowerSchoolHook, ``engine`` staging, ``config`` the district,
    ``run_id`` the run the rows are staged under, ``school_ids`` only these selected schools
    (None: all). Returns counts (rows, per school, requests), never rows.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    numbers = _school_numbers(hook, schools)
    roles_listing = hook.table_listing(DISTRICT_SCOPE, "roledef", ("id", "name"), identity=lambda row: id_string(row.get("id")))
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
        f"{skipped['section']} rows of sections not staged (other schools or terms) left out" if skipped["section"] else "",
        f"{skipped['teacher']} rows of teachers who are not active left out" if skipped["teacher"] else "",
    ]
    summaries = _scope_summaries([listing], staging.written, {DISTRICT_SCOPE: [note for note in notes if note]})
    staging.write_counts(summaries)
    translation_requests = _table_requests(reads)
    return _result(hook, "section_teachers", summaries, translation_requests=translation_requests)
