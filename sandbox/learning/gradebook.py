"""The teacher's side of Learning for grade push: gradables, scores and the gradebook change feed.

The source document's Grade Mappings read a gradable's title, description, due date and
total points, the class's import id and the student's import id and score; grade push
is "Immediate", and only for organizations enabled under Grade Push Config. The change
feed gives all of that per score change, in the order the changes happened:

- every score that is entered or changed appends one entry with a new ``cursor``; the
  cursor only grows (entries are never rewritten or deleted), so a reader that keeps the
  last cursor it processed never misses or repeats a change;
- ``version`` counts the changes of one (gradable, student) score, so a consumer can
  drop a stale write;
- editing a gradable's fields re-emits its scores (new versions), since the
  PowerTeacher assignment must follow the new title or points.

Writes are serialised per domain by the caller, so within a domain cursors are
committed in increasing order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from sandbox.learning.domain_settings import read_settings
from sandbox.learning.models import Gradable, GradebookChange, LearningClass, Roster, Score
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
    }


def _class(session: Session, domain: str, class_id: str) -> LearningClass:
    learning_class = session.scalar(
        select(LearningClass).where(LearningClass.domain == domain, LearningClass.class_id == class_id)
    )
    if learning_class is None:
        raise NotFound(f"class {class_id} does not exist in this domain")
    return learning_class


def get_gradable(session: Session, domain: str, gradable_id: int) -> Gradable:
    gradable = session.get(Gradable, gradable_id)
    if gradable is None or gradable.domain != domain:
        raise NotFound(f"gradable {gradable_id} does not exist in this domain")
    return gradable


def create_gradable(session: Session, domain: str, class_id: str, body: GradableBody) -> Gradable:
    _class(session, domain, class_id)
    now = datetime.now(UTC)
    gradable = Gradable(domain=domain, class_id=class_id, created_at=now, updated_at=now, **body.model_dump())
    session.add(gradable)
    session.flush()
    return gradable


def list_gradables(session: Session, domain: str, class_id: str) -> list[Gradable]:
    _class(session, domain, class_id)
    return list(
        session.scalars(
            select(Gradable).where(Gradable.domain == domain, Gradable.class_id == class_id).order_by(Gradable.id)
        )
    )


def update_gradable(session: Session, domain: str, gradable_id: int, body: GradableUpdate) -> Gradable:
    gradable = get_gradable(session, domain, gradable_id)
    changes = {
        name: value for name, value in body.model_dump(exclude_unset=True).items() if getattr(gradable, name) != value
    }
    if "title" in changes and changes["title"] is None:
        raise Refused("title cannot be empty")
    if "total_points" in changes and changes["total_points"] is None:
        raise Refused("total_points cannot be empty")
    if not changes:
        return gradable
    now = datetime.now(UTC)
    for name, value in changes.items():
        setattr(gradable, name, value)
    gradable.updated_at = now
    scores = list(session.scalars(select(Score).where(Score.gradable_id == gradable.id).order_by(Score.id)))
    for score in scores:
        score.version += 1
        score.changed_at = now
    if scores:
        session.execute(
            insert(GradebookChange),
            [
                {
                    "domain": domain,
                    "gradable_id": gradable.id,
                    "student_id": score.student_id,
                    "score": score.score,
                    "version": score.version,
                    "changed_at": now,
                }
                for score in scores
            ],
        )
    session.flush()
    return gradable


def set_score(session: Session, domain: str, gradable_id: int, student_id: str, value: str | None) -> dict[str, Any]:
    """Enter or change one score; an unchanged value adds nothing to the feed."""
    gradable = get_gradable(session, domain, gradable_id)
    on_roster = session.scalar(
        select(Roster.role).where(
            Roster.domain == domain, Roster.class_id == gradable.class_id, Roster.user_id == student_id
        )
    )
    if on_roster != "student":
        raise Refused(f"student {student_id} is not a student on the roster of class {gradable.class_id}")
    score = session.scalar(select(Score).where(Score.gradable_id == gradable.id, Score.student_id == student_id))
    if score is not None and score.score == value:
        return score_out(score, changed=False)
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
    session.add(
        GradebookChange(
            domain=domain,
            gradable_id=gradable.id,
            student_id=student_id,
            score=value,
            version=score.version,
            changed_at=now,
        )
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
        select(GradebookChange, Gradable, LearningClass)
        .join(Gradable, Gradable.id == GradebookChange.gradable_id)
        .join(LearningClass, (LearningClass.domain == Gradable.domain) & (LearningClass.class_id == Gradable.class_id))
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
            "class_id": learning_class.class_id,
            "organization_id": learning_class.organization_id,
            "teacher_id": learning_class.teacher_id,
            "year": learning_class.year,
            "grade_push_enabled": learning_class.organization_id in grade_push_organizations,
            "gradable": gradable_out(gradable),
            "student_id": change.student_id,
            "score": change.score,
            "version": change.version,
            "changed_at": timestamp(change.changed_at),
        }
        for change, gradable, learning_class in rows
    ]
    return {"changes": changes, "next_cursor": changes[-1]["cursor"] if changes else after, "has_more": has_more}
