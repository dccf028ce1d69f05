"""Grade push: Learning's gradebook changes -> PowerTeacher (Pro or the legacy Gradebook), exactly once, in seconds.

Implements the source document's grade push (SIS 10.1+, "Grade Push Frequency:
Immediate", "Grade Pull: No", the "Grade Mappings" table, and "Manage Domain -> Grade
Push Config ... Enable each Organization ... imported classes ... send their Gradable
items and Scores to the associated class in PowerSchool"):

1. read Learning's gradebook change feed from the district's ledger cursor, page by page;
2. skip (and count) a change whose class was not imported (no ``classes`` row in
   ``learning_snapshot``) and is not linked to an imported class, whose gradable type is
   not one the source document lists (:data:`PUSHED_GRADABLE_TYPES`), or whose
   organization does not have grade push enabled (the
   district's ``grade_push`` settings, and Learning's domain setting
   ``grade_push_organizations`` when it is filled in); drop a change an already pushed
   newer version supersedes;
3. make sure the PowerTeacher assignment of each gradable exists (created when the
   gradable is, updated when it is edited, deleted or reported when it is deleted), acting as the
   section's teacher (``users_dcid`` from the last successful import's ``stg_staff``),
   created once with the Grade Mappings (see :func:`assignment_body`,
   :func:`assignment_name` for the 50-character shortening rule and
   :func:`choose_category` for the category rule);
4. write the scores, many per ``PUT /ws/xte/score`` (grouped per teacher, chunks of
   :data:`SCORES_PER_PUT`); a 409 is narrowed down by halving the batch until the
   refused scores are isolated, so one bad score never holds back the others;
5. record every outcome in the ledger (``staging/ledger.py``) and advance the cursor
   after each page; one email per run lists PowerTeacher's refusals.

Learning overwrites PowerTeacher: a later change of a score is written again over
whatever PowerTeacher holds. Nothing is ever read back into Learning: the only calls to
Learning are the change feed and the domain settings, both reads.

Exactly once: an assignment's intent (``creating``) is committed before its POST; a run
that finds a ``creating`` row (a crash between the POST and the ledger update) looks the
assignment up by name in the section and adopts it instead of creating a second one.
Scores upsert in PowerTeacher, so re-sending the page a crash interrupted changes
nothing, and the ledger's version check stops an older version from overwriting a newer
one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from sis_learning.config import DistrictConfig
from sis_learning.exceptions import LeaseBusy, LeaseLost
from sis_learning.staging import ledger

log = logging.getLogger(__name__)

RUN_KIND = "grade_push"
MAX_NAME_LENGTH = 50  # PowerTeacher Pro's assignment name limit
ELLIPSIS = "..."
SCORES_PER_PUT = 500
FEED_PAGE_SIZE = 1000
MAX_PAGES_PER_RUN = 200  # a run ends so the next one (already queued by the trigger) takes over

# The gradable types pushed: the source document's list ("Dropbox", "Assignment",
# "LTI_SCORM", "Discussion", "Wiki", "Assessment"); others are skipped and counted.
PUSHED_GRADABLE_TYPES = frozenset({"Dropbox", "Assignment", "LTI_SCORM", "Discussion", "Wiki", "Assessment"})
# Sections.GradebookType: 1 is the legacy PowerTeacher Gradebook; 2 (or none) PowerTeacher Pro.
LEGACY_GRADEBOOK_TYPES = frozenset({"1"})
LINK_EVENTS = frozenset({"class_linked", "class_unlinked"})
# The district's push lease (ledger): held for LEASE_SECONDS, renewed before a write once a
# third of it has passed (so a run holds at least 200 s of lease whenever it writes), and
# with every cursor advance. A run that finds it taken over stops writing (LeaseLost).
LEASE_SECONDS = 300.0
LEASE_RENEW_FRACTION = 1 / 3
LEASE_WAIT_SECONDS = 600.0

# Counts kept per run (sync_runs.counts["grade_push"]).
COUNT_NAMES = (
    "changes_read",
    "scores_pushed",
    "scores_cleared",
    "scores_refused",
    "skipped_class_not_imported",
    "skipped_organization_disabled",
    "skipped_teacher_unknown",
    "skipped_gradable_type",
    "skipped_gradable_deleted",
    "skipped_superseded",
    "skipped_clear_never_pushed",
    "skipped_already_pushed",
    "changes_via_linked_class",
    "class_link_events",
    "assignments_created",
    "assignments_adopted",
    "assignments_refused",
    "assignments_updated",
    "assignments_update_refused",
    "assignments_deleted",
    "assignments_delete_refused",
    "gradables_deleted_before_push",
    "put_requests",
    "lease_wait_ms",
    "lease_renewals",
)


# --------------------------------------------------------------------------- the mapping


def assignment_name(title: str | None) -> str:
    """The PowerTeacher assignment name: the gradable title within 50 characters.

    Rule: runs of whitespace become one space and the ends are trimmed; a title of 50
    characters or fewer is kept as is. A longer one is cut to 47 characters, moved back to
    the last word boundary when that keeps at least 30 of them, stripped of trailing
    spaces and punctuation, and ended with "..." (3 characters), so it stays readable and
    never exceeds 50. The full title goes into the description when the gradable has none.
    """
    text = re.sub(r"\s+", " ", title or "").strip() or "Untitled"
    if len(text) <= MAX_NAME_LENGTH:
        return text
    room = MAX_NAME_LENGTH - len(ELLIPSIS)
    cut = text[:room]
    boundary = cut.rfind(" ")
    if text[room] != " " and boundary >= 30:
        cut = cut[:boundary]
    cut = cut.rstrip(" .,;:-_/")
    return cut + ELLIPSIS


def choose_category(categories: Iterable[Mapping[str, Any]], classwork_name: str) -> tuple[str, str] | None:
    """The category of a new assignment: (teacher category id, which rule chose it).

    Rule (source document: "ID of the district Classwork category or the teachers first
    category"): among the active categories PowerTeacher lists for the teacher, the
    *district* category (``categorytype`` "district") whose name is the district's
    configured Classwork name (case and surrounding spaces ignored); else the teacher's
    first category by ``displayposition`` (then id). None when the teacher has no active
    category at all.
    """

    def active(category: Mapping[str, Any]) -> bool:
        return str(category.get("isactive", True)).strip().lower() not in ("false", "0", "no")

    def position(category: Mapping[str, Any]) -> tuple[float, float]:
        def number(value: Any) -> float:
            try:
                return float(value)
            except (TypeError, ValueError):
                return float("inf")

        return number(category.get("displayposition")), number(category.get("id"))

    usable = sorted(
        (category for category in categories if active(category) and category.get("id") is not None), key=position
    )
    wanted = classwork_name.strip().casefold()
    for category in usable:
        if (
            str(category.get("categorytype", "")).lower() == "district"
            and str(category.get("name", "")).strip().casefold() == wanted
        ):
            return str(category["id"]), "district_classwork"
    if usable:
        return str(usable[0]["id"]), "teacher_first"
    return None


def _points(value: Any) -> float | int:
    number = float(value if value is not None else 0)
    return int(number) if number.is_integer() else number


def assignment_body(
    gradable: Mapping[str, Any],
    section_dcid: str,
    category_id: str,
    standardcalcdirection: str,
    fallback_due_date: str,
) -> dict[str, Any]:
    """The PowerTeacher Pro body (create and replace) of the source document's Grade Mappings for one gradable."""
    title = gradable.get("title") or ""
    description = gradable.get("description") or title
    points = _points(gradable.get("total_points"))
    name = assignment_name(title)
    return {
        "name": name,  # assignment/name <- gradable.title
        "standardcalcdirection": standardcalcdirection,
        "_assignmentsections": [
            {
                "sectionsdcid": int(section_dcid) if str(section_dcid).isdigit() else section_dcid,
                "name": name,
                "description": description,
                "duedate": (gradable.get("due_date") or fallback_due_date)[:10],
                "scoretype": "POINTS",
                "scoreentrypoints": points,
                "totalpointvalue": points,
                "weight": 1,
                "extracreditpoints": 0,
                "publishoption": "Immediately",
                "_onlinework": {"issubtypeopt1enabled": False},
                "_assignmentcategoryassociations": [
                    {
                        "teachercategoryid": int(category_id) if str(category_id).isdigit() else category_id,
                        "isprimary": True,
                    }
                ],
            }
        ],
    }


def ptg_assignment_body(gradable: Mapping[str, Any], fallback_due_date: str) -> dict[str, Any]:
    """The legacy PowerTeacher Gradebook's assignment for one gradable.

    No category: its API applies 'TEST'/'UNDEFINED'.
    """
    title = gradable.get("title") or ""
    name = assignment_name(title)
    return {
        "name": name,
        "abbreviation": name[:10].rstrip() or "LRN",
        "description": gradable.get("description") or title,
        "date_assignment_due": (gradable.get("due_date") or fallback_due_date)[:10],
        "points_possible": _points(gradable.get("total_points")),
    }


def gradable_fingerprint(gradable: Mapping[str, Any]) -> str:
    fields = {name: gradable.get(name) for name in ("title", "description", "due_date", "total_points")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _student(student_id: str) -> int | str:
    return int(student_id) if str(student_id).isdigit() else student_id


def clear_score_body(student_id: str, assignment_section_id: str) -> dict[str, Any]:
    """The one place that says how a score is cleared in PowerTeacher Pro.

    ``powerschool-api.md`` marks it UNCONFIRMED: no public source shows the call, so it is
    modelled as a ``PUT /ws/xte/score`` item with ``actualscoreentered`` and ``scorepoints``
    null. Change it here (and in the simulator) when the real call is known.
    """
    return {
        "studentsdcid": _student(student_id),
        "_assignmentsection": {"assignmentsectionid": int(assignment_section_id)},
        "actualscoreentered": None,
        "scorepoints": None,
        "actualscorekind": "REAL_SCORE",
    }


def score_body(student_id: str, assignment_section_id: str, score: str | None) -> dict[str, Any]:
    """One ``assignment_scores`` entry (source document: score_entered <- Learning's score); None clears it."""
    if score is None:
        return clear_score_body(student_id, assignment_section_id)
    return {
        "studentsdcid": _student(student_id),
        "_assignmentsection": {"assignmentsectionid": int(assignment_section_id)},
        "actualscoreentered": str(score),
        "actualscorekind": "REAL_SCORE",
    }


def ptg_score_body(student_id: str, score: str | None) -> dict[str, Any]:
    """One legacy-gradebook score (score/student_id, score/assignment_score/score_entered).

    None clears it (UNCONFIRMED).
    """
    return {"student": {"id": _student(student_id)}, "score_entered": None if score is None else str(score)}


# --------------------------------------------------------------------------- what was imported


@dataclass(frozen=True)
class ImportedClass:
    class_id: str
    organization_id: str | None
    teacher_id: str | None
    teacher_users_dcid: str | None
    year_id: str | None
    gradebook: str = ledger.GRADEBOOK_PRO


class ImportedClasses:
    """The classes the import put into Learning and their teachers' ``users_dcid`` (lazy, cached)."""

    def __init__(self, engine: Engine, district_id: str) -> None:
        self.engine = engine
        self.district_id = district_id
        self._classes: dict[str, ImportedClass | None] = {}
        self._run_id: str | bool | None = False

    def _import_run(self) -> str | None:
        """The latest successful import run (its stg_staff holds the teachers' users_dcid)."""
        if self._run_id is False:
            from sis_learning.staging.runs import SyncRun

            with self.engine.connect() as connection:
                self._run_id = connection.scalar(
                    select(SyncRun.run_id)
                    .where(
                        SyncRun.district_id == self.district_id, SyncRun.kind == "import", SyncRun.status == "success"
                    )
                    .order_by(SyncRun.finished_at.desc(), SyncRun.id.desc())
                    .limit(1)
                )
        return self._run_id  # type: ignore[return-value]

    def load(self, class_ids: Iterable[str]) -> None:
        from sis_learning.staging.changes import LearningSnapshot
        from sis_learning.staging.source import StgSection, StgStaff, StgTerm

        wanted = sorted({str(value) for value in class_ids} - set(self._classes))
        if not wanted:
            return
        rows: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                for key, payload, organization_id, active in connection.execute(
                    select(
                        LearningSnapshot.key,
                        LearningSnapshot.payload,
                        LearningSnapshot.organization_id,
                        LearningSnapshot.active,
                    ).where(
                        LearningSnapshot.district_id == self.district_id,
                        LearningSnapshot.entity == "classes",
                        LearningSnapshot.key.in_(wanted[start : start + 500]),
                    )
                ):
                    if active is False:
                        continue
                    data = json.loads(payload) if payload else {}
                    data.setdefault("organization_id", organization_id)
                    rows[key] = data
            teachers = {str(row.get("teacher_id")) for row in rows.values() if row.get("teacher_id")}
            terms = {str(row.get("year")) for row in rows.values() if row.get("year")}
            users_dcid: dict[str, str] = {}
            year_ids: dict[str, str] = {}
            gradebooks: dict[str, str] = {}
            run_id = self._import_run()
            if run_id and rows:
                for start in range(0, len(rows), 500):
                    for section_id, gradebook_type in connection.execute(
                        select(StgSection.section_id, StgSection.gradebook_type).where(
                            StgSection.district_id == self.district_id,
                            StgSection.run_id == run_id,
                            StgSection.section_id.in_(sorted(rows)[start : start + 500]),
                        )
                    ):
                        if str(gradebook_type or "").strip() in LEGACY_GRADEBOOK_TYPES:
                            gradebooks[str(section_id)] = ledger.GRADEBOOK_LEGACY
            if run_id and teachers:
                for staff_id, dcid in connection.execute(
                    select(StgStaff.staff_id, StgStaff.users_dcid).where(
                        StgStaff.district_id == self.district_id,
                        StgStaff.run_id == run_id,
                        StgStaff.staff_id.in_(sorted(teachers)),
                    )
                ):
                    if dcid:
                        users_dcid[str(staff_id)] = str(dcid)
            if run_id and terms:
                for term_id, local_id in connection.execute(
                    select(StgTerm.term_id, StgTerm.local_id).where(
                        StgTerm.district_id == self.district_id,
                        StgTerm.run_id == run_id,
                        StgTerm.term_id.in_(sorted(terms)),
                    )
                ):
                    if local_id and str(local_id).lstrip("-").isdigit():
                        # PowerSchool's year id is the term id's hundreds (3501 -> 35).
                        year_ids[str(term_id)] = str(int(local_id) // 100)
        for class_id in wanted:
            row = rows.get(class_id)
            if row is None:
                self._classes[class_id] = None
                continue
            teacher_id = str(row["teacher_id"]) if row.get("teacher_id") else None
            self._classes[class_id] = ImportedClass(
                class_id=class_id,
                organization_id=str(row["organization_id"]) if row.get("organization_id") else None,
                teacher_id=teacher_id,
                teacher_users_dcid=users_dcid.get(teacher_id or ""),
                year_id=year_ids.get(str(row.get("year") or "")),
                gradebook=gradebooks.get(class_id, ledger.GRADEBOOK_PRO),
            )

    def get(self, class_id: str) -> ImportedClass | None:
        self.load([class_id])
        return self._classes.get(str(class_id))


# --------------------------------------------------------------------------- the push


@dataclass
class PushSummary:
    district_id: str
    run_id: str
    cursor_before: int = 0
    cursor_after: int = 0
    counts: Counter = field(default_factory=Counter)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "district_id": self.district_id,
            "run_id": self.run_id,
            "cursor_before": self.cursor_before,
            "cursor_after": self.cursor_after,
            "seconds": round(self.seconds, 3),
            **{name: int(self.counts.get(name, 0)) for name in COUNT_NAMES},
        }


@dataclass(frozen=True)
class AssignmentOutcome:
    """Where the gradable's scores go (PowerTeacher Pro: the assignment section id; legacy: the assignment id),
    or the reason there is none."""

    section_id: str | None = None
    refusal: str | None = None


@dataclass
class _Pending:
    change: dict[str, Any]
    gradable_id: str
    student_id: str
    version: int
    cursor: int
    klass: ImportedClass


def change_time(change: Mapping[str, Any]) -> datetime | None:
    """When Learning recorded a change (its feed's ``changed_at``), as naive UTC; None if unreadable."""
    value = change.get("changed_at")
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def change_event(change: Mapping[str, Any]) -> str:
    """The feed entry's event (entries without one are score changes)."""
    event = change.get("event")
    if event:
        return str(event)
    return "score_set" if change.get("score") is not None else "score_cleared"


class GradePush:
    """One run of grade push for one district (see the module docstring for the rules)."""

    def __init__(
        self,
        config: DistrictConfig,
        engine: Engine,
        learning: Any,
        powerteacher: Any,
        run_id: str,
        *,
        page_size: int = FEED_PAGE_SIZE,
        scores_per_put: int = SCORES_PER_PUT,
        max_pages: int = MAX_PAGES_PER_RUN,
        workers: int | None = None,
        lease_seconds: float = LEASE_SECONDS,
        lease_wait_seconds: float = LEASE_WAIT_SECONDS,
    ) -> None:
        self.config = config
        self.district_id = config.district_id
        self.engine = engine
        self.learning = learning
        self.powerteacher = powerteacher
        self.run_id = run_id
        self.page_size = page_size
        self.scores_per_put = scores_per_put
        self.max_pages = max_pages
        self.lease_seconds = lease_seconds
        self.lease_wait_seconds = lease_wait_seconds
        self._lease_renewed_at = 0.0
        self._lease_lost: str | None = None
        self._lease_lock = threading.Lock()
        self.classes = ImportedClasses(engine, self.district_id)
        self.summary = PushSummary(self.district_id, run_id)
        self._categories: dict[tuple[str, str | None], tuple[str, str] | None] = {}
        self._category_lock = threading.Lock()
        self._lock = threading.Lock()
        self.workers = workers if workers is not None else config.powerschool.max_concurrent_requests
        self._learning_organizations: set[str] | None = None

    # ---- organizations

    def _load_domain_settings(self) -> None:
        settings = self.learning.get_domain_settings() or {}
        organizations = settings.get("grade_push_organizations") if isinstance(settings, dict) else None
        # An empty or missing list means Learning's Grade Push Config was never filled in: the
        # district YAML decides alone. A non-empty list narrows it further (both must enable).
        self._learning_organizations = {str(value) for value in organizations} if organizations else None

    def organization_enabled(self, organization_id: str | None) -> bool:
        if not organization_id or not self.config.grade_push.enabled_for(str(organization_id)):
            return False
        return self._learning_organizations is None or str(organization_id) in self._learning_organizations

    # ---- the run

    def _take_lease(self) -> None:
        """One push per district at a time: runs may overlap (no max_active_runs=1), writes may not."""
        started = time.monotonic()
        delay = 0.05
        while not ledger.acquire_lease(self.engine, self.district_id, self.run_id, self.lease_seconds):
            if time.monotonic() - started > self.lease_wait_seconds:
                raise LeaseBusy(
                    f"another grade push run of district {self.district_id} has held the lease for "
                    f"over {self.lease_wait_seconds:.0f}s; this run gives up (the task is retried)"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        self._lease_renewed_at = time.monotonic()
        self.summary.counts["lease_wait_ms"] += int((time.monotonic() - started) * 1000)

    def _lease_lost_error(self) -> LeaseLost:
        holder = ledger.lease_holder(self.engine, self.district_id)
        self._lease_lost = (
            f"grade push run {self.run_id} lost the lease of district {self.district_id} "
            f"(now held by {holder or 'no run'}): it stopped writing; what it wrote is in the "
            f"ledger and the holder continues from the cursor"
        )
        return LeaseLost(self._lease_lost)

    def hold_lease(self) -> None:
        """Called before every PowerTeacher write: renew the lease when due; LeaseLost if it was taken over.

        Renewal happens once ``lease_seconds * LEASE_RENEW_FRACTION`` has passed since the last one,
        so a long page (hundreds of assignments, slow PowerTeacher answers) keeps its lease, and a
        write starts with at least two thirds of the lease left.
        """
        with self._lease_lock:
            if self._lease_lost:
                raise LeaseLost(self._lease_lost)
            if time.monotonic() - self._lease_renewed_at < self.lease_seconds * LEASE_RENEW_FRACTION:
                return
            with self.engine.begin() as connection:
                renewed = ledger.renew_lease(connection, self.district_id, self.run_id, self.lease_seconds)
            if not renewed:
                raise self._lease_lost_error()
            self._lease_renewed_at = time.monotonic()
            self.summary.counts["lease_renewals"] += 1

    def run(self) -> PushSummary:
        started = time.monotonic()
        self._take_lease()
        try:
            self._load_domain_settings()
            cursor = ledger.read_cursor(self.engine, self.district_id)
            self.summary.cursor_before = self.summary.cursor_after = cursor
            for _ in range(self.max_pages):
                body = self.learning.gradebook_changes(cursor, self.page_size)
                changes = list(body.get("changes") or [])
                if not changes:
                    break
                self.process_page(changes)
                newest = max(int(change["cursor"]) for change in changes)
                with self._lease_lock, self.engine.begin() as connection:  # the cursor moves only under our lease
                    advanced = ledger.save_cursor_holding_lease(
                        connection, self.district_id, newest, self.run_id, self.lease_seconds
                    )
                    if advanced:
                        self._lease_renewed_at = time.monotonic()
                if not advanced:
                    raise self._lease_lost_error()
                cursor = self.summary.cursor_after = newest
                if not body.get("has_more"):
                    break
        finally:
            ledger.release_lease(self.engine, self.district_id, self.run_id)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def target_class(self, change: Mapping[str, Any]) -> tuple[ImportedClass | None, bool]:
        """The imported class the change goes to: its own class, else the imported class it is linked to."""
        klass = self.classes.get(str(change.get("class_id")))
        if klass is not None:
            return klass, False
        linked = change.get("linked_class_id")
        if linked:
            return self.classes.get(str(linked)), True
        return None, False

    def process_page(self, changes: Sequence[Mapping[str, Any]]) -> None:
        counts = self.summary.counts
        counts["changes_read"] += len(changes)
        self.classes.load(
            {
                str(change.get(name))
                for change in changes
                for name in ("class_id", "linked_class_id")
                if change.get(name)
            }
        )
        gradables: dict[str, tuple[dict[str, Any], ImportedClass]] = {}  # the latest entry per gradable
        evented: set[str] = set()  # gradables with a gradable_* entry in this page
        latest: dict[tuple[str, str], _Pending] = {}
        for change in changes:
            event = change_event(change)
            if event in LINK_EVENTS:
                counts["class_link_events"] += 1  # linking re-emits the class's gradables and scores after it
                continue
            klass, linked = self.target_class(change)
            if klass is None:
                counts["skipped_class_not_imported"] += 1
                continue
            organization = klass.organization_id if linked else (change.get("organization_id") or klass.organization_id)
            if not self.organization_enabled(organization):
                counts["skipped_organization_disabled"] += 1
                continue
            gradable = change.get("gradable") or {}
            if str(gradable.get("type") or "Assignment") not in PUSHED_GRADABLE_TYPES:
                counts["skipped_gradable_type"] += 1
                continue
            if not klass.teacher_users_dcid:
                counts["skipped_teacher_unknown"] += 1
                continue
            if linked:
                counts["changes_via_linked_class"] += 1
            gradable_id = str(gradable.get("id"))
            gradables[gradable_id] = (dict(change), klass)
            if event.startswith("gradable_"):
                evented.add(gradable_id)
                continue
            pending = _Pending(
                dict(change),
                gradable_id,
                str(change.get("student_id")),
                int(change.get("version") or 0),
                int(change["cursor"]),
                klass,
            )
            key = (pending.gradable_id, pending.student_id)
            previous = latest.get(key)
            if previous is not None:
                counts["skipped_superseded"] += 1
                if previous.version >= pending.version:
                    continue
            latest[key] = pending
        if not gradables:
            return
        deleted = {
            gradable_id
            for gradable_id, (change, _) in gradables.items()
            if (change.get("gradable") or {}).get("deleted")
        }
        for key in [key for key in latest if key[0] in deleted]:
            counts["skipped_gradable_deleted"] += 1  # its assignment is being deleted (or kept, with its grades)
            del latest[key]
        with self.engine.connect() as connection:
            known = ledger.scores_for(connection, self.district_id, latest) if latest else {}
            assignments = ledger.assignments_for(connection, self.district_id, gradables)
        todo: list[_Pending] = []
        for key, pending in latest.items():
            row = known.get(key)
            done_version = max(int(row["version"] or 0), int(row["refused_version"] or 0)) if row else 0
            if pending.version <= done_version:
                counts["skipped_already_pushed"] += 1
                continue
            if pending.change.get("score") is None and (row is None or row["score"] is None):
                counts["skipped_clear_never_pushed"] += 1  # PowerTeacher holds no score from us to clear
                continue
            todo.append(pending)
        by_gradable: dict[str, list[_Pending]] = defaultdict(list)
        for pending in todo:
            by_gradable[pending.gradable_id].append(pending)
        needed = [
            gradable_id
            for gradable_id in gradables
            if gradable_id not in deleted and (gradable_id in by_gradable or gradable_id in evented)
        ]

        def ensure(gradable_id: str) -> tuple[str, AssignmentOutcome]:
            change, klass = gradables[gradable_id]
            return gradable_id, self.ensure_assignment(change, klass, assignments.get(gradable_id))

        # A crash left "creating" rows: resolve those one by one (two of them could match the same
        # name in one section); every other gradable's assignment is made or updated concurrently.
        recovering = [
            gradable_id
            for gradable_id in needed
            if (assignments.get(gradable_id) or {}).get("status") == ledger.ASSIGNMENT_CREATING
        ]
        fresh = [gradable_id for gradable_id in needed if gradable_id not in recovering]
        outcomes = dict([ensure(gradable_id) for gradable_id in recovering] + self._parallel(ensure, fresh))
        # PowerTeacher Pro: per teacher, many assignments per PUT; legacy gradebook: per assignment.
        writes: dict[str, list[tuple[_Pending, str]]] = defaultdict(list)
        legacy: dict[str, list[tuple[_Pending, str]]] = defaultdict(list)
        refused: list[dict[str, Any]] = []
        for gradable_id, items in by_gradable.items():
            outcome = outcomes[gradable_id]
            if not outcome.section_id:
                refused.extend(self._refusal_row(item, None, outcome.refusal or "refused") for item in items)
                continue
            klass = items[0].klass
            if klass.gradebook == ledger.GRADEBOOK_LEGACY:
                legacy[outcome.section_id].extend((item, outcome.section_id) for item in items)
            else:
                writes[str(klass.teacher_users_dcid)].extend((item, outcome.section_id) for item in items)
        self._record_scores([], refused)  # scores refused with their assignment

        def put_all(entry: tuple[str, list[tuple[_Pending, str]]]) -> None:
            users_dcid, items = entry
            for start in range(0, len(items), self.scores_per_put):
                pushed_now: list[dict[str, Any]] = []
                refused_now: list[dict[str, Any]] = []
                self._put(users_dcid, items[start : start + self.scores_per_put], pushed_now, refused_now)
                self._record_scores(pushed_now, refused_now)

        def put_legacy(entry: tuple[str, list[tuple[_Pending, str]]]) -> None:
            assignment_id, items = entry
            for start in range(0, len(items), self.scores_per_put):
                pushed_now: list[dict[str, Any]] = []
                refused_now: list[dict[str, Any]] = []
                self._put_legacy(assignment_id, items[start : start + self.scores_per_put], pushed_now, refused_now)
                self._record_scores(pushed_now, refused_now)

        self._parallel(put_all, list(writes.items()))
        self._parallel(put_legacy, list(legacy.items()))
        for gradable_id in sorted(deleted):
            change, klass = gradables[gradable_id]
            self.delete_assignment(change, klass, assignments.get(gradable_id))

    def _record_scores(self, pushed: list[dict[str, Any]], refused: list[dict[str, Any]]) -> None:
        """Ledger rows of one PUT's outcome, committed at once (so a run that loses its lease mid-page
        leaves no written-but-unrecorded score for the next holder to write again)."""
        if not pushed and not refused:
            return
        with self._lock:  # one ledger writer at a time (SQLite), counts kept with it
            with self.engine.begin() as connection:
                ledger.record_pushed_scores(connection, pushed)
                ledger.record_refused_scores(connection, refused)
            counts = self.summary.counts
            cleared = sum(1 for row in pushed if row["score"] is None)
            counts["scores_pushed"] += len(pushed) - cleared
            counts["scores_cleared"] += cleared
            counts["scores_refused"] += len(refused)
            self.summary.refusals.extend(refused)

    def _parallel(self, work, entries: list) -> list:
        """``work`` over ``entries`` on up to ``workers`` threads (the hook's limiter bounds requests)."""
        if self.workers <= 1 or len(entries) <= 1:
            return [work(entry) for entry in entries]
        with ThreadPoolExecutor(
            max_workers=min(self.workers, len(entries)), thread_name_prefix=f"grade-push-{self.district_id}"
        ) as pool:
            return list(pool.map(work, entries))

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.summary.counts[name] += amount

    # ---- scores

    def _pushed_row(self, item: _Pending, section: str) -> dict[str, Any]:
        return {
            "district_id": self.district_id,
            "gradable_id": item.gradable_id,
            "student_id": item.student_id,
            "assignment_section_id": section,
            "score": item.change.get("score"),
            "version": item.version,
            "cursor": item.cursor,
            "run_id": self.run_id,
            "changed_at": change_time(item.change),
        }

    def _put(self, users_dcid: str, items: list[tuple[_Pending, str]], pushed: list, refused: list) -> None:
        """PUT a batch of scores; on 409 set the refused ones aside and PUT the others again.

        PowerTeacher refuses the whole request when one score is invalid; its ``errors``
        name the refused items by index. Without indexes the batch is halved until each
        refused score stands alone. Either way no valid score is held back.
        """
        self.hold_lease()
        self._count("put_requests")
        refusal = self.powerteacher.put_scores(
            users_dcid, [score_body(item.student_id, section, item.change.get("score")) for item, section in items]
        )
        if refusal is None:
            pushed.extend(self._pushed_row(item, section) for item, section in items)
            return
        if len(items) == 1:
            item, section = items[0]
            refused.append(self._refusal_row(item, section, refusal.message))
            return
        by_index = {index: text for index, text in refusal.refused_indexes().items() if 0 <= index < len(items)}
        if by_index:
            for index, text in sorted(by_index.items()):
                item, section = items[index]
                refused.append(self._refusal_row(item, section, text))
            rest = [entry for index, entry in enumerate(items) if index not in by_index]
            if rest:
                self._put(users_dcid, rest, pushed, refused)
            return
        middle = len(items) // 2
        self._put(users_dcid, items[:middle], pushed, refused)
        self._put(users_dcid, items[middle:], pushed, refused)

    def _put_legacy(self, assignment_id: str, items: list[tuple[_Pending, str]], pushed: list, refused: list) -> None:
        """The legacy gradebook answers 200 and names each refused item (batch_result 409); the others are written."""
        self.hold_lease()
        self._count("put_requests")
        refused_items = self.powerteacher.ptg_put_scores(
            assignment_id, [ptg_score_body(item.student_id, item.change.get("score")) for item, _ in items]
        )
        for index, (item, section) in enumerate(items):
            if index in refused_items:
                refused.append(self._refusal_row(item, section, refused_items[index]))
            else:
                pushed.append(self._pushed_row(item, section))

    def _refusal_row(self, item: _Pending, section: str | None, message: str) -> dict[str, Any]:
        gradable = item.change.get("gradable") or {}
        return {
            "district_id": self.district_id,
            "gradable_id": item.gradable_id,
            "student_id": item.student_id,
            "assignment_section_id": section,
            "version": item.version,
            "cursor": item.cursor,
            "message": message,
            "run_id": self.run_id,
            # for the email only (not ledger columns)
            "class_id": item.klass.class_id,
            "title": gradable.get("title"),
            "score": item.change.get("score"),
        }

    def _report(self, kind: str, gradable: Mapping[str, Any], klass: ImportedClass, message: str) -> None:
        """An assignment-level outcome the district must hear about (listed in the run's email)."""
        with self._lock:
            self.summary.refusals.append(
                {
                    "kind": kind,
                    "gradable_id": str(gradable.get("id")),
                    "class_id": klass.class_id,
                    "title": gradable.get("title"),
                    "student_id": "",
                    "score": "",
                    "message": message,
                }
            )

    # ---- assignments

    def category_for(self, users_dcid: str, year_id: str | None) -> tuple[str, str] | None:
        key = (users_dcid, year_id)
        with self._category_lock:  # read once per teacher and year, even with concurrent gradables
            if key not in self._categories:
                categories = self.powerteacher.teacher_categories(users_dcid, year_id)
                self._categories[key] = choose_category(categories, self.config.grade_push.classwork_category)
            return self._categories[key]

    def ensure_assignment(
        self, change: Mapping[str, Any], klass: ImportedClass, row: Mapping[str, Any] | None
    ) -> AssignmentOutcome:
        """The assignment of the change's gradable: created once, brought up to its latest revision, or why not."""
        gradable = change.get("gradable") or {}
        if row and row.get("status") == ledger.ASSIGNMENT_CREATED and row.get("assignment_section_id"):
            if int(gradable.get("revision") or 1) > int(row.get("revision") or 1):
                self.update_assignment(gradable, klass, row)
            return AssignmentOutcome(section_id=str(row["assignment_section_id"]))
        self.hold_lease()  # before the adoption or the intent and the POST
        if row and row.get("status") in (ledger.ASSIGNMENT_DELETED, ledger.ASSIGNMENT_DELETE_REFUSED):
            return AssignmentOutcome(refusal="the gradable was deleted")
        gradable_id = str(gradable.get("id"))
        users_dcid = str(klass.teacher_users_dcid)
        name = assignment_name(gradable.get("title"))
        legacy = klass.gradebook == ledger.GRADEBOOK_LEGACY
        if row and row.get("status") == ledger.ASSIGNMENT_CREATING:
            adopted = self._find_existing(klass, users_dcid, row.get("name") or name)
            if adopted is not None:
                with self.engine.begin() as connection:
                    ledger.update_assignment(
                        connection,
                        self.district_id,
                        gradable_id,
                        status=ledger.ASSIGNMENT_CREATED,
                        assignment_id=adopted[0],
                        assignment_section_id=adopted[1],
                        adopted=True,
                        message=None,
                        run_id=self.run_id,
                    )
                self._count("assignments_adopted")
                adopted_row = {**row, "assignment_id": adopted[0], "assignment_section_id": adopted[1]}
                if int(gradable.get("revision") or 1) > int(row.get("revision") or 1):
                    self.update_assignment(gradable, klass, adopted_row)
                return AssignmentOutcome(section_id=adopted[1])
        fallback_due = str(change.get("changed_at") or datetime.now(UTC).isoformat())[:10]
        if legacy:
            category: tuple[str, str] | None = (None, "ptg_api_rule")  # type: ignore[assignment]
            body = ptg_assignment_body(gradable, fallback_due)
            duedate = body["date_assignment_due"]
        else:
            category = self.category_for(users_dcid, klass.year_id)
            if category is None:
                message = (
                    f"PowerTeacher Pro lists no active category for teacher users_dcid {users_dcid}: the "
                    f"assignment cannot be created (add a '{self.config.grade_push.classwork_category}' "
                    f"district category or a teacher category)."
                )
                self._record_assignment_refusal(gradable, klass, name, message, None)
                return AssignmentOutcome(refusal=message)
            body = assignment_body(
                gradable, klass.class_id, category[0], self.config.grade_push.standardcalcdirection, fallback_due
            )
            duedate = body["_assignmentsections"][0]["duedate"]
        # The intent is committed before the POST: a crash after it leaves a "creating" row.
        with self.engine.begin() as connection:
            ledger.record_assignment_intent(connection, self._intent(gradable, klass, name, category, duedate))
        from sis_learning.hooks.powerteacher import Refusal

        if legacy:
            created = self.powerteacher.ptg_create_assignment(klass.class_id, body)
            if isinstance(created, Refusal):
                self._record_assignment_refusal(gradable, klass, name, created.message, category)
                return AssignmentOutcome(refusal=created.message)
            assignment_id = section_id = str(created)
        else:
            created = self.powerteacher.create_assignment(users_dcid, body)
            if isinstance(created, Refusal):
                self._record_assignment_refusal(gradable, klass, name, created.message, category)
                return AssignmentOutcome(refusal=created.message)
            assignment_id, section_id = created.assignment_id, created.assignment_section_ids[0]
        with self.engine.begin() as connection:
            ledger.update_assignment(
                connection,
                self.district_id,
                gradable_id,
                status=ledger.ASSIGNMENT_CREATED,
                assignment_id=assignment_id,
                assignment_section_id=section_id,
                message=None,
                run_id=self.run_id,
            )
        self._count("assignments_created")
        return AssignmentOutcome(section_id=section_id)

    def _intent(self, gradable, klass, name, category, duedate) -> dict[str, Any]:
        return {
            "district_id": self.district_id,
            "gradable_id": str(gradable.get("id")),
            "class_id": klass.class_id,
            "teacher_users_dcid": klass.teacher_users_dcid,
            "name": name,
            "teacher_category_id": category[0] if category else None,
            "category_rule": category[1] if category else None,
            "fingerprint": gradable_fingerprint(gradable),
            "run_id": self.run_id,
            "gradebook": klass.gradebook,
            "revision": int(gradable.get("revision") or 1),
            "total_points": str(_points(gradable.get("total_points"))),
            "duedate": duedate,
        }

    def update_assignment(self, gradable: Mapping[str, Any], klass: ImportedClass, row: Mapping[str, Any]) -> None:
        """Bring the assignment to the gradable's latest fields (a PUT of the whole assignment; idempotent)."""
        self.hold_lease()
        points = str(_points(gradable.get("total_points")))
        due = row.get("duedate") or datetime.now(UTC).date().isoformat()
        if klass.gradebook == ledger.GRADEBOOK_LEGACY:
            body = ptg_assignment_body(gradable, due)
            refusal = self.powerteacher.ptg_update_assignment(str(row["assignment_id"]), body)
            duedate = body["date_assignment_due"]
        else:
            # the section it was created in (a class linked elsewhere since keeps its old assignments there)
            body = assignment_body(
                gradable,
                str(row.get("class_id") or klass.class_id),
                str(row.get("teacher_category_id")),
                self.config.grade_push.standardcalcdirection,
                due,
            )
            # PowerTeacher rescales existing scores only when told: points changed -> update_scores=true.
            refusal = self.powerteacher.update_assignment(
                str(klass.teacher_users_dcid),
                str(row["assignment_id"]),
                body,
                update_scores=points != row.get("total_points"),
            )
            duedate = body["_assignmentsections"][0]["duedate"]
        name = assignment_name(gradable.get("title"))
        with self.engine.begin() as connection:
            if refusal is not None:
                ledger.update_assignment(
                    connection,
                    self.district_id,
                    str(gradable.get("id")),
                    message=f"update refused: {refusal.message}",
                    run_id=self.run_id,
                )
            else:
                ledger.update_assignment(
                    connection,
                    self.district_id,
                    str(gradable.get("id")),
                    name=name,
                    revision=int(gradable.get("revision") or 1),
                    total_points=points,
                    duedate=duedate,
                    fingerprint=gradable_fingerprint(gradable),
                    message=None,
                    run_id=self.run_id,
                )
        if refusal is not None:
            self._count("assignments_update_refused")
            self._report(
                "update_refused",
                gradable,
                klass,
                f"PowerTeacher refused the change of the assignment: {refusal.message}",
            )
        else:
            self._count("assignments_updated")

    def delete_assignment(self, change: Mapping[str, Any], klass: ImportedClass, row: Mapping[str, Any] | None) -> None:
        """A gradable deleted in Learning: delete its assignment, or report it when PowerTeacher keeps it (412)."""
        gradable = change.get("gradable") or {}
        gradable_id = str(gradable.get("id"))
        status = (row or {}).get("status")
        if status in (ledger.ASSIGNMENT_DELETED, ledger.ASSIGNMENT_DELETE_REFUSED):
            return  # already handled (a replayed page)
        self.hold_lease()
        if status == ledger.ASSIGNMENT_CREATING and row is not None:
            adopted = self._find_existing(klass, str(klass.teacher_users_dcid), row.get("name") or "")
            row = {**row, "assignment_id": adopted[0], "assignment_section_id": adopted[1]} if adopted else None
        if not row or not row.get("assignment_id") or status == ledger.ASSIGNMENT_REFUSED:
            self._count("gradables_deleted_before_push")  # nothing of it in PowerTeacher
            if row:
                with self.engine.begin() as connection:
                    ledger.update_assignment(
                        connection, self.district_id, gradable_id, status=ledger.ASSIGNMENT_DELETED, run_id=self.run_id
                    )
            return
        if klass.gradebook == ledger.GRADEBOOK_LEGACY:
            refusal = self.powerteacher.ptg_delete_assignment(str(row["assignment_id"]))
        else:
            refusal = self.powerteacher.delete_assignment(str(klass.teacher_users_dcid), str(row["assignment_id"]))
        with self.engine.begin() as connection:
            if refusal is None:
                ledger.update_assignment(
                    connection,
                    self.district_id,
                    gradable_id,
                    status=ledger.ASSIGNMENT_DELETED,
                    message=None,
                    run_id=self.run_id,
                )
            else:
                ledger.update_assignment(
                    connection,
                    self.district_id,
                    gradable_id,
                    status=ledger.ASSIGNMENT_DELETE_REFUSED,
                    message=refusal.message,
                    run_id=self.run_id,
                )
        if refusal is None:
            self._count("assignments_deleted")
        else:
            self._count("assignments_delete_refused")
            self._report(
                "delete_refused",
                gradable,
                klass,
                (
                    f"The gradable was deleted in Learning, but PowerTeacher keeps its assignment: {refusal.message}. "
                    f"Delete it in PowerTeacher (with its grades) if it should go."
                ),
            )

    def _record_assignment_refusal(self, gradable, klass, name, message, category) -> None:
        self._count("assignments_refused")
        with self.engine.begin() as connection:
            ledger.record_assignment_intent(connection, self._intent(gradable, klass, name, category, None))
            ledger.update_assignment(
                connection, self.district_id, str(gradable.get("id")), status=ledger.ASSIGNMENT_REFUSED, message=message
            )

    def _find_existing(self, klass: ImportedClass, users_dcid: str, name: str) -> tuple[str, str] | None:
        """An assignment of this name in the section that no other gradable claims: (id, section id)."""
        class_id = klass.class_id
        with self.engine.connect() as connection:
            claimed = ledger.claimed_assignment_ids(connection, self.district_id, class_id)
        candidates: list[tuple[int, str, str]] = []
        if klass.gradebook == ledger.GRADEBOOK_LEGACY:
            for assignment in self.powerteacher.ptg_section_assignments(class_id):
                assignment_id = str(assignment.get("id") or "")
                if assignment_id and assignment_id not in claimed and assignment.get("name") == name:
                    candidates.append(
                        (int(assignment_id) if assignment_id.isdigit() else 0, assignment_id, assignment_id)
                    )
        else:
            from sis_learning.hooks.powerschool import as_list

            for assignment in self.powerteacher.section_assignments(users_dcid, [class_id]):
                assignment_id = str(assignment.get("assignmentid") or assignment.get("id") or "")
                if not assignment_id or assignment_id in claimed:
                    continue
                for section in as_list(assignment.get("_assignmentsections") or assignment.get("_assignmentsection")):
                    if (
                        str(section.get("sectionsdcid")) == str(class_id)
                        and section.get("name") == name
                        and section.get("assignmentsectionid") is not None
                    ):
                        order = int(assignment_id) if assignment_id.isdigit() else 0
                        candidates.append((order, assignment_id, str(section["assignmentsectionid"])))
        if not candidates:
            return None
        _, assignment_id, section_id = min(candidates)
        return assignment_id, section_id


# --------------------------------------------------------------------------- the task


def push_grades(
    config: DistrictConfig,
    engine: Engine,
    learning: Any,
    powerteacher: Any,
    run_id: str,
    *,
    notify: bool = True,
    **options: Any,
) -> PushSummary:
    """One grade-push run with its bookkeeping in ``sync_runs`` (kind ``grade_push``) and the refusal email."""
    from sis_learning.notify import send_refusal_email
    from sis_learning.staging.errors import summarise
    from sis_learning.staging.runs import finish_run, record_stage, start_run

    start_run(engine, config.district_id, run_id, dag_id=config.grade_push_dag_id, kind=RUN_KIND)
    push = GradePush(config, engine, learning, powerteacher, run_id, **options)
    try:
        summary = push.run()
    except Exception as error:
        # A database error (ledger or staging write) quotes its SQL parameters: other people's
        # student ids and scores. Replace it by its value-free summary (staging/errors.py) before
        # it is recorded, logged, emailed or raised, as the import's steps do.
        summarised = summarise(error, "grade push")
        reason = str(summarised or error).strip() or type(error).__name__
        record_stage(
            engine, config.district_id, run_id, "push", kind=RUN_KIND, counts={"grade_push": push.summary.as_dict()}
        )
        finish_run(engine, config.district_id, run_id, "failed", error=reason[:4000], kind=RUN_KIND)
        log.error("Grade push %s failed for district %s: %s", run_id, config.district_id, reason[:4000])
        if notify:
            send_refusal_email(config, push.summary)
        if summarised is not None:
            raise summarised from None  # the driver's message and parameters carry row values
        raise
    record_stage(
        engine,
        config.district_id,
        run_id,
        "push",
        kind=RUN_KIND,
        seconds=summary.seconds,
        counts={
            "grade_push": {
                key: value
                for key, value in summary.as_dict().items()
                if isinstance(value, int) and key not in ("cursor_before", "cursor_after")
            }
        },
    )
    finish_run(engine, config.district_id, run_id, "success", kind=RUN_KIND)
    if notify:
        send_refusal_email(config, summary)
    log.info("%s", push_summary_line(summary))
    return summary


def push_summary_line(summary: PushSummary) -> str:
    """What one grade-push run did, in a sentence for the task log."""
    counts = summary.as_dict()
    skipped = sum(value for key, value in counts.items() if key.startswith("skipped_") and isinstance(value, int))
    assignments = [
        f"{counts[key]} {key.removeprefix('assignments_').replace('_', ' ')}"
        for key in COUNT_NAMES
        if key.startswith("assignments_") and counts.get(key)
    ]
    return (
        f"Grade push {summary.run_id}: read {counts['changes_read']} gradebook change(s) from Learning; "
        f"{counts['scores_pushed']} score(s) written to PowerTeacher, {counts['scores_cleared']} cleared, "
        f"{counts['scores_refused']} refused (grade_push_scores), {skipped} skipped by rule; assignments: "
        f"{', '.join(assignments) or 'no change'} (grade_push_assignments); {summary.seconds:.1f} s."
    )
