"""Users that were in a Learning domain before the integration, and moving them onto their Import IDs.

The source document: a district whose live domain already has users must "transition your
accounts to the PowerSchool SIS integration" (automatically by Google / Office 365 email,
otherwise with a mapping the district helps build). These are the admin calls that needs:

- create a user by hand (what an admin does in Learning's UI, or what an earlier
  integration left): no Import ID, or an old one;
- list every user with Learning's own id (``learning_id``), optionally only those without
  an Import ID: a user without one cannot be named any other way;
- set a user's Import ID. The user keeps their login, password, authentication type and
  content; whatever refers to the user by the old Import ID (roster rows, parent links, a
  student's user level and scores, the classes a teacher owns) is moved to the new one in
  the same transaction, so the next import updates the user instead of creating another.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sandbox.learning.models import (
    LearningClass,
    Notification,
    Organization,
    ParentLink,
    Roster,
    Score,
    User,
    UserLevel,
)
from sandbox.learning.schemas import HandMadeUserBody


class Refused(Exception):
    """The call breaks a rule (answered 409 or 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def admin_user_out(user: User) -> dict[str, Any]:
    return {
        "learning_id": user.id,
        "user_type": user.user_type,
        "external_id": user.external_id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "login": user.login,
        "email": user.email,
        "sso_email_address": user.sso_email_address,
        "authentication_type": user.authentication_type,
        "organization_id": user.organization_id,
        "enabled": user.enabled,
    }


def create_user(session: Session, domain: str, body: HandMadeUserBody) -> User:
    now = datetime.now(UTC)
    if (
        session.scalar(
            select(Organization.id).where(
                Organization.domain == domain, Organization.organization_id == body.organization_id
            )
        )
        is None
    ):
        raise Refused(422, f"organization {body.organization_id} does not exist in this domain")
    login_key = body.login.lower()
    holder = session.scalar(select(User).where(User.domain == domain, User.login_key == login_key))
    if holder is not None:
        raise Refused(409, f"login '{body.login}' is already used by another user in this domain (logins are unique)")
    if body.external_id is not None and session.scalar(
        select(User.id).where(
            User.domain == domain, User.user_type == body.user_type, User.external_id == body.external_id
        )
    ):
        raise Refused(409, f"user {body.user_type}:{body.external_id} already exists in this domain")
    user = User(
        domain=domain,
        external_id=body.external_id,
        first_name=body.first_name,
        last_name=body.last_name,
        login=body.login,
        login_key=login_key,
        login_generated=False,
        email=body.email,
        user_type=body.user_type,
        organization_id=body.organization_id,
        enabled=True,
        sso_email_address=body.sso_email_address,
        authentication_type=body.authentication_type,
        authentication_set_by="admin",
        password_hash=None,
        password_temporary=False,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    session.flush()
    return user


def list_users(session: Session, domain: str, page: int, page_size: int, without_import_id: bool) -> dict[str, Any]:
    where = [User.domain == domain]
    if without_import_id:
        where.append(User.external_id.is_(None))
    total = session.scalar(select(func.count()).select_from(User).where(*where)) or 0
    users = session.scalars(
        select(User).where(*where).order_by(User.id).offset((page - 1) * page_size).limit(page_size)
    ).all()
    return {
        "rows": [admin_user_out(user) for user in users],
        "page": page,
        "page_size": page_size,
        "total": total,
        "has_more": page * page_size < total,
    }


def set_import_id(session: Session, domain: str, learning_id: int, external_id: str) -> tuple[User, str]:
    """Give the user ``external_id``; returns the user and ``updated`` or ``unchanged``."""
    user = session.scalar(select(User).where(User.domain == domain, User.id == learning_id))
    if user is None:
        raise Refused(404, f"no user with learning_id {learning_id} in this domain")
    if user.external_id == external_id:
        return user, "unchanged"
    taken = session.scalar(
        select(User).where(User.domain == domain, User.user_type == user.user_type, User.external_id == external_id)
    )
    if taken is not None:
        raise Refused(
            409,
            f"Import ID {user.user_type}:{external_id} already belongs to another user "
            f"(learning_id {taken.id}) in this domain",
        )
    old = user.external_id
    if old is not None:
        _move_references(session, domain, user.user_type, old, external_id)
    user.external_id = external_id
    user.updated_at = datetime.now(UTC)
    session.flush()
    return user, "updated"


def _move_references(session: Session, domain: str, user_type: str, old: str, new: str) -> None:
    """What names the user by the old Import ID names them by the new one (content stays the user's)."""
    session.execute(
        update(Roster)
        .where(Roster.domain == domain, Roster.user_type == user_type, Roster.user_id == old)
        .values(user_id=new)
    )
    session.execute(
        update(Notification)
        .where(Notification.domain == domain, Notification.user_type == user_type, Notification.user_external_id == old)
        .values(user_external_id=new)
    )
    if user_type == "S":
        session.execute(
            update(UserLevel).where(UserLevel.domain == domain, UserLevel.external_id == old).values(external_id=new)
        )
        session.execute(update(Score).where(Score.domain == domain, Score.student_id == old).values(student_id=new))
        session.execute(
            update(ParentLink).where(ParentLink.domain == domain, ParentLink.child_id == old).values(child_id=new)
        )
    elif user_type == "P":
        session.execute(
            update(ParentLink).where(ParentLink.domain == domain, ParentLink.parent_id == old).values(parent_id=new)
        )
    elif user_type == "T":
        session.execute(
            update(LearningClass)
            .where(LearningClass.domain == domain, LearningClass.teacher_id == old)
            .values(teacher_id=new)
        )
