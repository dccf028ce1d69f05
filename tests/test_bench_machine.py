"""The benchmark's machine sampler (``bench/machine.py``) against the real PostgreSQL server.

A checkpoint during a stage writes out what the stage's own backends wrote: the sampler
counts the server's background writers apart, not as other work that would call the stage busy.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from bench.machine import PostgresBackends, StageSampler

pytestmark = pytest.mark.postgres


def test_checkpoint_is_counted_as_the_servers_background_work(postgres_url: str) -> None:
    database = make_url(postgres_url).database
    found = PostgresBackends(database)
    found.ticks()
    if not found.background_ticks():
        pytest.skip("the PostgreSQL server does not run on this machine: its processes cannot be read")
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection, StageSampler(os.getpid(), database) as sampler:
            connection.exec_driver_sql(
                "CREATE TABLE written AS SELECT g, md5(g::text) AS m FROM generate_series(1, 1000000) g"
            )
            connection.exec_driver_sql("CHECKPOINT")
    finally:
        engine.dispose()
    result = sampler.result()
    if result.get("quiet") is None:
        pytest.skip("/proc/stat is not readable here")
    assert result["postgres_server_cpu_seconds"] > 0  # the backend's CREATE TABLE
    assert result["postgres_background_cpu_seconds"] > 0  # the checkpointer writing it out
