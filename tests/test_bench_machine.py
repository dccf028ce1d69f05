"""The benchmark's machine sampler (``bench/machine.py``) against the real PostgreSQL server
and the real reference Learning server.

A checkpoint during a stage writes out what the stage's own backends wrote: the sampler
counts the server's background writers apart, not as other work that would call the stage busy.
The reference Learning server's CPU time is counted apart too: it bounds a full load's wall time.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from bench.machine import PostgresBackends, StageSampler
from sandbox.learning.measure_upsert import user_rows
from sandbox.learning.testing import running_learning


@pytest.mark.postgres
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


def test_the_learning_servers_cpu_time_is_counted_apart() -> None:
    with running_learning({"sampled": "sampled-token-" + "x" * 16}) as learning:
        client = learning.client("sampled")
        client.post("/api/v1/organizations/batch", json={"rows": [{"organization_id": "1", "name": "Sampled High"}]})
        with StageSampler(os.getpid()) as sampler:
            for number in range(8):
                answer = client.post("/api/v1/users/batch", json={"rows": user_rows(number * 1000, 1000, "")}).json()
                assert answer["summary"]["created"] == 1000
    result = sampler.result()
    if result.get("quiet") is None:
        pytest.skip("/proc/stat is not readable here")
    # 8,000 users created: the server's own work, a part of the benchmark's processes' time,
    # and not the simulator's (one another test left running in this process may idle beside it).
    assert 0 < result["learning_server_cpu_seconds"] <= result["bench_processes_cpu_seconds"]
    assert result["simulator_cpu_seconds"] < result["learning_server_cpu_seconds"]
