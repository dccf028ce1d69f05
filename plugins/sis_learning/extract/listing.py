"""The listing and paging strategy: how every entity's listings are read and staged.

Reading listings page by page into ``EntityStaging`` (``_stage_listings``), per-scope
summaries and the counts a task returns, district-wide ``/ws/schema/table`` reads over the
selected schools (``SchoolTableRead``, paged in school groups when large), side-by-side
id-translation reads (``_read_tables``), and the fewest requests a run could have made
(``minimum_requests``). Entity modules say what to read and how a record becomes a row;
this module says how it is read.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.entities import SOURCE_ENTITIES
from sis_learning.extract.values import _numeric_first, record_value_problems, source_id_problem
from sis_learning.hooks.powerschool import Listing, PowerSchoolHook, id_string
from sis_learning.staging.source import ExtractCount
from sis_learning.staging.writer import DISTRICT_SCOPE, EntityStaging


def _scope_summaries(
    listings: list[Listing], written: Mapping[str, int], extra_notes: Mapping[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """One summary per scope, adding up the listings read for it."""
    by_scope: dict[str, dict[str, Any]] = {}
    for listing in listings:
        summary = by_scope.setdefault(
            listing.scope,
            {
                "scope": listing.scope,
                "rows": 0,
                "reported_count": None,
                "requests": 0,
                "pages": 0,
                "mismatch": False,
                "notes": [],
            },
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
            scope,
            {
                "scope": scope,
                "rows": 0,
                "reported_count": None,
                "requests": 0,
                "pages": 0,
                "mismatch": False,
                "notes": [],
            },
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
    # The task logs its own one-line summary (report.step_summary); the detail is for debugging.
    hook.log.debug("extracted %s: %s; PowerSchool requests so far: %s", entity, result, hook.stats.as_dict())
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
    scope_of: Callable[[dict[str, Any], Listing], str] | None = None,
) -> None:
    """Read the listings page by page and stage each page as it arrives.

    ``page_by_page`` for many listings (one per school): no ``/count`` for a listing that
    fits in one page (see ``PowerSchoolHook.read_pages``). ``scope_of`` stages each row
    under a scope of its own (a district-wide read of rows staged per school) instead of
    its listing's.
    """
    try:
        with _fewer_collections():
            _stage_pages(hook, staging, listings, build_row, source_id, page_by_page, scope_of)
    finally:
        staging.close()
    for listing in listings:
        if listing.conflicting:
            staging.mark_duplicates(listing.scope, listing.conflicting)
    first_of_scope = {}
    for listing in listings:
        first_of_scope.setdefault(listing.scope, listing)
    for (scope, rule), count in sorted(staging.problems.items()):
        (first_of_scope.get(scope) or listings[0]).notes.append(f"{count} records staged for rejection as {rule}")


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


def _stage_pages(
    hook: PowerSchoolHook,
    staging: EntityStaging,
    listings: list[Listing],
    build_row: RowBuilder,
    source_id: Callable[[Mapping[str, Any]], str | None],
    page_by_page: bool,
    scope_of: Callable[[dict[str, Any], Listing], str] | None = None,
) -> None:
    entity = staging.entity
    for listing, records in hook.read_pages(listings, page_by_page=page_by_page):
        built = [(record, row) for record in records if (row := build_row(record, listing)) is not None]
        if scope_of is None:
            _stage_page(staging, listing.scope, built, source_id, entity)
            continue
        by_scope: dict[str, list[tuple[Mapping[str, Any], dict[str, Any]]]] = {}
        for record, row in built:
            by_scope.setdefault(scope_of(row, listing), []).append((record, row))
        for scope, scoped in by_scope.items():
            _stage_page(staging, scope, scoped, source_id, entity)


def _stage_page(
    staging: EntityStaging,
    scope: str,
    built: list[tuple[Mapping[str, Any], dict[str, Any]]],
    source_id: Callable[[Mapping[str, Any]], str | None],
    entity: str,
) -> None:
    """Stage one page's built rows under ``scope``, each own-id problem staged with its row."""
    kept_records, rows, ids = [], [], []
    problems = []
    for record, row in built:
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
            key = (scope, rule)
            staging.problems[key] = staging.problems.get(key, 0) + 1
    record_value_problems(entity, rows)
    staging.write_page(scope, kept_records, rows, ids)


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
    return sum(
        (read.whole if isinstance(read, SchoolTableRead) else read).requests for read, _columns in reads.values()
    )


def _id_map(rows: Iterable[tuple[str | None, ...]]) -> dict[str, str]:
    """(source, target) rows -> {source: target}, rows missing either left out."""
    return {source: target for source, target in rows if source is not None and target is not None}


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

    def __init__(
        self,
        hook: PowerSchoolHook,
        table: str,
        projection: tuple[str, ...],
        numbers: Iterable[str],
        q: str | None = None,
        identity: Callable[[Mapping[str, Any]], str | None] | None = None,
    ) -> None:
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


def _entity_completed(engine: Engine, config: DistrictConfig, run_id: str, entity: str) -> bool:
    """Whether ``entity`` finished extracting in this run (its extract_counts rows exist)."""
    table = ExtractCount.__table__
    with engine.connect() as connection:
        found = connection.execute(
            select(table.c.id).where(
                table.c.district_id == config.district_id, table.c.run_id == run_id, table.c.entity == entity
            )
        ).first()
    return found is not None


# The metadata resource whose maximum page size bounds each entity's main read (terms:
# the terms table, read for all the selected schools at once).
PAGE_SIZE_RESOURCE = {entity.name: entity.page_size_resource for entity in SOURCE_ENTITIES}


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
        table.c.district_id == district_id, table.c.run_id == run_id
    )
    total = 0
    with engine.connect() as connection:
        for entity, rows, reported in connection.execute(query):
            page_size = hook.max_page_size(PAGE_SIZE_RESOURCE[entity])
            total += max(1, math.ceil((reported if reported is not None else rows) / page_size))
    return total
