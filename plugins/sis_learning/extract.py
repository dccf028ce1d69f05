"""Extract: one function per PowerSchool entity, streamed page by page into staging.

Implements the "what is imported" half of the source document's PowerSchool SIS
integration for the district's selected schools ("Select the School(s) that you want to
import data from, and set the Import Start Year"): schools, terms, courses, sections of
terms from the import start year on, active staff, active students with their
enrollment and contact email (the Student Mappings table), section enrollments and
co-teachers (rosters), and guardians with their Parent Portal account (skipped when
the district ignores parents). Extract reads and stages; it decides nothing: the rules
that leave rows out or fail them run in validate.

Every function has the shape ``extract_<entity>(hook, engine, config, run_id,
school_ids=None) -> dict`` and returns counts only (XCom carries counts, never data).
Rows go to ``raw_records`` (each record's JSON as received, lists normalised) and the
typed ``stg_<entity>`` table one page at a time; nothing holds an entity whole in memory
(only id translation maps of a few strings per student/section are kept). Before
writing, a function deletes its own ``(district, run, entity, scope)`` rows, so a
retried task never duplicates. ``extract_counts`` gets one row per entity and scope:
rows read, what ``/count`` reported, requests, pages and any mismatch. See
docs/extract.md.
"""

from __future__ import annotations

import gc
import json
import math
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.exceptions import ExtractOrderError, UnknownSchoolError
from sis_learning.hooks.http_client import PermissionDeniedError, ValidationFailedError
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.base import bulk_insert, insert_tuples
from sis_learning.staging.source import STAGED_SOURCE_TABLES, ExtractCount, RawRecord, StgStudent

DISTRICT_SCOPE = "district"
STUDENT_EXPANSIONS = "school_enrollment,contact_info"
STAFF_EXPANSIONS = "emails,school_affiliations"
GUARDIAN_QUERY = "com.pearson.core.guardian.student_guardian_detail"
# Student DCIDs per guardian PowerQuery call: big enough to keep requests near the
# minimum, small enough that the JSON body stays well under a megabyte.
GUARDIAN_QUERY_STUDENTS_PER_CALL = 5000
# PowerSchool's convention: Terms.ID = (start year - 1990) * 100 + portion (3500 = 2025-2026).
TERM_ID_YEAR_BASE = 1990
ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


# --------------------------------------------------------------------------- value helpers


def _text(value: Any) -> str | None:
    """A text column: digit-only values PowerSchool sent as numbers become strings again."""
    return id_string(value)


