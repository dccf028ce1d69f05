"""The event trigger against the real Learning server and staging DB; the grade-push DAG's shape."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sis_learning.triggers import GradebookChangeTrigger

REPO_ROOT = Path(__file__).resolve().parents[2]


def _connect(world, monkeypatch, sqlite_url):
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", sqlite_url)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{world.config.learning.connection_id.upper()}",
        json.dumps(
            {
                "conn_type": "http",
                "host": world.learning.base_url,
                "password": world.learning.tokens[world.domain],
                "extra": {"ca_bundle": str(world.learning.ca_bundle)},
            }
        ),
    )


async def _watch(trigger, queue):
    async for event in trigger.run():
        await queue.put((time.monotonic(), event.payload))


async def _next(queue, timeout):
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return None


def test_the_trigger_fires_on_new_changes_once_and_again_after_the_push_moves_the_cursor(
    world, monkeypatch, sqlite_url
):
    _connect(world, monkeypatch, sqlite_url)
    section = world.pool.take(1)[0]
    world.import_sections([section])
    trigger = GradebookChangeTrigger(
        world.config.district_id, world.config.learning.connection_id, poll_interval_seconds=0.2
    )

    async def scenario():
        queue: asyncio.Queue = asyncio.Queue()
        watcher = asyncio.create_task(_watch(trigger, queue))
        try:
            assert await _next(queue, 1.0) is None  # nothing in the feed: no event
            gradable = await asyncio.to_thread(world.gradable, section, "Trigger quiz", 10)  # gradable_created
            _, payload = await _next(queue, 5.0)
            first = payload
            assert payload["district_id"] == world.config.district_id and payload["after"] == 0
            assert payload["changes"] == 1 and payload["through"] >= 1
            assert await _next(queue, 1.0) is None  # announced already: not again while the push is pending
            summary = await asyncio.to_thread(world.push, "run_1")
            assert summary.cursor_after == first["through"]
            assert await _next(queue, 1.0) is None  # pushed: nothing to announce
            await asyncio.to_thread(world.score, gradable, section.students[1], "6")
            _, payload = await _next(queue, 5.0)
            assert payload["after"] == first["through"] and payload["changes"] == 1
        finally:
            watcher.cancel()

    asyncio.run(scenario())


def test_the_trigger_announces_again_when_a_push_never_moves_the_cursor(world, monkeypatch, sqlite_url):
    _connect(world, monkeypatch, sqlite_url)
    section = world.pool.take(1)[0]
    world.import_sections([section])
    world.score(world.gradable(section, "Rearm quiz", 10), section.students[0], "5")
    trigger = GradebookChangeTrigger(
        world.config.district_id, world.config.learning.connection_id, poll_interval_seconds=0.2, rearm_seconds=1.0
    )

    async def scenario():
        queue: asyncio.Queue = asyncio.Queue()
        watcher = asyncio.create_task(_watch(trigger, queue))
        try:
            first_at, first = await _next(queue, 5.0)
            second_at, second = await _next(queue, 5.0)  # the push failed: announced again after rearm_seconds
            assert second["after"] == first["after"] == 0 and second_at - first_at >= 1.0
        finally:
            watcher.cancel()

    asyncio.run(scenario())


def test_the_trigger_keeps_watching_when_learning_is_unreachable(monkeypatch, sqlite_url):
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", sqlite_url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_LEARNING_NOWHERE",
        json.dumps({"conn_type": "http", "host": "https://127.0.0.1:9", "password": "a-token-that-must-not-be-logged"}),
    )
    trigger = GradebookChangeTrigger("nowhere", "learning_nowhere", poll_interval_seconds=0.05)

    async def scenario():
        queue: asyncio.Queue = asyncio.Queue()
        watcher = asyncio.create_task(_watch(trigger, queue))
        try:
            assert await _next(queue, 1.0) is None
            assert not watcher.done()  # still polling, not crashed
        finally:
            watcher.cancel()

    asyncio.run(scenario())


def test_the_trigger_serialises_without_secrets_and_round_trips():
    trigger = GradebookChangeTrigger("demo", "learning_demo", poll_interval_seconds=1.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "sis_learning.triggers.GradebookChangeTrigger"
    assert kwargs == {
        "district_id": "demo",
        "learning_conn_id": "learning_demo",
        "poll_interval_seconds": 1.5,
        "rearm_seconds": 300.0,
    }
    import importlib

    module, name = classpath.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)


def _parse(districts_dir: Path | None = None) -> dict:
    script = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='dags/grade_push.py')\n"
        "out = {'errors': {k: str(v) for k, v in bag.import_errors.items()}, 'dags': {}}\n"
        "for dag_id, dag in bag.dags.items():\n"
        "    [asset] = (\n"
        "        list(dag.timetable.asset_condition.iter_assets().values())\n"
        "        if hasattr(dag.timetable.asset_condition, 'iter_assets')\n"
        "        else [dag.schedule[0]]\n"
        "    )\n"
        "    [watcher] = asset.watchers\n"
        "    out['dags'][dag_id] = {'asset': asset.name, 'watcher': watcher.name,\n"
        "        'trigger': watcher.trigger.serialize(),\n"
        "        'tasks': {t.task_id: [t.pool, t.retries, t.retry_exponential_backoff] for t in dag.tasks},\n"
        "        'owner': dag.owner, 'tags': sorted(dag.tags),\n"
        "        'max_active_runs': dag.max_active_runs, 'catchup': dag.catchup,\n"
        "        'doc': len(dag.doc_md or '')}\n"
        "from airflow.serialization.serialized_objects import DagSerialization\n"
        "for dag in bag.dags.values():\n"
        "    DagSerialization.to_dict(dag)\n"
        "print(json.dumps(out))\n"
    )
    environment = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}"}
    if districts_dir is not None:
        environment["SIS_LEARNING_DISTRICTS_DIR"] = str(districts_dir)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_grade_push_dag_per_enabled_district_scheduled_by_the_watched_asset(tmp_path):
    (tmp_path / "demo.yaml").write_text((REPO_ROOT / "include" / "districts" / "demo.yaml").read_text())
    for name, enabled in (("alpha", True), ("beta", False)):
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name.title()} District\npowerschool: {{connection_id: ps_{name}}}\n"
            f"learning: {{connection_id: learning_{name}}}\nimport_start_year: 2025\n"
            f"grade_push: {{enabled: {str(enabled).lower()}, poll_interval_seconds: 1.5}}\n"
        )
    parsed = _parse(tmp_path)
    assert parsed["errors"] == {}
    assert sorted(parsed["dags"]) == ["grade_push__alpha", "grade_push__demo"]  # beta has grade push off
    dag = parsed["dags"]["grade_push__alpha"]
    assert dag["asset"] == "learning_gradebook__alpha" and dag["watcher"] == "learning_gradebook_changes__alpha"
    assert dag["trigger"] == [
        "sis_learning.triggers.GradebookChangeTrigger",
        {
            "district_id": "alpha",
            "learning_conn_id": "learning_alpha",
            "poll_interval_seconds": 1.5,
            "rearm_seconds": 300.0,
        },
    ]
    pool, retries, backoff = dag["tasks"]["push_grades"]
    assert pool == "powerschool_api" and retries >= 2 and backoff == 2.0
    assert dag["owner"] == "data-engineering" and "grade-push" in dag["tags"]
    # runs may overlap (no Airflow max_active_runs=1 stall); the ledger lease serialises the writes
    assert dag["max_active_runs"] == 8 and dag["catchup"] is False and dag["doc"] > 200


def test_a_backlog_is_announced_once_through_its_newest_change(world, monkeypatch, sqlite_url):
    """A burst (or changes made while the DAG was paused) starts one run, not one per probe page."""
    import sis_learning.triggers as triggers

    _connect(world, monkeypatch, sqlite_url)
    monkeypatch.setattr(triggers, "PROBE_LIMIT", 4)  # pages of 4 entries, so a small backlog spans several
    section = world.pool.take(1)[0]
    world.import_sections([section])
    for index in range(3):
        gradable = world.gradable(section, f"Backlog {index}", 10)
        for student in section.students[:3]:
            world.score(gradable, student, "5")
    newest = max(int(change["cursor"]) for change in world.learning_hook().gradebook_changes(0, 1000)["changes"])
    trigger = GradebookChangeTrigger(world.config.district_id, world.config.learning.connection_id)

    _, payload = trigger.poll_once(None)
    assert (payload["after"], payload["through"], payload["changes"], payload["has_more"]) == (0, newest, 12, False)
    assert trigger.poll_once(payload["through"])[1] is None  # nothing more to announce until the push moves on

    monkeypatch.setattr(triggers, "PROBE_MAX_PAGES", 2)  # the chase is bounded: a larger backlog goes in steps
    _, first = trigger.poll_once(None)
    _, second = trigger.poll_once(first["through"])
    assert (first["changes"], first["has_more"], second["changes"], second["through"]) == (8, True, 4, newest)
