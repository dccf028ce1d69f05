"""`make soak`: consecutive imports of the demo district under random faults, each one checked.

    make soak                                        # 20 runs, seed 1 (SOAK_RUNS, SOAK_SEED)
    .venv/bin/python bench/soak.py --runs 20 --seed 1 --dataset demo [--max-minutes 14]

Loopback only, bounded (stops starting runs after ``--max-minutes``). Everything is real:
the PowerSchool simulator and the reference Learning server over HTTPS in their own
processes, an SMTP catcher, a staging SQLite file, and every import is one Airflow DAG run
(``dag.test()``) of ``sis_import__demo`` in its own worker process
(scripts/run_import_dag.py) with the district's Airflow retries on (2 retries, as in
production; only the first delay is 2 s instead of 30 s so the soak stays bounded).

Faults, drawn per run from the seed (docs/reliability.md has the figures):
- SIS: 20% of API requests answered 500/502/503 (every run); throttling (429 with
  Retry-After); every access token expired at a random moment mid-run; connection resets;
  bodies cut off half-way; the SIS changes between runs (a rename, a new student, an
  enrollment added or dropped, a student leaving);
- Learning: answering 500 after applying a batch; its process SIGKILLed mid-load and
  started again on the same port and database;
- the worker process running the tasks SIGKILLed mid-load (the next run must mark that
  run abandoned and converge).

After every successful run, Learning must equal the rules applied to the SIS state of
that moment (tests/e2e/oracle.py: what a clean import produces), field by field, with no
key twice; users that left the import must be there, disabled. At the end every log file
(worker output, Airflow logs), the staging database, the emails and the validation
results (Data Docs) are searched for the secrets: the PowerSchool client secret and
every access token it issued, the Learning domain token and the default password.
The report goes to var/soak/<stamp>/soak.json and is printed as the table of
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT / "plugins", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

DISTRICT = "demo"
WORK_ROOT = REPO_ROOT / "var" / "soak"
VALIDATION_ROOT = REPO_ROOT / "var" / "validation" / DISTRICT
KEYS = {
    "organizations": ("organization_id",),
    "users": ("user_type", "external_id"),
    "user_levels": ("external_id",),
    "classes": ("class_id",),
    "rosters": ("class_id", "user_type", "user_id"),
    "parent_links": ("parent_id", "child_id"),
}
FAULT_KINDS = (
    "sis_5xx",
    "sis_throttle_429",
    "sis_token_expired",
    "sis_connection_reset",
    "sis_truncated_body",
    "learning_500_after_apply",
    "learning_killed",
    "worker_killed",
)
RUN_TIMEOUT_SECONDS = 300


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Learning:
    """The reference Learning server on a fixed port, which the soak can kill and start again."""

    def __init__(self, token: str, database_url: str) -> None:
        self.token, self.database_url, self.port = token, database_url, free_port()
        self._stack: ExitStack | None = None
        self.server: Any = None
        self.start()

    def start(self) -> None:
        from sandbox.learning.testing import LearningOptions, running_learning

        self._stack = ExitStack()
        self.server = self._stack.enter_context(
            running_learning(
                domains={DISTRICT: self.token},
                database_url=self.database_url,
                options=LearningOptions(port=self.port, startup_timeout=60),
            )
        )

    def kill_and_restart(self, down_seconds: float) -> None:
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(timeout=30)
        self.close()
        time.sleep(down_seconds)
        for _ in range(20):  # the port may linger a moment after the kill
            try:
                self.start()
                return
            except Exception:  # the port may still be held a moment: try again
                time.sleep(0.5)
        raise RuntimeError("the Learning sandbox did not come back")

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


# ---- the SIS changing between runs ----------------------------------------------------------


def change_sis(ps: Any, rng: random.Random, run: int) -> list[str]:
    """A few everyday changes through the simulator's admin API (never enough to trip the guard)."""
    with ps.store() as store:
        students = [row for row in store.rows("students", "enroll_status = 0")]
        sections = list(store.rows("sections"))
        enrollments = list(store.rows("cc", "sectionid > 0"))
        schools = list(store.rows("schools"))
    by_id = {row["id"]: row for row in students}
    done = []
    student = rng.choice(students)
    ps.rename("student", student["dcid"], last_name=f"{student['last_name']}-{run}")
    done.append("rename")
    school = rng.choice(schools)
    ps.add_student(
        school["dcid"],
        "Soak",
        f"Student{run}",
        grade_level=rng.choice([3, 5, 9]),
        student_web_id=f"soak{run}_{rng.randrange(10**6)}",
    )
    done.append("new_student")
    student = rng.choice(students)
    same_school = [row for row in sections if row["schoolid"] == student["schoolid"]]
    if same_school:
        section = rng.choice(same_school)
        ps.enroll_student(student["dcid"], section["dcid"])
        done.append("enrollment_added")
    enrollment = rng.choice(enrollments)
    section = next((row for row in sections if row["id"] == enrollment["sectionid"]), None)
    if section is not None and enrollment["studentid"] in by_id:
        ps.drop_enrollment(by_id[enrollment["studentid"]]["dcid"], section["dcid"])
        done.append("enrollment_dropped")
    if run % 3 == 0:
        leaver = rng.choice(students)
        ps.set_enroll_status(leaver["dcid"], 2)
        done.append("student_left")
    return done


