"""Measure how many 100-row student pages per second the simulator serves on this machine.

    python -m sandbox.powerschool.benchmark [--dataset S] [--seconds 5] [--clients 1,4]

Starts the simulator in its own process (as tests do), then for each client count runs a
bounded loop of ``GET /ws/v1/district/student?pagesize=100&page=N&expansions=school_enrollment,contact_info``
(the import's call; pages cycle over the whole district; keep-alive HTTPS, certificate
verified) and prints requests per second and latency percentiles as JSON. The numbers are
the issue's "requests per second for a 100-row student page" figure. Wall-clock rates
depend on how busy the machine is (the load average is printed);
``requests_per_server_cpu_second`` (server CPU time per request) does not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import httpx

from sandbox.powerschool.testing import running_powerschool


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_clients(sandbox, token: str, clients: int, seconds: float, pages: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client_loop(offset: int) -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        mine: list[float] = []
        failed = 0
        with httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context(), timeout=30) as client:
            page = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = client.get(
                    "/ws/v1/district/student",
                    params={"pagesize": 100, "page": page % pages + 1, "expansions": "school_enrollment,contact_info"},
                    headers=headers,
                )
                if response.status_code != 200 or len(response.json()["students"]["student"]) != 100:
                    failed += 1
                mine.append(time.perf_counter() - started)
                page += 1
        with lock:
            latencies.extend(mine)
            errors += failed

    server_cpu_before = _cpu_seconds(sandbox.process.pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(index * 7,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    server_cpu = _cpu_seconds(sandbox.process.pid) - server_cpu_before
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        # Independent of how busy the machine is: what one free core would serve.
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(1, len(latencies)), 2),
        "requests_per_server_cpu_second": round(len(latencies) / server_cpu, 1) if server_cpu else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="S")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,4", help="comma-separated client counts")
    arguments = parser.parse_args()
    with running_powerschool(arguments.dataset) as sandbox:
        with httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context()) as client:
            token = client.post(
                "/oauth/access_token",
                auth=(sandbox.client_id, sandbox.client_secret),
                data={"grant_type": "client_credentials"},
            ).json()["access_token"]
            total = client.get("/ws/v1/district/student/count", headers={"Authorization": f"Bearer {token}"}).json()[
                "resource"
            ]["count"]
        pages = total // 100
        results = [
            _run_clients(sandbox, token, int(count), arguments.seconds, pages) for count in arguments.clients.split(",")
        ]
    print(
        json.dumps(
            {
                "dataset": arguments.dataset,
                "active_students": total,
                "cpu_count": os.cpu_count(),
                "load_average": [round(value, 2) for value in os.getloadavg()],
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
