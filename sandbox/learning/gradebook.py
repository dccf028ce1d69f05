"""The teacher's side of Learning for grade push: gradables, scores, class links and the change feed.

The source document's Grade Mappings read a gradable's title, description, due date and
total points, the class's import id and the student's import id and score; grade push
is "Immediate", for "imported classes (and those linked to imported classes)", and only
for organizations enabled under Grade Push Config. The change feed says all of that, in
the order it happened:

- every change appends one entry with a new ``cursor``; the cursor only grows (entries
  are never rewritten or deleted), so a reader that keeps the last cursor it processed
  never misses or repeats a change;
- ``event`` says what changed: ``score_set`` / ``score_cleared`` (``version`` counts the
  changes of one (gradable, student) score, so a consumer can drop a stale write),
  ``gradable_created`` / ``gradable_edited`` / ``gradable_deleted`` (``revision`` counts
  the gradable's edits), ``class_linked`` / ``class_unlinked`` (a Learning class linked
  to an imported class; linking re-emits the class's gradables and scores after it, so a
  consumer sends what was made before the link);
- an entry carries the gradable's *current* fields (a consumer always writes the latest).

Writes are serialised per domain by the caller, so within a domain cursors are
committed in increasing order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from sandbox.learning.domain_settings import read_settings
from sandbox.learning.models import ClassLink, Gradable, GradebookChange, LearningClass, Roster, Score
from sandbox.learning.schemas import GradableBody, GradableUpdate


class NotFound(LookupError):
    """The object named in the path does not exist in this domain (answered as 404)."""


class Refused(ValueError):
    """A rule refused the request (answered as 422)."""


def timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; they were stored in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def gradable_out(gradable: Gradable) -> dict[str, Any]:
    return {
        "id": gradable.id,
        "class_id": gradable.class_id,
        "title": gradable.title,
        "description": gradable.description,
        "due_date": gradable.due_date,
        "total_points": gradable.total_points,
        "type": gradable.type,
        "revision": gradable.revision,
        "deleted": gradable.deleted_at is not None,
    }


def _class(session: Session, domain: str, class_id: str) -> LearningClass:
    learning_class = session.scalar(
        select(LearningClass).where(LearningClass.domain == domain, LearningClass.class_id == class_id)
    )
    if learning_class is None:
        raise NotFound(f"class {class_id} does not exist in this domain")
    return learning_class


def get_gradable(session: Session, domain: str, gradable_id: int, *, live: bool = False) -> Gradable:
    gradable = session.get(Gradable, gradable_id)
    if gradable is None or gradable.domain != domain:
        raise NotFound(f"gradable {gradable_id} does not exist in this domain")
    if live and gradable.deleted_at is not None:
        raise NotFound(f"gradable {gradable_id} was deleted")
    return gradable


def _append(session: Session, domain: str, event: str, class_id: str, now: datetime, **values: Any) -> None:
    session.add(GradebookChange(domain=domain, event=event, class_id=class_id, changed_at=now, **values))


def create_gradable(session: Session, domain: str, class_id: str, body: GradableBody) -> Gradable:
    _class(session, domain, class_id)
    now = datetime.now(UTC)
    gradable = Gradable(
        domain=domain, class_id=class_id, created_at=now, updated_at=now, revision=1, **body.model_dump()
    )
    session.add(gradable)
    session.flush()
    _append(session, domain, "gradable_created", class_id, now, gradable_id=gradable.id, revision=1)
    session.flush()
    return gradable


def list_gradables(session: Session, domain: str, class_id: str) -> list[Gradable]:
    _class(session, domain, class_id)
    return list(
        session.scalars(
            select(Gradable)
            .where(Gradable.domain == domain, Gradable.class_id == class_id, Gradable.deleted_at.is_(None))
            .order_by(Gradable.id)
        )
    )


def update_gradable(session: Session, domain: str, gradable_id: int, body: GradableUpdate) -> Gradable:
    """Change a gradable's fields: one ``gradable_edited`` entry naming the changed fields."""
    gradable = get_gradable(session, domain, gradable_id, live=True)
    changes = {
        name: value for name, value in body.model_dump(exclude_unset=True).items() if getattr(gradable, name) != value
    }
    if "title" in changes and changes["title"] is None:
        raise Refused("title cannot be empty")
    if "total_points" in changes and changes["total_points"] is None:
        raise Refused("total_points cannot be empty")
    if "type" in changes and changes["type"] is None:
        raise Refused("type cannot be empty")
    if not changes:
        return gradable
    now = datetime.now(UTC)
    for name, value in changes.items():
        setattr(gradable, name, value)
    gradable.updated_at = now
    gradable.revision += 1
    _append(
        session,
        domain,
        "gradable_edited",
        gradable.class_id,
        now,
        gradable_id=gradable.id,
        revision=gradable.revision,
        changed_fields=",".join(sorted(changes)),
    )
    session.flush()
    return gradable


