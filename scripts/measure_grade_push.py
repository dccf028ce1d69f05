"""Measure grade push under ``airflow standalone``: latency p50/p95 and a 5,000-change burst.

    .venv/bin/python scripts/measure_grade_push.py [--changes 200] [--burst 5000] [--poll-interval 1.0]

What runs (all real, on this machine): the PowerSchool simulator (``demo`` district) and
the reference Learning server over HTTPS, a staging SQLite database holding an import's
state (the classes in ``learning_snapshot``, the teachers' ``users_dcid``), and Airflow
3 ``standalone`` (api-server, scheduler, dag-processor, **triggerer**, LocalExecutor) in
a throw-away ``AIRFLOW_HOME`` whose DAG folder holds only ``dags/grade_push.py``. The
only district is ``measure``; its connections are ``AIRFLOW_CONN_*`` variables.

1. **Warm-up**: one score per measured gradable, so their PowerTeacher assignments exist
   and the watcher, the DAG and the executor are up.
2. **Latency**: ``--changes`` score changes saved in Learning one after another with a
   random 0.5-3 s gap (a teacher at work), each on a distinct (gradable, student) so its
   PowerTeacher write time is its own. Latency = PowerTeacher's ``whenmodified`` of the
   score minus Learning's ``changed_at`` of the change (both UTC on this clock).
3. **Burst**: the DAG is paused, ``--burst`` score changes are saved in Learning (new
   gradables across every section of the district, so the push also creates one
   assignment per gradable), the DAG is unpaused; the figure is the time from unpause to
   the last score recorded as pushed, and the push tasks' own durations.

Prints a JSON summary at the end, with the machine's load average (1 minute) sampled
during each phase: on a shared machine the figures are only as good as the quiet they had.
Needs about 10-15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "plugins"), str(REPO_ROOT)]

DISTRICT = "measure"
DAG_ID = f"grade_push__{DISTRICT}"

_children: list[subprocess.Popen] = []


def _stop_children() -> None:
    for process in _children:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
    for process in _children:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _on_signal(signum, _frame):
    _stop_children()
    sys.exit(128 + signum)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(share * (len(ordered) - 1))))
    return ordered[index]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200, help="score changes timed one by one (>= 200)")
    parser.add_argument("--burst", type=int, default=5000, help="score changes in the burst")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="grade_push.poll_interval_seconds")
    parser.add_argument("--dataset", default="demo", help="PowerSchool simulator dataset")
    parser.add_argument(
        "--min-file-process-interval",
        type=int,
        default=None,
        help="[dag_processor] min_file_process_interval (Airflow's default: 30 s); see docs/grade-push.md",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) afterwards")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    atexit.register(_stop_children)

    from sqlalchemy import func, select

    from sandbox.learning.testing import running_learning
    from sandbox.powerschool.testing import running_powerschool
    from sandbox.smtp import running_smtp
    from sis_learning.config import load_district
    from sis_learning.staging.base import create_all, get_engine
    from sis_learning.staging.ledger import GradePushScore
    from sis_learning.staging.runs import SyncRun
    from tests.grade_push.world import World, dataset_sections

    work = Path(tempfile.mkdtemp(prefix="measure-grade-push-"))
    log(f"work folder {work}")
    home, dags, districts = work / "airflow", work / "dags", work / "districts"
    for folder in (home, dags, districts):
        folder.mkdir()
    (dags / "grade_push.py").symlink_to(REPO_ROOT / "dags" / "grade_push.py")
    (districts / f"{DISTRICT}.yaml").write_text(
        "name: Measurement District\n"
        f"powerschool: {{connection_id: powerschool_{DISTRICT}, pool: default_pool, max_concurrent_requests: 4}}\n"
        f"learning: {{connection_id: learning_{DISTRICT}}}\n"
        "import_start_year: 2025\n"
        f"grade_push: {{enabled: true, poll_interval_seconds: {args.poll_interval}}}\n"
        f"notifications: {{failure_emails: [grades@measure.example.org], smtp_connection_id: smtp_{DISTRICT}}}\n"
    )
    config = load_district(districts / f"{DISTRICT}.yaml")
    staging_url = f"sqlite:///{work / 'staging.sqlite'}"
    engine = create_all(get_engine(staging_url))
    token = secrets.token_urlsafe(24)
    results: dict = {"poll_interval_seconds": args.poll_interval, "dataset": args.dataset}

    with (
        running_powerschool(args.dataset) as powerschool,
        running_learning(domains={DISTRICT: token}) as learning,
        running_smtp() as smtp,
    ):
        world = World(powerschool, learning, DISTRICT, engine, config)
        sections = dataset_sections(powerschool.dataset_path, min_students=1)
        world.import_sections(sections)
        log(f"imported {len(sections)} sections, {sum(len(s.students) for s in sections)} enrollments")

        api_port = free_port()
        environment = {
            **os.environ,
            "PATH": f"{REPO_ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
            "SIS_LEARNING_DISTRICTS_DIR": str(districts),
            "SIS_LEARNING_STAGING_URL": staging_url,
            f"AIRFLOW_CONN_POWERSCHOOL_{DISTRICT.upper()}": json.dumps(
                {
                    "conn_type": "http",
                    "host": powerschool.base_url,
                    "login": powerschool.client_id,
                    "password": powerschool.client_secret,
                    "extra": {"ca_bundle": str(powerschool.ca_bundle)},
                }
            ),
            f"AIRFLOW_CONN_LEARNING_{DISTRICT.upper()}": json.dumps(
                {
                    "conn_type": "http",
                    "host": learning.base_url,
                    "password": token,
                    "extra": {"ca_bundle": str(learning.ca_bundle)},
                }
            ),
            f"AIRFLOW_CONN_SMTP_{DISTRICT.upper()}": smtp.airflow_connection_uri(),
        }
        if args.min_file_process_interval is not None:
            environment["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] = str(args.min_file_process_interval)
        results["min_file_process_interval"] = args.min_file_process_interval or "default (30)"
        for name in ("AIRFLOW__CORE__UNIT_TEST_MODE", "POWERSCHOOL_SANDBOX_OPTIONS"):
            environment.pop(name, None)
        airflow = str(REPO_ROOT / ".venv" / "bin" / "airflow")
        log("airflow db migrate (fresh metadata database)")
        subprocess.run([airflow, "db", "migrate"], env=environment, check=True, capture_output=True)
        standalone_log = (work / "standalone.log").open("wb")
        process = subprocess.Popen(
            [airflow, "standalone"],
            env=environment,
            stdout=standalone_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _children.append(process)
        log(f"airflow standalone started (pid {process.pid}, api port {api_port})")

        # ---- warm-up: one score per measured gradable (creates their assignments)
        rng = random.Random(20261129)
        measured_sections = []
        for section in (section for section in sections if len(section.students) >= 7):
            measured_sections.append(section)
            if sum(len(item.students) - 1 for item in measured_sections) >= args.changes:
                break
        gradables = [world.gradable(section, f"Latency {section.section_dcid}", 10) for section in measured_sections]
        pairs = []
        for section, gradable in zip(measured_sections, gradables, strict=True):
            world.score(gradable, section.students[0], "1")
            pairs.extend((section, gradable, student) for student in section.students[1:])
        rng.shuffle(pairs)
        if len(pairs) < args.changes:
            raise SystemExit(f"only {len(pairs)} distinct (gradable, student) pairs for {args.changes} changes")

        def pushed_count() -> int:
            with engine.connect() as connection:
                return (
                    connection.scalar(
                        select(func.count())
                        .select_from(GradePushScore.__table__)
                        .where(GradePushScore.status == "pushed")
                    )
                    or 0
                )

        started = time.monotonic()
        while pushed_count() < len(gradables):
            if process.poll() is not None:
                raise SystemExit(f"airflow standalone exited ({process.returncode}); see {work / 'standalone.log'}")
            if time.monotonic() - started > 600:
                raise SystemExit(f"warm-up scores not pushed within 600 s; see {work / 'standalone.log'}")
            time.sleep(1)
        results["warm_up_seconds"] = round(time.monotonic() - started, 1)
        log(f"warm-up done in {results['warm_up_seconds']} s: the watcher, the DAG and the executor are up")

        # ---- latency
        saved = []
        load: list[float] = []
        for index, (section, gradable, student) in enumerate(pairs[: args.changes]):
            value = str(2 + index % 8)
            answer = world.score(gradable, student, value)
            saved.append((section, gradable, student, answer["changed_at"]))
            load.append(os.getloadavg()[0])
            time.sleep(rng.uniform(0.5, 3.0))
        results["load_average_1min_during_latency"] = {
            "min": round(min(load), 1),
            "median": round(statistics.median(load), 1),
            "max": round(max(load), 1),
        }
        log(f"{len(saved)} changes saved; waiting for PowerTeacher")
        deadline = time.monotonic() + 600
        latencies: list[float] = []
        while time.monotonic() < deadline:
            written = {}
            for section in measured_sections:
                for entry in world.assignments(section):
                    for score in entry["_assignmentscores"]:
                        written[(entry["name"], str(score["studentsdcid"]))] = score["whenmodified"]
            latencies = [
                parse_time(written[(f"Latency {section.section_dcid}", student)]) - parse_time(changed_at)
                for section, _, student, changed_at in saved
                if (f"Latency {section.section_dcid}", student) in written
            ]
            if len(latencies) == len(saved):
                break
            time.sleep(1)
        if len(latencies) < len(saved):
            raise SystemExit(f"only {len(latencies)} of {len(saved)} changes reached PowerTeacher within 600 s")
        results["latency"] = {
            "changes": len(latencies),
            "p50_seconds": round(percentile(latencies, 0.50), 2),
            "p95_seconds": round(percentile(latencies, 0.95), 2),
            "mean_seconds": round(statistics.fmean(latencies), 2),
            "min_seconds": round(min(latencies), 2),
            "max_seconds": round(max(latencies), 2),
        }
        log(f"latency: {results['latency']}")

        # ---- burst
        subprocess.run([airflow, "dags", "pause", DAG_ID], env=environment, check=True, capture_output=True)
        while True:  # let a run in progress end, so the backlog is pushed by the unpaused DAG
            with engine.connect() as connection:
                running = (
                    connection.scalar(
                        select(func.count())
                        .select_from(SyncRun.__table__)
                        .where(SyncRun.kind == "grade_push", SyncRun.status == "running")
                    )
                    or 0
                )
            if not running:
                break
            time.sleep(0.5)
        before = pushed_count()
        burst_scores = []
        round_number = 0
        while len(burst_scores) < args.burst:
            round_number += 1
            for section in sections:
                gradable = world.gradable(section, f"Burst {round_number} {section.section_dcid}", 20)
                for student in section.students:
                    burst_scores.append((gradable, student))
                    if len(burst_scores) == args.burst:
                        break
                if len(burst_scores) == args.burst:
                    break
        entered = time.monotonic()
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda item: world.score(item[0], item[1], str(rng.randint(0, 20))), burst_scores))
        results["burst_entry_seconds"] = round(time.monotonic() - entered, 1)
        gradable_count = len({gradable["id"] for gradable, _ in burst_scores})
        log(
            f"{len(burst_scores)} burst changes saved in Learning ({gradable_count} new gradables) in "
            f"{results['burst_entry_seconds']} s; unpausing"
        )
        subprocess.run([airflow, "dags", "unpause", DAG_ID], env=environment, check=True, capture_output=True)
        unpaused = time.monotonic()
        unpaused_wall = time.time()
        deadline = unpaused + 900
        burst_load: list[float] = []
        while pushed_count() < before + len(burst_scores):
            burst_load.append(os.getloadavg()[0])
            if time.monotonic() > deadline:
                raise SystemExit(f"burst not pushed within 900 s ({pushed_count() - before} of {len(burst_scores)})")
            time.sleep(0.5)
        results["burst"] = {
            "changes": len(burst_scores),
            "new_assignments": gradable_count,
            "seconds_from_unpause_to_last_score_recorded": round(time.monotonic() - unpaused, 1),
            "load_average_1min_max": round(max(burst_load or [os.getloadavg()[0]]), 1),
        }
        with engine.connect() as connection:
            runs = connection.execute(
                select(SyncRun.run_id, SyncRun.durations, SyncRun.counts, SyncRun.started_at).where(
                    SyncRun.kind == "grade_push"
                )
            ).all()
        burst_runs = [
            run
            for run in runs
            if run.started_at.replace(tzinfo=UTC).timestamp() >= unpaused_wall - 5
            or (run.counts or {}).get("grade_push", {}).get("scores_pushed", 0) >= 1000
        ]

        # Runs overlap (max_active_runs > 1): the trigger announces a backlog in probes of 500 entries, so
        # several runs start; one takes the lease and pushes everything, the others wait for it and find
        # nothing. Summing their durations would count the waits: report the push work (each run's
        # duration minus its lease wait) and the working runs apart.
        def push_counts(run) -> dict:
            return (run.counts or {}).get("grade_push", {})

        def work_seconds(run) -> float:
            return max(0.0, (run.durations or {}).get("push", 0) - push_counts(run).get("lease_wait_ms", 0) / 1000)

        working = [run for run in burst_runs if push_counts(run).get("changes_read", 0)]
        results["burst"]["push_work_seconds"] = round(sum(work_seconds(run) for run in burst_runs), 1)
        results["burst"]["runs"] = len(burst_runs)
        results["burst"]["runs_that_pushed"] = len(working)
        results["burst"]["first_run_started_seconds_after_unpause"] = (
            round(min(run.started_at.replace(tzinfo=UTC).timestamp() for run in burst_runs) - unpaused_wall, 1)
            if burst_runs
            else None
        )
        results["burst"]["put_requests"] = sum(push_counts(run).get("put_requests", 0) for run in burst_runs)
        results["grade_push_runs_total"] = len(runs)
        log(f"burst: {results['burst']}")
        results["refusal_emails"] = len(smtp.mailbox.messages)
        _stop_children()  # Airflow first, so no task or watcher is left polling the sandboxes as they stop

    print(json.dumps(results, indent=2))
    if args.keep:
        log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
