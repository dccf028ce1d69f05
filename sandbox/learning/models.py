"""The reference Learning server's own database: one row per Learning object, per domain.

These tables are the sandbox's model of a PowerSchool Learning domain (a district): the
objects the source document's mapping tables import (organizations, users, user levels,
classes, rosters, parent-child links), the domain settings ("Manage Domain -> Grade Push
Config", "Autogenerate usernames", "Imported passwords are temporary"), the gradebook
(gradables and scores) and its change feed, and the notifications counter that proves
imported users are never told about their accounts.

Every table carries ``domain``: a token belongs to one domain and every query filters
on it, so one district can never read or write another's rows. The server keeps its own
declarative ``Base``: it never imports the pipeline's staging models.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sandbox.learning.limits import (
    AUTHENTICATION_TYPE_LENGTH,
    CLASS_NAME_LENGTH,
    CODE_LENGTH,
    DOMAIN_LENGTH,
    EMAIL_LENGTH,
    EXTERNAL_ID_LENGTH,
    GRADABLE_TITLE_LENGTH,
    GRADABLE_TYPE_LENGTH,
    LEVEL_LENGTH,
    LOGIN_LENGTH,
    NAME_LENGTH,
    ROLE_LENGTH,
    SCORE_LENGTH,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class LearningBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Integer primary keys: BigInteger on PostgreSQL, INTEGER on SQLite (so it stays the rowid).
RowId = BigInteger().with_variant(Integer(), "sqlite")


class Organization(LearningBase):
    __tablename__ = "organizations"
    __table_args__ = (UniqueConstraint("domain", "organization_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    organization_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(LearningBase):
    __tablename__ = "users"
    # A user is identified by (user_type, external_id): a student, a teacher and a parent
    # may carry the same number (PowerSchool keeps a sequence per table).
    # login_key is the login in lower case: logins are unique in a domain whatever their case.
    __table_args__ = (UniqueConstraint("domain", "user_type", "external_id"), UniqueConstraint("domain", "login_key"))

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    # None for a user created by hand in Learning (no Import ID yet; see admin_users.py).
    external_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH), nullable=True)
    first_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    last_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    login: Mapped[str] = mapped_column(String(LOGIN_LENGTH))
    login_key: Mapped[str] = mapped_column(String(LOGIN_LENGTH))
    login_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH), nullable=True)
    user_type: Mapped[str] = mapped_column(String(1))
    organization_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sso_email_address: Mapped[str | None] = mapped_column(String(EMAIL_LENGTH), nullable=True)
    authentication_type: Mapped[str] = mapped_column(String(AUTHENTICATION_TYPE_LENGTH))
    # "import" or "admin": who last set authentication_type (an admin's choice is never undone by an import).
    authentication_set_by: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    password_temporary: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UserLevel(LearningBase):
    __tablename__ = "user_levels"
    __table_args__ = (UniqueConstraint("domain", "external_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    level_id: Mapped[str] = mapped_column(String(LEVEL_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LearningClass(LearningBase):
    __tablename__ = "classes"
    __table_args__ = (UniqueConstraint("domain", "class_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    class_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    name: Mapped[str] = mapped_column(String(CLASS_NAME_LENGTH))
    code: Mapped[str | None] = mapped_column(String(CODE_LENGTH), nullable=True)
    year: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH), nullable=True)
    teacher_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    organization_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Roster(LearningBase):
    __tablename__ = "rosters"
    __table_args__ = (UniqueConstraint("domain", "class_id", "user_type", "user_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    class_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    user_type: Mapped[str] = mapped_column(String(1))
    user_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    role: Mapped[str] = mapped_column(String(ROLE_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ParentLink(LearningBase):
    __tablename__ = "parent_links"
    __table_args__ = (UniqueConstraint("domain", "parent_id", "child_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    parent_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    child_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DomainSettings(LearningBase):
    """Manage Domain -> Settings / PowerSchool Config / Grade Push Config, as one JSON document."""

    __tablename__ = "domain_settings"

    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), primary_key=True)
    settings: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Gradable(LearningBase):
    __tablename__ = "gradables"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    class_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    title: Mapped[str] = mapped_column(String(GRADABLE_TITLE_LENGTH))
    # Text, not String(n): the length is enforced on input, and no database may truncate it silently.
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    due_date: Mapped[str | None] = mapped_column(String(10), nullable=True)
    total_points: Mapped[float] = mapped_column()
    type: Mapped[str] = mapped_column(String(GRADABLE_TYPE_LENGTH))
    # Counts the edits of the gradable's fields (1 at creation), so a consumer can drop a stale edit.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # A deleted gradable is kept (the feed still names it); it takes no more scores or edits.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Score(LearningBase):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("gradable_id", "student_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    gradable_id: Mapped[int] = mapped_column(RowId)
    student_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    score: Mapped[str | None] = mapped_column(String(SCORE_LENGTH), nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClassLink(LearningBase):
    """A Learning class linked to an imported class: its gradables and scores go to that class's section."""

    __tablename__ = "class_links"
    __table_args__ = (UniqueConstraint("domain", "class_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH))
    class_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    imported_class_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GradebookChange(LearningBase):
    """One entry of the change feed; ``cursor`` only ever grows (never reused, never deleted).

    ``event`` is one of ``gradebook.EVENTS``: score events name a gradable and a student,
    gradable events a gradable, link events only the class.
    """

    __tablename__ = "gradebook_changes"
    __table_args__ = {"sqlite_autoincrement": True}

    cursor: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    event: Mapped[str] = mapped_column(String(24), default="score_set")
    class_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH), nullable=True)
    gradable_id: Mapped[int | None] = mapped_column(RowId, nullable=True)
    student_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH), nullable=True)
    score: Mapped[str | None] = mapped_column(String(SCORE_LENGTH), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # gradable events: the gradable's revision and (edits) the fields that changed, comma-separated
    revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    changed_fields: Mapped[str | None] = mapped_column(String(200), nullable=True)
    linked_class_id: Mapped[str | None] = mapped_column(String(EXTERNAL_ID_LENGTH), nullable=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notification(LearningBase):
    """A message Learning sent to a user. Imports never create one; an admin may, later."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    user_type: Mapped[str] = mapped_column(String(1))
    user_external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