def delete_gradable(session: Session, domain: str, gradable_id: int) -> Gradable:
    """Delete a gradable (kept, marked deleted; its scores stay in Learning): one ``gradable_deleted`` entry."""
    gradable = get_gradable(session, domain, gradable_id, live=True)
    now = datetime.now(UTC)
    gradable.deleted_at = now
    gradable.updated_at = now
    _append(
        session, domain, "gradable_deleted", gradable.class_id, now, gradable_id=gradable.id, revision=gradable.revision
    )
    session.flush()
    return gradable


def link_class(session: Session, domain: str, class_id: str, imported_class_id: str | None) -> dict[str, Any]:
    """Link ``class_id`` to an imported class (None: unlink). Linking re-emits the class's gradables and scores."""
    _class(session, domain, class_id)
    if imported_class_id is not None:
        if imported_class_id == class_id:
            raise Refused("a class cannot be linked to itself")
        _class(session, domain, imported_class_id)
        if session.scalar(
            select(ClassLink.id).where(ClassLink.domain == domain, ClassLink.class_id == imported_class_id)
        ):
            raise Refused(f"class {imported_class_id} is itself linked to another class; link to the imported class")
    link = session.scalar(select(ClassLink).where(ClassLink.domain == domain, ClassLink.class_id == class_id))
    current = link.imported_class_id if link else None
    if current == imported_class_id:
        return {"class_id": class_id, "imported_class_id": current, "changed": False}
    now = datetime.now(UTC)
    if imported_class_id is None:
        session.execute(delete(ClassLink).where(ClassLink.domain == domain, ClassLink.class_id == class_id))
        _append(session, domain, "class_unlinked", class_id, now, linked_class_id=current)
        session.flush()
        return {"class_id": class_id, "imported_class_id": None, "changed": True}
    if link is None:
        session.add(ClassLink(domain=domain, class_id=class_id, imported_class_id=imported_class_id, linked_at=now))
    else:
        link.imported_class_id = imported_class_id
        link.linked_at = now
    _append(session, domain, "class_linked", class_id, now, linked_class_id=imported_class_id)
    gradables = list_gradables(session, domain, class_id)
    rows: list[dict[str, Any]] = []
    for gradable in gradables:
        rows.append(
            {
                "domain": domain,
                "event": "gradable_created",
                "class_id": class_id,
                "gradable_id": gradable.id,
                "revision": gradable.revision,
                "changed_at": now,
            }
        )
        for score in session.scalars(select(Score).where(Score.gradable_id == gradable.id).order_by(Score.id)):
            if score.score is not None:
                rows.append(
                    {
                        "domain": domain,
                        "event": "score_set",
                        "class_id": class_id,
                        "gradable_id": gradable.id,
                        "student_id": score.student_id,
                        "score": score.score,
                        "version": score.version,
                        "changed_at": now,
                    }
                )
    session.flush()
    if rows:
        session.execute(insert(GradebookChange), rows)
    session.flush()
    return {"class_id": class_id, "imported_class_id": imported_class_id, "changed": True}


