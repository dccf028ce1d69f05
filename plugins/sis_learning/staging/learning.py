"""The Learning-shaped rows of a run: what transform produced and diff/load send.

One table per Learning entity, with the columns of the source document's mapping
tables (Student / Teacher / Parent, Users Levels, Organizational, Course and roster
mappings, Parent Child). Keys are PowerSchool DCIDs as strings; a user is identified by
``user_type`` and ``external_id`` (rosters carry the user's type too). ``learning_users``
never holds a password: only ``password_temporary`` (the district's "Imported passwords
are temporary" setting); load resolves the district's default password reference itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.entities import LEARNING_ENTITIES
from sis_learning.staging.base import Base
from sis_learning.staging.source import RunKeyed


class LearningOrganization(RunKeyed, Base):
    __tablename__ = "learning_organizations"
    organization_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(400))
    __table_args__ = (Index("ix_learning_organizations_run", "district_id", "run_id", "organization_id"),)


class LearningUser(RunKeyed, Base):
    __tablename__ = "learning_users"
    external_id: Mapped[str] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    login: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    user_type: Mapped[str] = mapped_column(String(1))  # S | T | P
    organization_id: Mapped[str | None] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sso_email_address: Mapped[str | None] = mapped_column(String(254))
    password_temporary: Mapped[bool] = mapped_column(Boolean, default=True)
    login_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (Index("ix_learning_users_run", "district_id", "run_id", "external_id"),)


class LearningUserLevel(RunKeyed, Base):
    __tablename__ = "learning_user_levels"
    external_id: Mapped[str] = mapped_column(String(64))
    level_id: Mapped[str] = mapped_column(String(20))
    __table_args__ = (Index("ix_learning_user_levels_run", "district_id", "run_id", "external_id"),)


class LearningClass(RunKeyed, Base):
    __tablename__ = "learning_classes"
    class_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(100))
    year: Mapped[str | None] = mapped_column(String(64))
    teacher_id: Mapped[str] = mapped_column(String(64))
    organization_id: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (Index("ix_learning_classes_run", "district_id", "run_id", "class_id"),)


class LearningRoster(RunKeyed, Base):
    __tablename__ = "learning_rosters"
    class_id: Mapped[str] = mapped_column(String(64))
    # S (role student) | T (teacher, co-teacher): a user is identified by type and external id.
    # Nullable only so an older staging database gains the column in place.
    user_type: Mapped[str | None] = mapped_column(String(1))
    user_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))  # teacher | co-teacher | student
    __table_args__ = (Index("ix_learning_rosters_run", "district_id", "run_id", "class_id", "user_id"),)


class LearningParentLink(RunKeyed, Base):
    __tablename__ = "learning_parent_links"
    parent_id: Mapped[str] = mapped_column(String(64))
    child_id: Mapped[str] = mapped_column(String(64))
    __table_args__ = (Index("ix_learning_parent_links_run", "district_id", "run_id", "parent_id", "child_id"),)


# Learning entity name (as in the Learning API and change_set.entity) -> table
LEARNING_TABLES = {entity.name: globals()[entity.table_model] for entity in LEARNING_ENTITIES}
# Nothing reads these tables by ``id``: on PostgreSQL they keep the column (filled by its
# sequence) without a primary key index, a quarter of the cost of every row transform writes
# or an incremental run copies forward (staging.base._upgrade_storage; docs/load.md).
for _model in LEARNING_TABLES.values():
    _model.__table__.info["postgresql_primary_key"] = False
# A district has at least as many roster rows as students, and its users are students, staff
# and parents: work per entity done side by side starts with the largest (staging.base.side_by_side).
LARGEST_FIRST = ("rosters", "users", "parent_links", "user_levels", "classes", "organizations")


def largest_first(names: Iterable[str]) -> list[str]:
    """Learning entity names, the largest tables' first."""
    return sorted(names, key=lambda name: LARGEST_FIRST.index(name) if name in LARGEST_FIRST else len(LARGEST_FIRST))