def _integer(value: Any) -> int | None:
    if type(value) is int:
        return value
    text = _text(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        return None


def _boolean(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "t", "yes", "y"}


def iso_date(value: Any) -> str | None:
    """``YYYY-MM-DD`` from PowerSchool's date shapes (ISO, ISO datetime, ``MM/DD/YYYY``)."""
    text = _text(value)
    if not text:
        return None
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and "1900-01-01" < text <= "9999-12-31":
        return text  # already YYYY-MM-DD: the common case, checked cheaply
    match = ISO_DATE.match(text)
    if match:
        year, month, day = (int(part) for part in match.groups())
    else:
        match = US_DATE.match(text)
        if not match:
            return None
        month, day, year = (int(part) for part in match.groups())
    if year < 1900:  # PowerSchool writes 0/0/0 or 1900-01-01 for "no date"
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _nested(record: Mapping[str, Any], *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _first(record: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


# --------------------------------------------------------------------------- staging writer


class EntityStaging:
    """Writes one entity of one run: clears its scopes first, then page after page.

    Pages are written by a thread of their own, so the database's work (SQLite's inserts
    and PostgreSQL's COPY run without Python's global lock) overlaps with reading and
    parsing the next pages. Pages waiting for it are bounded (``WRITE_QUEUE_PAGES``); a
    transaction holds one page or, when pages queue up, several (never a part of one).
    """

    WRITE_QUEUE_PAGES = 8
    ROWS_PER_TRANSACTION = 20_000

    def __init__(self, engine: Engine, config: DistrictConfig, run_id: str, entity: str) -> None:
        self.engine = engine
        self.district_id = config.district_id
        self.run_id = run_id
        self.entity = entity
        self.table = STAGED_SOURCE_TABLES[entity].__table__
        self.written: dict[str, int] = {}
        self.problems: dict[tuple[str, str], int] = {}  # (scope, rule) -> rows staged with that id problem
        self._pages: queue.Queue[_StagedPage | None] | None = None
        self._writer: threading.Thread | None = None
        self._failure: BaseException | None = None

    def clear(self, scopes: Iterable[str]) -> None:
        scopes = sorted(set(scopes))
        with self.engine.begin() as connection:
            for table in (RawRecord.__table__, ExtractCount.__table__):
                connection.execute(
                    table.delete().where(
                        table.c.district_id == self.district_id,
                        table.c.run_id == self.run_id,
                        table.c.entity == self.entity,
                        table.c.scope.in_(scopes),
                    )
                )
            connection.execute(
                self.table.delete().where(
                    self.table.c.district_id == self.district_id,
                    self.table.c.run_id == self.run_id,
                    self.table.c.scope.in_(scopes),
                )
            )
        self.written = {}

    def write_page(self, scope: str, records: list[Mapping[str, Any]], rows: list[dict[str, Any]], source_ids: list[str | None]) -> None:
        """Hand one page to the writer: raw JSON and typed rows, committed together."""
        if not rows:
            return
        if self._failure is not None:
            raise self._failure
        district_id, run_id, entity = self.district_id, self.run_id, self.entity
        raw = [
            (district_id, run_id, scope, entity, source_id, raw_json(record))
            for record, source_id in zip(records, source_ids, strict=True)
        ]
        columns = tuple(rows[0])
        values = itemgetter(*columns)
        keys = (district_id, run_id, scope)
        typed = [keys + values(row) for row in rows] if len(columns) > 1 else [(*keys, values(row)) for row in rows]
        if self._writer is None:
            self._pages = queue.Queue(maxsize=self.WRITE_QUEUE_PAGES)
            self._writer = threading.Thread(target=self._write_pages, name=f"staging-{entity}", daemon=True)
            self._writer.start()
        assert self._pages is not None
        self._pages.put(_StagedPage(scope, raw, (*TYPED_KEY_COLUMNS, *columns), typed))

    def _write_pages(self) -> None:
        """The writer thread: one connection for the whole entity, a transaction per batch."""
        assert self._pages is not None
        pages = self._pages
        finished = False
        try:
            with self.engine.connect() as connection:
                while not finished:
                    batch = [pages.get()]
                    if batch[0] is None:
                        break
                    rows = len(batch[0].typed)
                    while rows < self.ROWS_PER_TRANSACTION:
                        try:
                            page = pages.get_nowait()
                        except queue.Empty:
                            break
                        if page is None:
                            finished = True
                            break
                        batch.append(page)
                        rows += len(page.typed)
                    with connection.begin():
                        for page in batch:
                            insert_tuples(connection, RawRecord.__table__, RAW_COLUMNS, page.raw)
                            insert_tuples(connection, self.table, page.columns, page.typed)
                    for page in batch:
                        self.written[page.scope] = self.written.get(page.scope, 0) + len(page.typed)
        except BaseException as error:  # handed to the reading thread, which raises it
            self._failure = error
            while not finished:  # keep the reader from blocking on a full queue
                finished = pages.get() is None

    def close(self) -> None:
        """Wait for every handed page to be written; raise what the writer met, if anything."""
        if self._writer is not None:
            assert self._pages is not None
            self._pages.put(None)
            self._writer.join()
            self._writer = None
            self._pages = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def mark_duplicates(self, scope: str, identities: Iterable[str]) -> None:
        """Mark every staged copy of ids a listing held with different values (duplicate_source_id).

        Identities are the listing's (``guardian:student`` for guardian links). The copies
        were staged as read; validate rejects each, so neither wins by the order it came in.
        """
        keys = SOURCE_KEYS[self.entity]
        if not keys:
            return
        table = self.table
        with self.engine.begin() as connection:
            for identity in sorted(identities):
                values = identity.split(":") if len(keys) > 1 else [identity]
                if len(values) != len(keys):
                    continue
                shown = ", ".join(f"{field_name} {value}" for (_column, field_name), value in zip(keys, values, strict=True))
                connection.execute(
                    table.update()
                    .where(table.c.district_id == self.district_id, table.c.run_id == self.run_id,
                           table.c.scope == scope,
                           *[table.c[column] == value for (column, _field), value in zip(keys, values, strict=True)])
                    .values(source_problem=DUPLICATE_SOURCE_ID,
                            source_problem_reason=f"PowerSchool listed {shown} more than once with different values; "
                                                  "which record is right cannot be told, so every copy is rejected")
                )

    def write_counts(self, summaries: list[dict[str, Any]]) -> None:
        rows = [
            {
                "district_id": self.district_id,
                "run_id": self.run_id,
                "entity": self.entity,
                "scope": summary["scope"],
                "rows": summary["rows"],
                "reported_count": summary.get("reported_count"),
                "requests": summary.get("requests", 0),
                "pages": summary.get("pages", 0),
                "mismatch": bool(summary.get("mismatch")),
                "note": summary.get("note"),
            }
            for summary in summaries
        ]
        with self.engine.begin() as connection:
            bulk_insert(connection, ExtractCount, rows)


@dataclass
class _StagedPage:
    scope: str
    raw: list[tuple[Any, ...]]
    columns: tuple[str, ...]
    typed: list[tuple[Any, ...]]


RAW_COLUMNS = ("district_id", "run_id", "scope", "entity", "source_id", "payload")
TYPED_KEY_COLUMNS = ("district_id", "run_id", "scope")


def raw_json(record: Any) -> str:
    """A record's JSON for ``raw_records``: compact, non-ASCII kept as it is."""
    try:
        return orjson.dumps(record).decode()
    except TypeError:  # what orjson refuses (integers past 64 bits, non-string keys)
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _scope_summaries(listings: list[Listing], written: Mapping[str, int], extra_notes: Mapping[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """One summary per scope, adding up the listings read for it."""
    by_scope: dict[str, dict[str, Any]] = {}
    for listing in listings:
        summary = by_scope.setdefault(
            listing.scope,
            {"scope": listing.scope, "rows": 0, "reported_count": None, "requests": 0, "pages": 0, "mismatch": False, "notes": []},
        )
        summary["requests"] += listing.requests
        summary["pages"] += listing.pages
        summary["mismatch"] = summary["mismatch"] or listing.mismatch
        if listing.reported_count is not None:
            summary["reported_count"] = (summary["reported_count"] or 0) + listing.reported_count
        if listing.note:
            summary["notes"].append(listing.note if len(listings) == 1 else f"{listing.label}: {listing.note}")
    for scope, notes in (extra_notes or {}).items():
        by_scope.setdefault(
            scope, {"scope": scope, "rows": 0, "reported_count": None, "requests": 0, "pages": 0, "mismatch": False, "notes": []}
        )["notes"].extend(notes)
    for scope, summary in by_scope.items():
        summary["rows"] = written.get(scope, 0)
        summary["note"] = "; ".join(summary.pop("notes")) or None
    return sorted(by_scope.values(), key=lambda summary: summary["scope"])


def _result(hook: PowerSchoolHook, entity: str, summaries: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The counts a task returns (and XCom carries); logged with the hook's request counts."""
    reported = [summary["reported_count"] for summary in summaries if summary["reported_count"] is not None]
    result = {
        "entity": entity,
        "rows": sum(summary["rows"] for summary in summaries),
        "requests": sum(summary["requests"] for summary in summaries),
        "pages": sum(summary["pages"] for summary in summaries),
        "reported_count": sum(reported) if reported else None,
        "mismatch": any(summary["mismatch"] for summary in summaries),
        "scopes": len(summaries),
        **extra,
    }
    hook.log.info("extracted %s: %s; PowerSchool requests so far: %s", entity, result, hook.stats.as_dict())
    return result


RowBuilder = Callable[[Mapping[str, Any], Listing], dict[str, Any] | None]


def _stage_listings(
    hook: PowerSchoolHook,
    staging: EntityStaging,
    listings: list[Listing],
    build_row: RowBuilder,
    source_id: Callable[[Mapping[str, Any]], str | None] = lambda record: id_string(record.get("id")),
    *,
    page_by_page: bool = False,
) -> None:
    """Read the listings page by page and stage each page as it arrives.

    ``page_by_page`` for many listings (one per school): no ``/count`` for a listing that
    fits in one page (see ``PowerSchoolHook.read_pages``).
    """
    try:
        with _fewer_collections():
            _stage_pages(hook, staging, listings, build_row, source_id, page_by_page)
    finally:
        staging.close()
    for listing in listings:
        if listing.conflicting:
            staging.mark_duplicates(listing.scope, listing.conflicting)
    first_of_scope = {}
    for listing in listings:
        first_of_scope.setdefault(listing.scope, listing)
    for (scope, rule), count in sorted(staging.problems.items()):
        first_of_scope[scope].notes.append(f"{count} records staged for rejection as {rule}")


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the garbage collector's youngest generation less often while pages stream.

    Every page allocates thousands of short-lived dicts, each allocation counting towards
    a collection that then also walks the id maps held for the whole read: collecting
    every 50,000 allocations instead of every 700 saves about a tenth of extract's CPU.
    Reading pages creates few reference cycles, so little memory waits longer for it.
    """
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


# Per entity, the staged columns holding the record's own PowerSchool ids (all integers:
# DCIDs, GuardianID), with the source field each comes from, for the reason texts.
SOURCE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "schools": (("school_id", "id"),),
    "terms": (("term_id", "id"),),
    "courses": (("course_id", "id"),),
    "sections": (("section_id", "id"),),
    "staff": (("staff_id", "id"),),
    "students": (("student_id", "id"),),
    "section_enrollments": (("enrollment_id", "dcid"),),
    "section_teachers": (),
    "guardians": (("guardian_id", "guardianid"), ("student_id", "studentsdcid")),
}
MISSING_SOURCE_ID = "missing_source_id"
NON_INTEGER_SOURCE_ID = "non_integer_source_id"
DUPLICATE_SOURCE_ID = "duplicate_source_id"


def source_id_problem(entity: str, row: Mapping[str, Any]) -> tuple[str, str] | None:
    """(rule, reason) when a staged row's own id is missing or not an integer, else None."""
    for column, field_name in SOURCE_KEYS[entity]:
        value = row[column]
        if value is None:
            return MISSING_SOURCE_ID, f"the PowerSchool record has no {field_name} (the {entity} id); it cannot be identified"
        if not (value.isascii() and value.isdigit()):
            return NON_INTEGER_SOURCE_ID, (f"the PowerSchool record's {field_name} is {value!r}, not an integer "
                                           "(PowerSchool ids are integers)")
    return None


def _stage_pages(
    hook: PowerSchoolHook,
    staging: EntityStaging,
    listings: list[Listing],
    build_row: RowBuilder,
    source_id: Callable[[Mapping[str, Any]], str | None],
    page_by_page: bool,
) -> None:
    entity = staging.entity
    for listing, records in hook.read_pages(listings, page_by_page=page_by_page):
        kept_records, rows, ids = [], [], []
        problems = []
        for record in records:
            row = build_row(record, listing)
            if row is None:
                continue
            problem = source_id_problem(entity, row)
            if problem is not None:
                problems.append((len(rows), problem))
            kept_records.append(record)
            rows.append(row)
            ids.append(source_id(record))
        if problems:
            # A bad id is staged with its problem (every row of the page gets the columns).
            for row in rows:
                row["source_problem"] = row["source_problem_reason"] = None
            for position, (rule, reason) in problems:
                rows[position]["source_problem"], rows[position]["source_problem_reason"] = rule, reason
            for _position, (rule, _reason) in problems:
                key = (listing.scope, rule)
                staging.problems[key] = staging.problems.get(key, 0) + 1
        staging.write_page(listing.scope, kept_records, rows, ids)


def _run_extract(
    hook: PowerSchoolHook,
    engine: Engine,
    config: DistrictConfig,
    run_id: str,
    entity: str,
    listings: list[Listing],
    build_row: RowBuilder,
    **extra: Any,
) -> dict[str, Any]:
    """Stage per-school listings (one listing per school: read page by page)."""
    staging = EntityStaging(engine, config, run_id, entity)
    staging.clear(listing.scope for listing in listings)
    _stage_listings(hook, staging, listings, build_row, page_by_page=True)
    summaries = _scope_summaries(listings, staging.written, extra.pop("notes", None))
    staging.write_counts(summaries)
    return _result(hook, entity, summaries, **extra)


# --------------------------------------------------------------------------- schools


def _school_lookup(hook: PowerSchoolHook) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """(school id -> school record, school number -> school id) for the whole district."""
    by_id: dict[str, dict[str, Any]] = {}
    id_by_number: dict[str, str] = {}
    for school in hook.district_schools():
        school_id = id_string(school.get("id"))
        if school_id is None:
            continue
        by_id[school_id] = school
        number = id_string(school.get("school_number"))
        if number is not None:
            id_by_number[number] = school_id
    return by_id, id_by_number


def selected_school_ids(hook: PowerSchoolHook, config: DistrictConfig) -> list[str]:
    """The Schools.DCID of the district's selected schools ("all", DCIDs or school numbers).

    Implements "Select the School(s) that you want to import data from". A school the
    configuration names but PowerSchool does not have is a fatal error naming it.
    """
    by_id, id_by_number = _school_lookup(hook)
    if config.schools == "all":
        return sorted(by_id, key=_numeric_first)
    chosen: list[str] = []
    unknown: list[str] = []
    for entry in config.schools:
        key = str(entry).strip()
        school_id = key if key in by_id else id_by_number.get(key)
        if school_id is None:
            unknown.append(key)
        elif school_id not in chosen:
            chosen.append(school_id)
    if unknown:
        source = config.source_file or f"the configuration of district {config.district_id}"
        known = ", ".join(f"{school_id} (number {id_string(by_id[school_id].get('school_number'))}, {by_id[school_id].get('name')})" for school_id in sorted(by_id, key=_numeric_first)[:20])
        raise UnknownSchoolError(
            f"{source}: schools lists {', '.join(repr(item) for item in unknown)}, which PowerSchool does not have "
            f"(neither a Schools.DCID nor a school number). Fix the `schools` key. PowerSchool's schools: {known}"
        )
    return chosen


def _numeric_first(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)


def _schools_in_scope(hook: PowerSchoolHook, config: DistrictConfig, school_ids: list[str] | None) -> list[str]:
    selected = selected_school_ids(hook, config)
    if school_ids is None:
        return selected
    school_ids = [str(school_id) for school_id in school_ids]
    outside = [school_id for school_id in school_ids if school_id not in selected]
    if outside:
        raise UnknownSchoolError(
            f"extract was asked for school(s) {', '.join(outside)}, which are not among district "
            f"{config.district_id}'s selected schools ({', '.join(selected)})."
        )
    return school_ids


def extract_schools(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the selected schools (organizations: Schools.DCID and name)."""
    chosen = set(_schools_in_scope(hook, config, school_ids))
    # Resolving the selection read every school already (a few hundred at most): stage that read.
    records = hook.district_schools()
    listing = hook.district_schools_listing

    def build(record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "school_id": id_string(record.get("id")),
            "school_number": _text(record.get("school_number")),
            "name": _text(record.get("name")),
            "low_grade": _integer(record.get("low_grade")),
            "high_grade": _integer(record.get("high_grade")),
        }

    staging = EntityStaging(engine, config, run_id, "schools")
    staging.clear([DISTRICT_SCOPE])
    kept = [record for record in records if id_string(record.get("id")) in chosen]
    staging.write_page(DISTRICT_SCOPE, kept, [build(record) for record in kept], [id_string(record.get("id")) for record in kept])
    staging.close()
    left_out = len(records) - len(kept)
    notes = {DISTRICT_SCOPE: [f"{left_out} schools the district did not select were not staged"]} if left_out else None
    summaries = _scope_summaries([listing], staging.written, notes)
    staging.write_counts(summaries)
    return _result(hook, "schools", summaries)


# --------------------------------------------------------------------------- per-school v1 entities


TERM_COLUMNS = ("id", "dcid", "schoolid", "name", "abbreviation", "yearid", "firstday", "lastday", "portion")
# From this many schools on, one read of the terms table replaces one v1 listing per school.
TERMS_TABLE_FROM_SCHOOLS = 3


def extract_terms(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage every term of the selected schools (the class ``year`` is the term id).

    For all selected schools at once (the DAG's task), the terms come from one read of
    the ``terms`` table, scope ``district``: a page for every 1,000 terms instead of a
    request per school (the v1 term is that table's row: ``id`` = DCID, ``local_id`` = ID,
    ``start_year`` = YearID + 1990). For a subset of the schools (a task mapped over
    schools), or when the plugin may not read the table, one ``/ws/v1/school/{id}/term``
    listing per school, scope = the school.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    refused_note = None
    if school_ids is None and len(schools) >= TERMS_TABLE_FROM_SCHOOLS:
        try:
            return _terms_from_table(hook, engine, config, run_id, schools)
        except (PermissionDeniedError, ValidationFailedError) as refused:
            hook.log.warning("terms table read refused (%s); reading terms school by school", refused)
            refused_note = f"read per school because the terms table read was refused: {refused}"
    EntityStaging(engine, config, run_id, "terms").clear([DISTRICT_SCOPE])  # a table read's rows, if any
    listings = [
        hook.v1_listing(school, f"/ws/v1/school/{school}/term", wrapper="terms", item="term", resource="term", counted=False)
        for school in schools
    ]

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
        return {
            "term_id": id_string(record.get("id")),
            "local_id": _text(record.get("local_id")),
            "school_id": _text(record.get("school_id")) or listing.scope,
            "name": _text(record.get("name")),
            "abbreviation": _text(record.get("abbreviation")),
            "start_year": _integer(record.get("start_year")),
            "start_date": iso_date(record.get("start_date")),
            "end_date": iso_date(record.get("end_date")),
            "portion": _integer(record.get("portion")),
        }

    notes = {schools[0]: [refused_note]} if refused_note and schools else None
    return _run_extract(hook, engine, config, run_id, "terms", listings, build, notes=notes)


def _terms_from_table(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, schools: list[str]) -> dict[str, Any]:
    numbers = _school_numbers(hook, schools)
    listing = hook.table_listing(DISTRICT_SCOPE, "terms", TERM_COLUMNS, q=_in_list("schoolid", numbers))
    hook.read_counts([listing])  # a refused table or field fails here, before anything is staged

    def build(row: Mapping[str, Any], _listing: Listing) -> dict[str, Any]:
        number = id_string(row.get("schoolid")) or ""
        year_id = _integer(row.get("yearid"))
        return {
            "term_id": id_string(row.get("dcid")),
            "local_id": _text(row.get("id")),
            "school_id": numbers.get(number, number),
            "name": _text(row.get("name")),
            "abbreviation": _text(row.get("abbreviation")),
            "start_year": year_id + TERM_ID_YEAR_BASE if year_id is not None else None,
            "start_date": iso_date(row.get("firstday")),
            "end_date": iso_date(row.get("lastday")),
            "portion": _integer(row.get("portion")),
        }

    staging = EntityStaging(engine, config, run_id, "terms")
    staging.clear([DISTRICT_SCOPE, *schools])  # and any per-school rows of an earlier attempt
    _stage_listings(hook, staging, [listing], build, source_id=lambda row: id_string(row.get("dcid")))
    note = f"the terms of the {len(schools)} selected schools, from one read of the terms table"
    summaries = _scope_summaries([listing], staging.written, {DISTRICT_SCOPE: [note]})
    staging.write_counts(summaries)
    return _result(hook, "terms", summaries, source="table")


def extract_courses(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the courses of the selected schools (the class ``code`` is the course number)."""
    schools = _schools_in_scope(hook, config, school_ids)
    listings = [
        hook.v1_listing(school, f"/ws/v1/school/{school}/course", wrapper="courses", item="course", resource="course", counted=False)
        for school in schools
    ]

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
        return {
            "course_id": id_string(record.get("id")),
            "school_id": _text(record.get("school_id")) or listing.scope,
            "course_number": _text(record.get("course_number")),
            "course_name": _text(record.get("course_name")),
        }

    return _run_extract(hook, engine, config, run_id, "courses", listings, build)


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


def extract_staff(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the active staff of the selected schools, once each.

    A teacher affiliated with several selected schools is listed by each of them; the row
    is staged under the first school that lists it (the others' ``extract_counts`` note
    how many they shared). Call it once for all schools rather than mapped per school.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    listings = [
        hook.v1_listing(school, f"/ws/v1/school/{school}/staff", wrapper="staffs", item="staff", resource="staff", params={"expansions": STAFF_EXPANSIONS})
        for school in schools
    ]
    seen: dict[str, str] = {}  # staff id -> the school it is staged under
    shared: dict[str, int] = {}

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any] | None:
        staff_id = id_string(record.get("id"))
        staged_under = seen.get(staff_id) if staff_id is not None else None
        if staged_under is not None and staged_under != listing.scope:
            shared[listing.scope] = shared.get(listing.scope, 0) + 1
            return None
        # (the same id twice in one school's listing, with different values, is kept:
        # both copies are staged for rejection as duplicate_source_id)
        if staff_id is not None:
            seen[staff_id] = listing.scope
        affiliations = _nested(record, "school_affiliations", "school_affiliation") or []
        if isinstance(affiliations, Mapping):
            affiliations = [affiliations]
        affiliated = [id_string(item.get("school_id")) for item in affiliations if isinstance(item, Mapping)]
        # An affiliation without a status field counts as active; a status sent as ""
        # (PowerSchool's NULL) is unknown, never active by default.
        active = [
            id_string(item.get("school_id"))
            for item in affiliations
            if isinstance(item, Mapping) and ("status" not in item or _integer(item.get("status")) == 1)
        ]
        home = _text(record.get("homeschool_id"))
        return {
            "staff_id": staff_id,
            "local_id": _text(record.get("local_id")),
            "users_dcid": _text(record.get("users_dcid")),
            "first_name": _text(_nested(record, "name", "first_name")),
            "middle_name": _text(_nested(record, "name", "middle_name")),
            "last_name": _text(_nested(record, "name", "last_name")),
            "teacher_username": _text(record.get("teacher_username")),
            "admin_username": _text(record.get("admin_username")),
            "email": _text(_nested(record, "emails", "work_email")),
            "school_id": home or next((school for school in active if school), None) or listing.scope,
            "school_ids": ",".join(dict.fromkeys(school for school in affiliated if school)) or listing.scope,
            # The v1 listing returns active staff only: without a status field, 1. A status
            # field, when sent, wins, and one sent as "" (NULL) stays unknown (never active).
            "status": _integer(record.get("status")) if "status" in record else 1,
        }

    staging = EntityStaging(engine, config, run_id, "staff")
    staging.clear(schools)
    _stage_listings(hook, staging, listings, build, page_by_page=True)
    notes = {scope: [f"{count} staff already staged under another selected school"] for scope, count in shared.items()}
    summaries = _scope_summaries(listings, staging.written, notes)
    staging.write_counts(summaries)
    return _result(hook, "staff", summaries)


def extract_students(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the active students of the selected schools with enrollment and contact email.

    The v1 student listing returns students with an Active enrollment (enroll_status 0)
    by default, which is exactly what the source document imports.
    """
    schools = _schools_in_scope(hook, config, school_ids)
    listings = [
        hook.v1_listing(school, f"/ws/v1/school/{school}/student", wrapper="students", item="student", resource="student", params={"expansions": STUDENT_EXPANSIONS})
        for school in schools
    ]

    def build(record: Mapping[str, Any], listing: Listing) -> dict[str, Any]:
        enrollment = record.get("school_enrollment") if isinstance(record.get("school_enrollment"), Mapping) else {}
        return {
            "student_id": id_string(record.get("id")),
            "local_id": _text(record.get("local_id")),
            "student_number": _text(_first(record, "student_number", "local_id")),
            "first_name": _text(_nested(record, "name", "first_name")),
            "middle_name": _text(_nested(record, "name", "middle_name")),
            "last_name": _text(_nested(record, "name", "last_name")),
            "student_username": _text(record.get("student_username")),
            "email": _text(_nested(record, "contact_info", "email")),
            "school_id": _text(enrollment.get("school_id")) or listing.scope,
            "grade_level": _integer(enrollment.get("grade_level")),
            "enroll_status": _text(enrollment.get("enroll_status")),
            "enroll_status_code": _integer(enrollment.get("enroll_status_code")),
            "entry_date": iso_date(enrollment.get("entry_date")),
            "exit_date": iso_date(enrollment.get("exit_date")),
        }

    return _run_extract(hook, engine, config, run_id, "students", listings, build)


# --------------------------------------------------------------------------- rosters (CC, SectionTeacher)


def _school_numbers(hook: PowerSchoolHook, school_ids: list[str]) -> dict[str, str]:
    """school number -> school id for the given schools (tables use numbers, v1 uses DCIDs)."""
    by_id, _ = _school_lookup(hook)
    return {id_string(by_id[school_id].get("school_number")) or "": school_id for school_id in school_ids}


def _in_list(column: str, values: Iterable[str]) -> str:
    return f"{column}==({','.join(values)})"


TableRead = tuple["SchoolTableRead | Listing", tuple[str, ...]]


def _read_tables(hook: PowerSchoolHook, reads: Mapping[str, TableRead]) -> dict[str, list[tuple[str | None, ...]]]:
    """Read several id-translation tables side by side (one concurrent read, not one after
    the other); per name, the requested columns of every row as identifier strings."""
    wholes = [read.whole if isinstance(read, SchoolTableRead) else read for read, _columns in reads.values()]
    hook.read_counts(wholes)
    names: dict[int, tuple[str, tuple[str, ...]]] = {}
    listings: list[Listing] = []
    for name, (read, columns) in reads.items():
        for listing in read.parts() if isinstance(read, SchoolTableRead) else [read]:
            names[id(listing)] = (name, columns)
            listings.append(listing)
    found: dict[str, list[tuple[str | None, ...]]] = {name: [] for name in reads}
    with _fewer_collections():
        for listing, rows in hook.read_pages(listings, page_by_page=True):
            name, columns = names[id(listing)]
            found[name].extend(tuple(id_string(row.get(column)) for column in columns) for row in rows)
    for read, _columns in reads.values():
        if isinstance(read, SchoolTableRead):
            read.finish()
    return found


def _table_requests(reads: Mapping[str, TableRead]) -> int:
    return sum((read.whole if isinstance(read, SchoolTableRead) else read).requests for read, _columns in reads.values())


def _id_map(rows: Iterable[tuple[str | None, ...]]) -> dict[str, str]:
    """(source, target) rows -> {source: target}, rows missing either left out."""
    return {source: target for source, target in rows if source is not None and target is not None}


def _first_term_id(config: DistrictConfig) -> int:
    return (config.import_start_year - TERM_ID_YEAR_BASE) * 100


# A school-wide table read of more pages than this is read as several listings, one per
# group of schools, each paged in order (see _school_groups).
SPLIT_TABLE_READ_ABOVE_PAGES = 100


class SchoolTableRead:
    """A ``/ws/schema/table`` read over the selected schools (``schoolid==(numbers)``).

    ``whole`` is the read as one listing: its ``/count`` is read first (a refused table or
    field fails there, cheaply) and is the cross-check of everything read. A large read is
    then paged as several listings, one per group of schools (:meth:`parts`): each is read
    page by page, in order, the groups side by side. Paging one listing hundreds of pages
    deep with every page requested at once makes the server find each page's start from
    the top (an OFFSET-style scan, in PowerSchool's database as in the simulator), so its
    work grows with the square of the table; in order, each page continues where the last
    ended. The split costs about one short last page per group.
    """

    def __init__(self, hook: PowerSchoolHook, table: str, projection: tuple[str, ...], numbers: Iterable[str],
                 q: str | None = None, identity: Callable[[Mapping[str, Any]], str | None] | None = None) -> None:
        self.hook = hook
        self.table = table
        self.projection = projection
        self.numbers = sorted(numbers, key=_numeric_first)
        self.q = q
        self.identity = identity
        self.whole = self._listing(self.numbers)
        self._parts: list[Listing] = []

    def _listing(self, numbers: list[str]) -> Listing:
        q = ";".join(part for part in (_in_list("schoolid", numbers), self.q) if part)
        return self.hook.table_listing(DISTRICT_SCOPE, self.table, self.projection, q=q, identity=self.identity)

    def parts(self) -> list[Listing]:
        """The listings to page (the whole one when small); needs ``whole``'s count read."""
        pages = math.ceil((self.whole.reported_count or 0) / self.whole.page_size)
        groups = min(len(self.numbers), 2 * self.hook.max_concurrent_requests)
        if pages <= SPLIT_TABLE_READ_ABOVE_PAGES or groups < 2:
            self._parts = [self.whole]
        else:
            self._parts = [self._listing(self.numbers[start::groups]) for start in range(groups)]
            for number, part in enumerate(self._parts, start=1):
                part.label = f"table {self.table} (school group {number} of {groups})"
        return self._parts

    def finish(self) -> Listing:
        """``whole`` with what its parts read added up (rows, pages, requests, their notes)."""
        whole = self.whole
        for part in self._parts:
            if part is whole:
                continue
            whole.rows += part.rows
            whole.pages += part.pages
            whole.requests += part.requests
            if part.note:  # repeated rows dropped, clamping, ...
                whole.notes.append(f"{part.label}: {part.note}")
        return whole


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
    """
    schools = _schools_in_scope(hook, config, school_ids)
    try:
        return _section_enrollments_from_cc(hook, engine, config, run_id, schools)
    except (PermissionDeniedError, ValidationFailedError) as refused:
        hook.log.warning("CC table read refused (%s); reading enrollments section by section", refused)
        return _section_enrollments_per_section(hook, engine, config, run_id, schools, reason=str(refused))


def _section_enrollments_from_cc(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, schools: list[str]) -> dict[str, Any]:
    numbers = _school_numbers(hook, schools)
    # Only the columns staging uses: a CC row's school and term are its section's (from the
    # section map), so CC.SchoolID and CC.TermID are filtered on but not transferred (a
    # quarter less for PowerSchool to render and for extract to parse, per CC row).
    cc_read = SchoolTableRead(
        hook,
        "cc",
        ("id", "dcid", "studentid", "sectionid", "dateenrolled", "dateleft"),
        numbers,
        q=f"termid=ge={_first_term_id(config)}",
    )
    cc = cc_read.whole
    # Refusals come first and cheaply: the count of CC is read before any map is built.
    hook.read_counts([cc])
    students_read = SchoolTableRead(hook, "students", ("id", "dcid"), numbers, q="enroll_status==0")
    reads = {**_section_map_reads(hook, config, numbers), "students": (students_read, ("id", "dcid"))}
    found = _read_tables(hook, reads)
    sections = _section_map(found, numbers)
    students = _id_map(found.pop("students"))
    found.clear()
    skipped = {"section": 0, "student": 0}

    def build(row: Mapping[str, Any], _listing: Listing) -> dict[str, Any] | None:
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
    _stage_listings(hook, staging, parts, build, source_id=lambda row: id_string(row.get("dcid") or row.get("id")),
                    page_by_page=len(parts) > 1)
    cc_read.finish()
    notes = [
        f"{skipped['section']} CC rows of sections not staged (other schools or terms) left out" if skipped["section"] else "",
        f"{skipped['student']} CC rows of students not active in the selected schools left out" if skipped["student"] else "",
    ]
    summaries = _scope_summaries([cc], staging.written, {DISTRICT_SCOPE: [note for note in notes if note]})
    # The cross-check compares CC rows read with CC's count, not the staged subset.
    summaries[0]["mismatch"] = cc.mismatch
    staging.write_counts(summaries)
    translation_requests = _table_requests(reads)
    return _result(hook, "section_enrollments", summaries, source="cc", translation_requests=translation_requests)


def _entity_completed(engine: Engine, config: DistrictConfig, run_id: str, entity: str) -> bool:
    """Whether ``entity`` finished extracting in this run (its extract_counts rows exist)."""
    table = ExtractCount.__table__
    with engine.connect() as connection:
        found = connection.execute(
            select(table.c.id).where(table.c.district_id == config.district_id, table.c.run_id == run_id, table.c.entity == entity)
        ).first()
    return found is not None


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


# --------------------------------------------------------------------------- guardians


def _staged_student_ids(engine: Engine, config: DistrictConfig, run_id: str, schools: list[str]) -> Iterable[str]:
    table = StgStudent.__table__
    query = (
        select(table.c.student_id)
        .where(table.c.district_id == config.district_id, table.c.run_id == run_id, table.c.school_id.in_(schools))
        .order_by(table.c.id)
    )
    with engine.connect() as connection:
        for (student_id,) in connection.execute(query):
            yield student_id


def extract_guardians(hook: PowerSchoolHook, engine: Engine, config: DistrictConfig, run_id: str, school_ids: list[str] | None = None) -> dict[str, Any]:
    """Stage the guardians of the staged students (the student_guardian_detail PowerQuery).

    Parents are imported by default; "Ignore Parents from SIS" (``ignore_parents``) skips
    the read entirely. The query takes student DCIDs, so this runs after
    ``extract_students`` in the same run and asks for them in batches.
    """
    staging = EntityStaging(engine, config, run_id, "guardians")
    if config.ignore_parents:
        staging.clear([DISTRICT_SCOPE])
        summary = {"scope": DISTRICT_SCOPE, "rows": 0, "reported_count": None, "requests": 0, "pages": 0, "mismatch": False,
                   "note": "skipped: the district ignores parents from the SIS"}
        staging.write_counts([summary])
        return _result(hook, "guardians", [summary], skipped=True)
    schools = _schools_in_scope(hook, config, school_ids)
    if not _entity_completed(engine, config, run_id, "students"):
        raise ExtractOrderError(
            f"Guardians are read for the staged students, so extract_students must run before extract_guardians in run {run_id}."
        )

    columns = _ColumnPicker(GUARDIAN_COLUMNS)

    def identity(row: Mapping[str, Any]) -> str | None:
        guardian, student = id_string(columns.value(row, "guardian_id")), id_string(columns.value(row, "student_id"))
        return f"{guardian}:{student}" if guardian and student else None

    staging.clear([DISTRICT_SCOPE])
    # All batches go to one concurrent read: a few strings per student, never the guardians.
    student_ids = list(_staged_student_ids(engine, config, run_id, schools))
    listings: list[Listing] = []
    for start in range(0, len(student_ids), GUARDIAN_QUERY_STUDENTS_PER_CALL):
        batch = student_ids[start:start + GUARDIAN_QUERY_STUDENTS_PER_CALL]
        listing = hook.query_listing(DISTRICT_SCOPE, GUARDIAN_QUERY, {"students_dcid": batch}, identity=identity)
        listing.label = f"students {batch[0]}..{batch[-1]}"
        listings.append(listing)

    def build(row: Mapping[str, Any], _listing: Listing) -> dict[str, Any] | None:
        value = columns.values(row)
        # A link without a guardian or student id is staged too (as missing_source_id).
        guardian_id, student_id = id_string(value["guardian_id"]), id_string(value["student_id"])
        username = _text(value["portal_username"])
        return {
            "guardian_id": guardian_id,
            "student_id": student_id,
            "first_name": _text(value["first_name"]),
            "last_name": _text(value["last_name"]),
            "portal_username": username,
            "portal_enabled": _boolean(value["portal_enabled"]) if username else None,
            "email": _text(value["email"]),
            "relationship": _text(value["relationship"]),
        }

    # Many batches are read side by side, each page by page; one or a few, counted and fanned out.
    page_by_page = len(listings) >= hook.max_concurrent_requests
    _stage_listings(hook, staging, listings, build, source_id=identity, page_by_page=page_by_page)
    summaries = _scope_summaries(listings, staging.written) if listings else [
        {"scope": DISTRICT_SCOPE, "rows": 0, "reported_count": None, "requests": 0, "pages": 0, "mismatch": False, "note": "no staged students"}
    ]
    staging.write_counts(summaries)
    return _result(hook, "guardians", summaries)


# Staged guardian field -> the PowerQuery column names it may come under (the first one
# with a value wins), as the query's versions name them.
GUARDIAN_COLUMNS = {
    "guardian_id": ("guardianid", "guardian_id"),
    "student_id": ("studentsdcid", "students_dcid", "studentdcid", "student_dcid"),
    "first_name": ("firstname", "first_name"),
    "last_name": ("lastname", "last_name"),
    "portal_username": ("username", "pcas_username", "portal_username"),
    "portal_enabled": ("isenabled", "portal_enabled"),
    "email": ("emailaddress", "email"),
    "relationship": ("relationship", "relationship_type"),
}


class _ColumnPicker:
    """``_first(row, *names)`` for many rows with the same columns, decided once per column set.

    Where a row has exactly one of a field's names, that column is read directly; where it
    has several, the first with a value wins, as :func:`_first` does.
    """

    def __init__(self, fields: Mapping[str, tuple[str, ...]]) -> None:
        self.fields = dict(fields)
        self._columns: set[str] | None = None
        self._plan: dict[str, tuple[str | None, tuple[str, ...]]] = {}

    def _plan_for(self, row: Mapping[str, Any]) -> dict[str, tuple[str | None, tuple[str, ...]]]:
        if self._columns is None or row.keys() != self._columns:
            self._columns = set(row)
            plan = {}
            for field, names in self.fields.items():
                present = tuple(name for name in names if name in self._columns)
                plan[field] = (present[0], ()) if len(present) == 1 else (None, present)
            self._plan = plan
        return self._plan

    def value(self, row: Mapping[str, Any], field: str) -> Any:
        single, several = self._plan_for(row)[field]
        if single is not None:
            found = row[single]
            return None if found == "" else found
        return _first(row, *several) if several else None

    def values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        found = {}
        for field, (single, several) in self._plan_for(row).items():
            if single is not None:
                value = row[single]
                found[field] = None if value == "" else value
            else:
                found[field] = _first(row, *several) if several else None
        return found


# The metadata resource whose maximum page size bounds each entity's main read (terms:
# the terms table, read for all the selected schools at once).
PAGE_SIZE_RESOURCE = {
    "schools": "school", "terms": "schema_table_query", "courses": "course", "sections": "section", "staff": "staff",
    "students": "student", "section_enrollments": "schema_table_query", "section_teachers": "schema_table_query",
    "guardians": "schema_table_query",
}


def minimum_requests(engine: Engine, district_id: str, run_id: str, hook: PowerSchoolHook) -> int:
    """The fewest page requests the run's extract could have made, listing as the API lists.

    Sum over the run's ``extract_counts`` rows (entity and scope) of
    ``max(1, ceil(rows / max page size))``, with the reported count standing for the rows
    where one was read: terms, courses, sections, staff and students can only be listed
    school by school, so at least one page per school and entity. The benchmark and
    ``bench/extract_benchmark.py`` compare the requests made with it.
    """
    table = ExtractCount.__table__
    query = select(table.c.entity, table.c.rows, table.c.reported_count).where(
        table.c.district_id == district_id, table.c.run_id == run_id)
    total = 0
    with engine.connect() as connection:
        for entity, rows, reported in connection.execute(query):
            page_size = hook.max_page_size(PAGE_SIZE_RESOURCE[entity])
            total += max(1, math.ceil((reported if reported is not None else rows) / page_size))
    return total


ENTITY_EXTRACTS: dict[str, Callable[..., dict[str, Any]]] = {
    "schools": extract_schools,
    "terms": extract_terms,
    "courses": extract_courses,
    "sections": extract_sections,
    "staff": extract_staff,
    "students": extract_students,
    "section_enrollments": extract_section_enrollments,
    "section_teachers": extract_section_teachers,
    "guardians": extract_guardians,
}
"""Entity name -> extract function, in an order that satisfies their dependencies."""