def set_score(session: Session, domain: str, gradable_id: int, student_id: str, value: str | None) -> dict[str, Any]:
    """Enter or change one score; an unchanged value adds nothing to the feed."""
    gradable = get_gradable(session, domain, gradable_id, live=True)
    # A student and a teacher may carry the same number (separate DCID sequences): the
    # student's roster row, never the teacher's.
    on_roster = session.scalar(
        select(Roster.role).where(
            Roster.domain == domain,
            Roster.class_id == gradable.class_id,
            Roster.user_type == "S",
            Roster.user_id == student_id,
        )
    )
    if on_roster != "student":
        raise Refused(f"student {student_id} is not a student on the roster of class {gradable.class_id}")
    score = session.scalar(select(Score).where(Score.gradable_id == gradable.id, Score.student_id == student_id))
    if score is not None and score.score == value:
        return score_out(score, changed=False)
    if score is None and value is None:  # nothing to clear
        return {
            "gradable_id": gradable.id,
            "student_id": student_id,
            "score": None,
            "version": 0,
            "changed_at": timestamp(datetime.now(UTC)),
            "changed": False,
        }
    now = datetime.now(UTC)
    if score is None:
        score = Score(
            domain=domain, gradable_id=gradable.id, student_id=student_id, score=value, version=1, changed_at=now
        )
        session.add(score)
    else:
        score.score = value
        score.version += 1
        score.changed_at = now
    _append(
        session,
        domain,
        "score_set" if value is not None else "score_cleared",
        gradable.class_id,
        now,
        gradable_id=gradable.id,
        student_id=student_id,
        score=value,
        version=score.version,
    )
    session.flush()
    return score_out(score, changed=True)


def score_out(score: Score, changed: bool) -> dict[str, Any]:
    return {
        "gradable_id": score.gradable_id,
        "student_id": score.student_id,
        "score": score.score,
        "version": score.version,
        "changed_at": timestamp(score.changed_at),
        "changed": changed,
    }


def read_changes(session: Session, domain: str, after: int, limit: int) -> dict[str, Any]:
    """Changes with cursor > ``after``, oldest first, at most ``limit`` of them."""
    rows = session.execute(
        select(GradebookChange, Gradable, LearningClass, ClassLink.imported_class_id)
        .outerjoin(Gradable, Gradable.id == GradebookChange.gradable_id)
        .join(
            LearningClass,
            (LearningClass.domain == GradebookChange.domain) & (LearningClass.class_id == GradebookChange.class_id),
        )
        .outerjoin(
            ClassLink, (ClassLink.domain == GradebookChange.domain) & (ClassLink.class_id == GradebookChange.class_id)
        )
        .where(GradebookChange.domain == domain, GradebookChange.cursor > after)
        .order_by(GradebookChange.cursor)
        .limit(limit + 1)
    ).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    grade_push_organizations = set(read_settings(session, domain).grade_push_organizations)
    changes = [
        {
            "cursor": change.cursor,
            "event": change.event,
            "class_id": learning_class.class_id,
            "organization_id": learning_class.organization_id,
            "teacher_id": learning_class.teacher_id,
            "year": learning_class.year,
            "grade_push_enabled": learning_class.organization_id in grade_push_organizations,
            "linked_class_id": change.linked_class_id if change.event == "class_unlinked" else linked_to,
            "gradable": gradable_out(gradable) if gradable is not None else None,
            "revision": change.revision,
            "changed_fields": change.changed_fields.split(",") if change.changed_fields else None,
            "student_id": change.student_id,
            "score": change.score,
            "version": change.version,
            "changed_at": timestamp(change.changed_at),
        }
        for change, gradable, learning_class, linked_to in rows
    ]
    return {"changes": changes, "next_cursor": changes[-1]["cursor"] if changes else after, "has_more": has_more}
