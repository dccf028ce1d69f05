"""The documented command: `python -m sandbox.powerschool --dataset ...` prints how to connect."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


def run(*arguments, **kwargs):
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox.powerschool", *arguments],
        cwd=REPOSITORY_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_start_prints_url_credentials_and_ca_then_serves():
    process = run("--dataset", "tiny", "--port", "0", "--throttle-ms", "0", "--max-page-size", "student=150")
    try:
        banner = {}
        for line in process.stdout:
            match = re.match(r"\s+(URL|client id|client secret|CA bundle|admin token)\s+(\S+)", line)
            if match:
                banner[match.group(1)] = match.group(2)
            if "Ctrl-C" in line:
                break
        assert set(banner) == {"URL", "client id", "client secret", "CA bundle", "admin token"}
        assert banner["URL"].startswith("https://127.0.0.1:")
        client = httpx.Client(base_url=banner["URL"], verify=ssl.create_default_context(cafile=banner["CA bundle"]))
        token = client.post(
            "/oauth/access_token",
            auth=(banner["client id"], banner["client secret"]),
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        metadata = client.get("/ws/v1/metadata", headers={"Authorization": f"Bearer {token}"}).json()["metadata"]
        assert metadata["student_max_page_size"] == 150
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_bad_dataset_and_options_exit_2_with_a_message():
    process = run("--dataset", "nowhere.json", "--port", "0")
    _, error = process.communicate(timeout=30)
    assert process.returncode == 2 and "neither a size" in error
    process = run("--dataset", "tiny", "--port", "0", "--max-page-size", "student=lots")
    _, error = process.communicate(timeout=30)
    assert process.returncode == 2 and "--max-page-size" in error
    process = run("--dataset", "tiny", "--port", "0", "--options", '{"error_rate": 7}')
    _, error = process.communicate(timeout=30)
    assert process.returncode == 2 and "error_rate" in error


def test_generate_reports_rows_and_timing(tmp_path):
    process = run("generate", "--size", "tiny", "--seed", "3", "--out", str(tmp_path / "t.sqlite"))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert '"students": 60' in output and '"seconds"' in output and '"peak_rss_mb"' in output
    assert '"overlapping_ids"' in output  # irregularities on by default, counted


def test_extra_hostname_goes_into_the_certificate():
    import socket

    process = run("--dataset", "tiny", "--port", "0", "--hostname", "sandbox-powerschool.test")
    try:
        banner = {}
        for line in process.stdout:
            match = re.match(r"\s+(URL|CA bundle)\s+(\S+)", line)
            if match:
                banner[match.group(1)] = match.group(2)
            if "Ctrl-C" in line:
                break
        port = int(banner["URL"].rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=banner["CA bundle"])
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="sandbox-powerschool.test") as connection,
        ):
            assert connection.version()
        with socket.create_connection(("127.0.0.1", port)) as raw, pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="elsewhere.test")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def _gone(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.startswith("State:") and "Z" in line for line in status)
    except FileNotFoundError:
        return True


def test_the_simulator_stops_when_the_test_process_dies_hard():
    import time

    script = (
        "from sandbox.powerschool.testing import running_powerschool\n"
        "import time\n"
        "context = running_powerschool('tiny')\n"
        "sandbox = context.__enter__()\n"
        "print(sandbox.process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPOSITORY_ROOT, env=environment, stdout=subprocess.PIPE, text=True
    )
    server_pid = int(parent.stdout.readline())
    assert not _gone(server_pid)
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not _gone(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(server_pid)
