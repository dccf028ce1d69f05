"""Staging writer: one entity of one run, page after page, into ``raw_records`` and ``stg_<entity>``.

``EntityStaging`` clears the entity's ``(district, run, entity, scope)`` rows first (a
retried task never duplicates), then writes raw JSON and typed rows page by page from a
thread of its own. ``SOURCE_KEYS`` names each entity's own PowerSchool ids, whose
problems (missing, not an integer, listed twice) are staged with the row for validate;
extract finds the missing and non-integer ones (``extract.values.source_id_problem``) and
cleans the page's values before handing it over; the writer marks the duplicates.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.staging.base import bulk_insert, insert_tuples
from sis_learning.staging.source import STAGED_SOURCE_TABLES, ExtractCount, RawRecord

DISTRICT_SCOPE = "district"


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

    def write_page(
        self, scope: str, records: list[Mapping[str, Any]], rows: list[dict[str, Any]], source_ids: list[str | None]
    ) -> None:
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
                shown = ", ".join(
                    f"{field_name} {value}" for (_column, field_name), value in zip(keys, values, strict=True)
                )
                connection.execute(
                    table.update()
                    .where(
                        table.c.district_id == self.district_id,
                        table.c.run_id == self.run_id,
                        table.c.scope == scope,
                        *[table.c[column] == value for (column, _field), value in zip(keys, values, strict=True)],
                    )
                    .values(
                        source_problem=DUPLICATE_SOURCE_ID,
                        source_problem_reason=f"PowerSchool listed {shown} more than once with different values; "
                        "which record is right cannot be told, so every copy is rejected",
                    )
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
DUPLICATE_SOURCE_ID = "duplicate_source_id"
