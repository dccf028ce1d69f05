"""`make demo` prints only paths and addresses that are there after it exits.

Runs `make demo` as a newcomer does (its own state folder, so the checkout's var/demo is
left alone), then checks its output: every file path it printed exists now; every
network address it printed is one of the sandboxes', on a line saying so, printed while
they ran; the closing "Where to look" names the staging database, the Data Docs and what
Learning holds.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

PATH = re.compile(r"(?<![\w.:/])(/[\w.@%+=-]+(?:/[\w.@%+=-]+)+/?)")
URL = re.compile(r"\b(?:https?://|localhost:|127\.0\.0\.1:)\S+")
SANDBOX_LINES = ("  PowerSchool SIS simulator:", "  Reference Learning:", "  SMTP catcher:")


def test_make_demo_prints_only_what_exists_after_it_exits(tmp_path: Path) -> None:
    env = {**os.environ, "SIS_LEARNING_DEMO_DIR": str(tmp_path / "demo")}
    result = subprocess.run(["make", "demo"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout
    assert result.returncode == 0, output[-3000:] + result.stderr[-3000:]
    printed = [line for line in output.splitlines() if not re.match(r"^\d{4}-\d\d-\d\dT", line)]  # not log lines

    paths = {match.group(1).rstrip("/.") for line in printed for match in PATH.finditer(line) if not URL.search(line)}
    assert paths, output
    assert [path for path in sorted(paths) if not Path(path).exists()] == [], output

    urls = [line for line in printed if URL.search(line)]
    assert urls and all(line.startswith(SANDBOX_LINES) for line in urls), urls
    assert "(these addresses answer only while the demo runs)" in output

    where = output.split("=== Where to look")[1]
    assert str(tmp_path / "demo" / "staging.sqlite") in where
    assert str(tmp_path / "demo" / "learning.sqlite") in where
    assert re.search(r"/var/validation/demo/[^/\s]+/data_docs/index\.html", where), where
