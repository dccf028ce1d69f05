"""A staging database as an older version left it, then upgraded by ``create_all`` (twice: idempotent)."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from sis_learning.staging.base import create_all


def upgraded(url: str, *statements: str) -> Engine:
    """Run ``statements`` (the older tables and their rows) on a fresh database, then ``create_all`` twice."""
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    create_all(engine)
    create_all(engine)  # idempotent
    return engine