# ---- one run -----------------------------------------------------------------------------------


def plan_faults(run: int, runs: int, rng: random.Random) -> dict[str, Any]:
    """Which faults this run gets. The process kills land on fixed runs so every kind is covered."""
    kills_worker = {6, 14} if runs >= 15 else {max(2, runs // 2)}
    kills_learning = {3, 9, 12, 18} if runs >= 19 else {max(1, runs // 3)}
    return {
        "error_rate": 0.2,
        "throttle_seconds": rng.choice([0, 0, 3]),  # a throttle window at the start of the run
        "reset_rate": rng.choice([0.0, 0.02]),
        "truncate_rate": rng.choice([0.0, 0.02]),
        "expire_token_after": rng.uniform(0.5, 6.0) if rng.random() < 0.6 else None,
        "learning_500_after_apply": rng.choice([0, 1, 2]),
        "kill_learning": run in kills_learning,
        "kill_worker": run in kills_worker,
        "kill_delay": rng.uniform(0.0, 0.3),
        # Down 1 s: the HTTP client's own retries bridge it; 12 s: they run out and Airflow retries the task.
        "learning_down_seconds": rng.choice([1.0, 12.0]),
    }


def load_is_running(staging_path: Path, after_id: int) -> bool:
    try:
        with sqlite3.connect(f"file:{staging_path}?mode=ro", uri=True, timeout=1) as connection:
            row = connection.execute(
                "SELECT 1 FROM sync_run_attempts WHERE id > ? AND stage = 'load' AND status = 'running' LIMIT 1",
                (after_id,),
            ).fetchone()
            return row is not None
    except sqlite3.Error:
        return False


def last_attempt_id(staging_path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{staging_path}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT COALESCE(MAX(id), 0) FROM sync_run_attempts").fetchone()[0]
    except sqlite3.Error:
        return 0


class Worker:
    """A worker process (scripts/run_import_dag.py --serve) that runs the DAG once per request.

    It keeps what it imported (Airflow, Great Expectations) from one run to the next, as a
    long-lived worker does; the soak SIGKILLs it mid-load on some runs and starts a new one.
    """

    def __init__(self, env: dict[str, str], stderr_path: Path) -> None:
        import queue

        self.lines: queue.Queue[str | None] = queue.Queue()
        self._stderr = stderr_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "scripts" / "run_import_dag.py"), DISTRICT, "--serve"],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self._until(lambda line: line.strip() == "READY", timeout=RUN_TIMEOUT_SECONDS, log=None)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _until(self, done, timeout: float, log) -> str | None:
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                return None
            if log is not None:
                log.write(line)
            if done(line):
                return line

    def run(self, log_path: Path) -> dict[str, Any] | None:
        """One DAG run; None when the process died (killed) or did not answer in time."""
        with log_path.open("w") as log:
            self.process.stdin.write("run\n")
            self.process.stdin.flush()
            line = self._until(lambda text: text.startswith("RESULT "), RUN_TIMEOUT_SECONDS, log)
        return json.loads(line[len("RESULT ") :]) if line else None

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.alive():
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._stderr.close()


def run_import(
    worker: Worker,
    log_path: Path,
    plan: dict[str, Any],
    ps: Any,
    learning: Learning,
    staging_path: Path,
    events: Counter,
) -> dict[str, Any]:
    """One DAG run in the worker process, with the process-level faults of the plan."""
    mark = last_attempt_id(staging_path)
    started = time.monotonic()
    stop = threading.Event()

    def watch() -> None:
        expired = throttled = False
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if plan["throttle_seconds"] and not throttled and elapsed >= plan["throttle_seconds"]:
                ps.configure(throttle_ms=0)  # the throttle window is over
                throttled = True
            if plan["expire_token_after"] is not None and not expired and elapsed >= plan["expire_token_after"]:
                ps.expire_tokens()
                events["sis_token_expired"] += 1
                expired = True
            if (plan["kill_learning"] or plan["kill_worker"]) and load_is_running(staging_path, mark):
                time.sleep(plan["kill_delay"])
                if stop.is_set():
                    return
                if plan["kill_worker"]:
                    worker.process.send_signal(signal.SIGKILL)
                    events["worker_killed"] += 1
                else:
                    learning.kill_and_restart(down_seconds=plan["learning_down_seconds"])
                    events["learning_killed"] += 1
                plan["kill_learning"] = plan["kill_worker"] = False
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = worker.run(log_path)
    stop.set()
    watcher.join(timeout=60)
    seconds = time.monotonic() - started
    if result is None:
        killed = not worker.alive() and worker.process.returncode == -signal.SIGKILL
        return {"state": "killed" if killed else "no_answer", "seconds": seconds}
    return {**result, "seconds": seconds}


# ---- checks ------------------------------------------------------------------------------------


def learning_state(server: Any) -> dict[str, Any]:
    return {
        "organizations": {key: row["name"] for key, row in server.organizations(DISTRICT).items()},
        "users": server.users(DISTRICT),
        "user_levels": server.user_levels(DISTRICT),
        "classes": server.classes(DISTRICT),
        "rosters": server.rosters(DISTRICT),
        "parent_links": server.parent_links(DISTRICT),
    }


def check_converged(server: Any, ps: Any, staging_url: str, run_id: str) -> dict[str, Any]:
    """Learning against the rules applied to the SIS state now: differences, rows lost, rows duplicated."""
    from tests.e2e.compare import differences, failed_users
    from tests.e2e.oracle import expected_state

    duplicated = 0
    for entity, fields in KEYS.items():
        keys = Counter(tuple(row[name] for name in fields) for row in server.read_all(DISTRICT, entity))
        duplicated += sum(count - 1 for count in keys.values() if count > 1)
    try:
        failed = failed_users(staging_url, run_id, ps.database_path)
    except AssertionError as error:
        return {"converged": False, "duplicated": duplicated, "lost": None, "problems": [str(error)[:2000]]}
    oracle = expected_state(ps.database_path, failed_users=failed)
    state = learning_state(server)
    left = {key for key in state["users"] if key not in oracle.users}
    problems = differences(oracle, state, disabled=left)
    lost = sum(
        1 for problem in problems if problem.endswith("expected in Learning, missing") or "but it is gone" in problem
    )
    return {
        "converged": not problems and not duplicated,
        "duplicated": duplicated,
        "lost": lost,
        "problems": problems[:20],
        "users": len(oracle.users),
        "left": len(left),
    }


def search_secrets(secret_values: dict[str, str], roots: list[Path], staging_path: Path) -> dict[str, Any]:
    """Every file under the roots and every value of the staging database, searched for each secret."""
    found: list[str] = []
    scanned = 0
    needles = {name: value.encode() for name, value in secret_values.items() if value and len(value) >= 8}
    for root in roots:
        if not root.exists():
            continue
        for path in [root] if root.is_file() else root.rglob("*"):
            if not path.is_file():
                continue
            scanned += 1
            data = path.read_bytes()
            found += [f"{name} in {path}" for name, needle in needles.items() if needle in data]
    with sqlite3.connect(f"file:{staging_path}?mode=ro", uri=True) as connection:
        for line in connection.iterdump():
            for name, needle in needles.items():
                if needle.decode() in line:  # text values as the database holds them
                    found.append(f"{name} in the staging database: {line[:80]}...")
    return {"files_scanned": scanned, "found": found}


# ---- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="make soak: imports of the demo district under random faults")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("SOAK_RUNS", 20)))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", 1)))
    parser.add_argument("--dataset", default=os.environ.get("SOAK_DATASET", "demo"))
    parser.add_argument("--max-minutes", type=float, default=float(os.environ.get("SOAK_MAX_MINUTES", 14)))
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work = WORK_ROOT / stamp
    districts = work / "districts"
    districts.mkdir(parents=True)
    demo = (REPO_ROOT / "include" / "districts" / f"{DISTRICT}.yaml").read_text()
    # Production's retries (2, doubling delay); the first delay shortened so 20 runs stay bounded.
    (districts / f"{DISTRICT}.yaml").write_text(
        demo + "task_retries:\n  retries: 2\n  retry_delay_seconds: 2\n  max_retry_delay_seconds: 10\n"
    )
    staging_path = work / "staging.sqlite"
    staging_url = f"sqlite:///{staging_path}"
    learning_token = secrets.token_urlsafe(24)
    default_password = secrets.token_urlsafe(12)
    deadline = time.monotonic() + arguments.max_minutes * 60
    from sandbox.powerschool.testing import running_powerschool
    from sandbox.smtp import running_smtp
    from scripts.demo_environment import connection_env

    runs: list[dict[str, Any]] = []
    events: Counter = Counter()
    sis_changes: Counter = Counter()
    started = time.monotonic()
    with ExitStack() as stack:
        ps = stack.enter_context(
            running_powerschool(arguments.dataset, seed=1, options={"fault_seed": arguments.seed, "error_rate": 0.2})
        )
        smtp = stack.enter_context(running_smtp(mailbox_dir=work / "mailbox"))
        learning = Learning(learning_token, f"sqlite:///{work / 'learning.sqlite'}")
        stack.callback(learning.close)
        env = {
            **os.environ,
            **connection_env(DISTRICT, ps, learning.server, learning_token, smtp),
            f"{DISTRICT.upper()}_DEFAULT_PASSWORD": default_password,
            "SIS_LEARNING_STAGING_URL": staging_url,
            "SIS_LEARNING_DISTRICTS_DIR": str(districts),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        }
        worker: Worker | None = None
        for run in range(1, arguments.runs + 1):
            if worker is None or not worker.alive():
                if worker is not None:
                    worker.close()
                worker = Worker(env, work / "worker-stderr.log")
                stack.callback(worker.close)
            if time.monotonic() > deadline:
                print(f"soak: stopped before run {run}: the {arguments.max_minutes} minute bound", flush=True)
                break
            changes = change_sis(ps, rng, run) if run > 1 else []
            sis_changes.update(changes)
            plan = plan_faults(run, arguments.runs, rng)
            ps.configure(
                error_rate=plan["error_rate"],
                throttle_ms=50 if plan["throttle_seconds"] else 0,
                reset_rate=plan["reset_rate"],
                truncate_rate=plan["truncate_rate"],
            )
            if plan["learning_500_after_apply"]:
                learning.server.inject_faults(
                    DISTRICT, count=plan["learning_500_after_apply"], status=500, after_apply=True
                )
                events["learning_500_after_apply"] += plan["learning_500_after_apply"]
            ps.reset_request_log()
            planned = {key: plan[key] for key in ("kill_learning", "kill_worker")}
            outcome = run_import(worker, work / f"run-{run:02d}.log", plan, ps, learning, staging_path, events)
            learning.server.inject_faults(DISTRICT, count=0)  # an unfired fault does not leak into the next run
            faults = Counter(entry.get("fault") for entry in ps.request_log() if entry.get("fault"))
            statuses = Counter(entry.get("status") for entry in ps.request_log())
            events["sis_5xx"] += sum(n for status, n in statuses.items() if status in (500, 502, 503))
            events["sis_throttle_429"] += statuses.get(429, 0)
            events["sis_connection_reset"] += faults.get("reset", 0)
            events["sis_truncated_body"] += faults.get("truncated", 0)
            record = {
                "run": run,
                "state": outcome.get("state"),
                "run_id": outcome.get("run_id"),
                "seconds": round(outcome["seconds"], 1),
                "sis_changes": changes,
                "planned_kills": planned,
                "sis_faults": dict(faults),
                "sis_statuses": {str(k): v for k, v in statuses.items()},
                "retried_tasks": {
                    task: tries for task, (state, tries) in (outcome.get("tasks") or {}).items() if tries and tries > 1
                },
            }
            if outcome.get("state") == "success":
                record.update(check_converged(learning.server, ps, staging_url, outcome["run_id"]))
            runs.append(record)
            print(
                f"soak run {run:2d}: {record['state']:8s} {record['seconds']:6.1f}s "
                f"converged={record.get('converged')} retried={record['retried_tasks']} "
                f"faults={dict(faults)} kills={planned}",
                flush=True,
            )
        emails = list(smtp.mailbox.messages)
        secret_values = {
            "powerschool_client_secret": ps.client_secret,
            "learning_token": learning_token,
            "default_password": default_password,
        }
        for index, token in enumerate(ps.issued_tokens()):
            secret_values[f"powerschool_access_token_{index}"] = token
        airflow_logs = Path(os.environ.get("AIRFLOW_HOME", REPO_ROOT / ".airflow")) / "logs"
        roots = [work / "mailbox", *work.glob("*.log"), airflow_logs, VALIDATION_ROOT]
        secrets_report = search_secrets(secret_values, roots, staging_path)

    summary = summarise(
        runs, events, sis_changes, emails, secrets_report, time.monotonic() - started, arguments, len(secret_values)
    )
    (work / "soak.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2, default=str))
    print(format_summary(summary))
    print(f"report: {work / 'soak.json'}")
    return 0 if summary["passed"] else 1


def summarise(runs, events, sis_changes, emails, secrets_report, seconds, arguments, secrets_searched) -> dict:
    successes = [record for record in runs if record["state"] == "success"]
    converged = [record for record in successes if record.get("converged")]
    # Runs needed to converge: from a run that did not end successful to the next converged one.
    needed, streak = [1], 0
    for record in runs:
        streak += 1
        if record["state"] == "success" and record.get("converged"):
            needed.append(streak)
            streak = 0
    return {
        "runs": len(runs),
        "dataset": arguments.dataset,
        "seed": arguments.seed,
        "minutes": round(seconds / 60, 1),
        "successful_runs": len(successes),
        "runs_converged": len(converged),
        "runs_not_successful": [{"run": r["run"], "state": r["state"]} for r in runs if r["state"] != "success"],
        "max_runs_to_converge": max(needed),
        "faults": {kind: events.get(kind, 0) for kind in FAULT_KINDS},
        "sis_changes": dict(sis_changes),
        "runs_with_task_retries": sum(1 for record in runs if record["retried_tasks"]),
        "rows_lost": sum(record.get("lost") or 0 for record in successes),
        "rows_duplicated": sum(record.get("duplicated") or 0 for record in successes),
        "emails": len(emails),
        "secrets_searched": secrets_searched,
        "files_scanned": secrets_report["files_scanned"],
        "secrets_found": len(secrets_report["found"]),
        "secret_findings": secrets_report["found"][:20],
        "passed": (
            len(runs) >= min(20, arguments.runs)
            and len(converged) == len(successes)
            and bool(successes)
            and not secrets_report["found"]
            and runs[-1]["state"] == "success"
        ),
    }


def format_summary(summary: dict) -> str:
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| runs (dataset {summary['dataset']}, seed {summary['seed']}) | "
        f"{summary['runs']} in {summary['minutes']} min |",
        f"| runs that ended successful | {summary['successful_runs']} |",
        f"| successful runs converged (Learning = clean import, field by field) | {summary['runs_converged']} |",
        "| runs not successful | "
        + (", ".join(f"{r['run']} ({r['state']})" for r in summary["runs_not_successful"]) or "none")
        + " |",
        f"| runs needed to converge, at most | {summary['max_runs_to_converge']} |",
        f"| runs that needed an Airflow task retry | {summary['runs_with_task_retries']} |",
        *(f"| fault: {kind} | {count} |" for kind, count in summary["faults"].items()),
        f"| SIS changes between runs | {', '.join(f'{k} {v}' for k, v in summary['sis_changes'].items())} |",
        f"| rows lost | {summary['rows_lost']} |",
        f"| rows duplicated | {summary['rows_duplicated']} |",
        f"| failure emails | {summary['emails']} |",
        f"| secrets searched / files scanned | {summary['secrets_searched']} / {summary['files_scanned']} |",
        f"| secrets found | {summary['secrets_found']} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
