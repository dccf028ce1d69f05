"""How busy the machine was while a stage ran: sampled from /proc by a thread, not guessed from the ends.

``StageSampler`` runs in the stage process (``bench/stages.py``) around the stage's own
work, and reads:

- ``/proc/loadavg``: the 1-minute load average (min, mean, max over the stage);
- ``/proc/stat``: the machine's busy CPU time (user, nice, system; steal apart);
- the benchmark's own processes: this process and every descendant (the stage process,
  the PowerSchool simulator, the Learning server), user + system time, children reaped
  included (``/proc/<pid>/stat`` fields 14-17); the simulator's and the Learning server's
  apart too, found by their command line (``simulator_cpu_seconds``,
  ``learning_server_cpu_seconds``). The reference Learning server is one Python process
  that applies a domain's batches one at a time: its CPU time is near enough a lower bound
  on a full load's wall time, whatever the pipeline does;
- the PostgreSQL server's work for the stage: the backends connected to the stage's
  database (their process title names it), their CPU time read from ``/proc`` (a backend
  is a process of its own). This is the server's own time; it is only readable when the
  server runs on this machine, as the benchmark's does (else ``None``);
- the server's background writers (checkpointer, background writer, WAL writer): they
  write out what the backends wrote, so a checkpoint during a stage is mostly the
  benchmark's own earlier writes (a carry forward of a million rows is 250 MB of WAL).
  Counted apart (``postgres_background_cpu_seconds``), not as other work.

From these: the CPU time of **other** work (the machine's busy time less the benchmark's,
its database backends' and the server's background writers'), in cores on average. A
stage is **quiet** when other work used at most ``QUIET_OTHER_CORES`` cores on average and
the hypervisor took at most as much (steal); a run is quiet only when every stage was.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Other work may use this much CPU (cores, on average over a stage) for the stage to count as quiet.
QUIET_OTHER_CORES = 0.25
SAMPLE_SECONDS = 0.5
# The ends of the titles of a PostgreSQL server's processes that write out what backends wrote.
BACKGROUND_WRITERS = (": checkpointer", ": background writer", ": walwriter")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_ticks(pid: int | str, children: bool = True) -> tuple[int, int] | None:
    """(parent pid, CPU ticks: user + system, plus reaped children's when ``children``)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17), numbered from 1.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return int(fields[1]), ticks


def machine_ticks() -> dict[str, int] | None:
    """The machine's CPU time so far, by kind (the ``cpu`` line of /proc/stat)."""
    text = _read("/proc/stat")
    if not text:
        return None
    values = [int(value) for value in text.splitlines()[0].split()[1:]]
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return dict(zip(names, values + [0] * (len(names) - len(values)), strict=False))


def load_average() -> float | None:
    text = _read("/proc/loadavg")
    return float(text.split()[0]) if text else None


def _all_pids() -> list[str]:
    try:
        return [path.name for path in Path("/proc").iterdir() if path.name.isdigit()]
    except OSError:
        return []


# Which benchmark process is which, by its command line (``python -m sandbox.learning ...``).
SERVER_ROLES = {"learning_server": "sandbox.learning", "simulator": "sandbox.powerschool"}


def process_role(pid: int) -> str | None:
    """``learning_server``, ``simulator`` or None (a stage process, the benchmark itself)."""
    command = (_read(f"/proc/{pid}/cmdline") or "").split("\0")
    for role, module in SERVER_ROLES.items():
        if module in command:
            return role
    return None


def descendant_ticks(root: int) -> dict[int, int]:
    """pid -> CPU ticks (own and reaped children's) of ``root`` and every live descendant."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for pid in _all_pids():
        read = process_ticks(pid)
        if read is not None:
            parents[int(pid)], ticks[int(pid)] = read
    wanted = {root}
    changed = True
    while changed:  # a process tree is shallow: a few passes
        changed = False
        for pid, parent in parents.items():
            if parent in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return {pid: ticks[pid] for pid in wanted if pid in ticks}


class PostgresBackends:
    """The PostgreSQL processes working for one database, found by their process title.

    A backend's title is ``postgres: <cluster>: <user> <database> <client> <state>``;
    processes already looked at are remembered, so a sample reads only new processes'
    titles and the backends' own ``stat``.
    """

    def __init__(self, database: str) -> None:
        self.marker = f" {database} "
        self._looked_at: set[str] = set()
        self._backends: set[str] = set()
        self._background: set[str] = set()

    def ticks(self) -> dict[int, int]:
        """pid -> CPU ticks (user + system) of every live backend of the database.

        A parallel query's workers are titled ``parallel worker for PID <leader>``: they
        count when their leader is one of the database's backends.
        """
        workers: dict[str, str] = {}
        for pid in _all_pids():
            if pid in self._looked_at:
                continue
            command = _read(f"/proc/{pid}/cmdline")
            title = (command or "").replace("\0", " ") + " "
            if title.startswith("postgres:") and "parallel worker for PID " in title:
                workers[pid] = title.rsplit("parallel worker for PID ", 1)[1].split()[0]
                continue  # looked at again next time: a worker is short-lived and its leader may be new
            self._looked_at.add(pid)
            if title.startswith("postgres:") and self.marker in title:
                self._backends.add(pid)
            elif title.startswith("postgres:") and title.rstrip().endswith(BACKGROUND_WRITERS):
                self._background.add(pid)
        for pid, leader in workers.items():
            if leader in self._backends:
                self._backends.add(pid)
                self._looked_at.add(pid)
        return self._read(self._backends)

    def background_ticks(self) -> dict[int, int]:
        """pid -> CPU ticks of the server's background writers (checkpointer, background writer,
        WAL writer; found by :meth:`ticks`, which reads the process titles)."""
        return self._read(self._background)

    def _read(self, pids: set[str]) -> dict[int, int]:
        found: dict[int, int] = {}
        for pid in list(pids):
            read = process_ticks(pid, children=False)
            if read is None:
                pids.discard(pid)  # ended (its pid may come back as another process)
                self._looked_at.discard(pid)
            else:
                found[int(pid)] = read[1]
        return found


class StageSampler:
    """Samples the machine while one stage runs (a context manager; ``result()`` after it ends).

    ``root``: the benchmark's top process (``bench/run.py``, the stage process's parent):
    its descendants (this stage process, the PowerSchool simulator, the Learning server)
    are the benchmark's own work. The process tree is read at the start and the end
    (every process in it lives through the stage); the load average and the PostgreSQL
    backends every ``interval`` seconds (a backend may end mid-stage).
    """

    def __init__(self, root: int, postgres_database: str | None = None, interval: float = SAMPLE_SECONDS) -> None:
        self.root = root
        self.interval = interval
        self.backends = PostgresBackends(postgres_database) if postgres_database else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stage-sampler", daemon=True)
        self._loads: list[float] = []
        self._backend_start: dict[int, int] = {}
        self._backend_last: dict[int, int] = {}
        self._background_start: dict[int, int] = {}
        self._background_end: dict[int, int] = {}
        self._readable = _read("/proc/stat") is not None

    def __enter__(self) -> StageSampler:
        self._machine_start = machine_ticks()
        self._tree_start_by_pid = descendant_ticks(self.root) if self._readable else {}
        self._roles = {pid: process_role(pid) for pid in self._tree_start_by_pid}
        if self.backends is not None:
            # Backends there before the stage (the stage process's setup connections) count from now.
            self._backend_start = self.backends.ticks()
            self._backend_last = dict(self._backend_start)
            self._background_start = self.backends.background_ticks()
        self._started = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._seconds = time.perf_counter() - self._started
        self._machine_end = machine_ticks()
        self._tree_end_by_pid = descendant_ticks(self.root) if self._readable else {}
        if self.backends is not None:
            self._background_end = self.backends.background_ticks()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        load = load_average()
        if load is not None:
            self._loads.append(load)
        if self.backends is not None:
            # A backend not there at the start was started during the stage: all its time is
            # the stage's. One that ends between two samples loses at most a sample's worth
            # (the stage's pooled connections live as long as it does).
            self._backend_last.update(self.backends.ticks())

    def result(self) -> dict[str, Any]:
        seconds = max(self._seconds, 1e-9)
        out: dict[str, Any] = {
            "seconds": round(self._seconds, 2),
            "samples": len(self._loads),
            "load_average_min": min(self._loads, default=None),
            "load_average_mean": round(sum(self._loads) / len(self._loads), 2) if self._loads else None,
            "load_average_max": max(self._loads, default=None),
        }
        if not (self._readable and self._machine_start and self._machine_end):
            out["quiet"] = None
            return out
        delta = {name: self._machine_end[name] - self._machine_start[name] for name in self._machine_end}
        busy = (delta["user"] + delta["nice"] + delta["system"]) / CLOCK_TICKS
        steal = delta["steal"] / CLOCK_TICKS
        bench = (sum(self._tree_end_by_pid.values()) - sum(self._tree_start_by_pid.values())) / CLOCK_TICKS
        server = background = None
        if self.backends is not None:
            server = sum(ticks - self._backend_start.get(pid, 0) for pid, ticks in self._backend_last.items())
            server /= CLOCK_TICKS
            # The background writers live as long as the server: read at the start and the end.
            background = sum(
                ticks - self._background_start.get(pid, ticks) for pid, ticks in self._background_end.items()
            )
            background /= CLOCK_TICKS
        others = max(0.0, busy - bench - (server or 0.0) - (background or 0.0))
        by_role = dict.fromkeys(SERVER_ROLES, 0.0)
        for pid, role in self._roles.items():
            if role is not None and pid in self._tree_end_by_pid:
                by_role[role] += (self._tree_end_by_pid[pid] - self._tree_start_by_pid[pid]) / CLOCK_TICKS
        out.update(
            {
                "machine_busy_cores": round(busy / seconds, 2),
                "bench_processes_cpu_seconds": round(bench, 2),
                **{f"{role}_cpu_seconds": round(seconds_used, 2) for role, seconds_used in by_role.items()},
                "postgres_server_cpu_seconds": None if server is None else round(server, 2),
                "postgres_backends": len(self._backend_last) if self.backends is not None else None,
                "postgres_background_cpu_seconds": None if background is None else round(background, 2),
                "other_work_cores": round(others / seconds, 2),
                "steal_cores": round(steal / seconds, 2),
                "quiet": others / seconds <= QUIET_OTHER_CORES and steal / seconds <= QUIET_OTHER_CORES,
            }
        )
        return out
