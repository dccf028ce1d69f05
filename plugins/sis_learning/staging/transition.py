"""The Import ID transition's staged table: one row per existing Learning user and plan (transition.py).

``transition_matches``: for each user the district's Learning domain held when the plan
was made, how it was matched to a SIS record (or why not), and, once approved, what
Learning answered when it was given its Import ID.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sis_learning.staging.base import Base
from sis_learning.staging.runs import utcnow

# transition_matches.outcome
MATCHED, AMBIGUOUS, UNMATCHED, ALREADY = "matched", "ambiguous", "unmatched", "already"
# transition_matches.status
PLANNED, APPLIED, REFUSED, SKIPPED = "planned", "applied", "refused", "skipped"


class TransitionMatch(Base):
    __tablename__ = "transition_matches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(64))
    plan_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(250))  # the run whose learning_users are the SIS side
    learning_id: Mapped[int] = mapped_column(Integer)
    user_type: Mapped[str] = mapped_column(String(1))
    current_import_id: Mapped[str | None] = mapped_column(String(64))
    login: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(250))
    outcome: Mapped[str] = mapped_column(String(20))
    method: Mapped[str | None] = mapped_column(String(20))  # sso_email | login | district_csv
    new_import_id: Mapped[str | None] = mapped_column(String(64))
    candidates: Mapped[str | None] = mapped_column(Text)  # the SIS records considered, "S:1001, S:1002"
    reason: Mapped[str | None] = mapped_column(Text)
    first_import_changes: Mapped[str | None] = mapped_column(Text)  # what the first import will update
    status: Mapped[str] = mapped_column(String(20), default=PLANNED)
    learning_answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (Index("ix_transition_matches_plan", "district_id", "plan_id"),)
