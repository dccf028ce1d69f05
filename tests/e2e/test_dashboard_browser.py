"""The Districts pages in a real browser: headless Chromium against `airflow standalone` from the repo.

Starts Airflow as `make airflow` does (scripts/airflow_standalone.py: sandboxes, metadata
database, pools, the DAGs, then `airflow standalone`) with its own AIRFLOW_HOME, port,
log-server ports, sandbox state and staging database. The staging database is filled
first with a history whose figures are known (tests/dashboard/staged_history.py); the
demo district's own scheduled run writes beside it while the test runs.

In Chromium (Debian's ``chromium``, driven by Playwright): log in with the password
Airflow generated, open "Districts" from the navigation (the plugin's page inside the
UI), check each figure of a district against a count made here in SQL on staging, open
a district page (charts, reasons, schools, the runs) and follow a reason to its rows,
and save a screenshot of each page under ``var/test-output/browser/``.

Without Chromium or Playwright the test skips and says why; ``.ci/run`` sets
``SIS_LEARNING_REQUIRE_BROWSER=1``, which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SIS_LEARNING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("SIS_LEARNING_REQUIRE_BROWSER") == "1"
SCREENSHOTS = REPO_ROOT / "var" / "test-output" / "browser"
START_SECONDS = 480  # migrate a fresh database, parse the DAGs, start four components (shared 2-core machine)
STOP_SECONDS = 90


def browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (requirements-dev.txt)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """`airflow standalone` from the repository, with a staging database holding a known history."""
    reason = browser_missing()
    if reason:
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason} (SIS_LEARNING_REQUIRE_BROWSER=1: the browser tests are required)")
        pytest.skip(reason)
    from sis_learning.staging.base import create_all, get_engine
    from tests.dashboard.staged_history import write_history

    root = tmp_path_factory.mktemp("standalone")
    staging_url = f"sqlite:///{root / 'staging.sqlite'}"
    write_history(create_all(get_engine(staging_url)))
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "SIS_LEARNING_")) and key not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(
        {
            "AIRFLOW_HOME": str(root / "airflow-home"),
            "AIRFLOW__API__PORT": str(port),
            # Other Airflows on this machine hold the default log-server ports.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "SIS_LEARNING_STAGING_URL": staging_url,
            "SIS_LEARNING_STANDALONE_DIR": str(root / "standalone"),
        }
    )
    output_path = root / "make-airflow.out"
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            ["make", "airflow"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and process.poll() is None and not healthy(base_url):
            time.sleep(2)
        assert healthy(base_url), f"the API server never became healthy:\n{output_path.read_text()[-4000:]}"
        password = json.loads((root / "airflow-home" / "simple_auth_manager_passwords.json.generated").read_text())[
            "admin"
        ]
        yield {"base_url": base_url, "password": password, "staging_url": staging_url, "root": root}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture(scope="module")
def browser(standalone):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, standalone, request):
    """A signed-in page (Airflow's own login form); a screenshot of where it ended when the test fails."""
    context = browser.new_context(viewport={"width": 1800, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(f"{standalone['base_url']}/auth/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", standalone["password"])
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/auth/login" not in url)
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-last.png"))
    context.close()


def staged_figures(staging_url: str, district_id: str) -> dict[str, int]:
    """The Districts row's figures, counted here in SQL on staging (not through the pages' queries)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(staging_url)
    with engine.connect() as connection:
        latest = connection.execute(
            text(
                "SELECT run_id, counts FROM sync_runs WHERE district_id = :d AND kind = 'import' "
                "ORDER BY started_at DESC LIMIT 1"
            ),
            {"d": district_id},
        ).one()
        figures = {
            entity: connection.execute(
                text("SELECT COUNT(*) FROM learning_snapshot WHERE district_id = :d AND entity = :e AND active"),
                {"d": district_id, "e": entity},
            ).scalar()
            for entity in ("users", "classes", "rosters", "parent_links")
        }
        for table, name in (("rejected_rows", "rejected"), ("validation_warnings", "warned")):
            figures[name] = connection.execute(
                text(f"SELECT COUNT(*) FROM {table} WHERE district_id = :d AND run_id = :r"),
                {"d": district_id, "r": latest.run_id},
            ).scalar()
    engine.dispose()
    counts = json.loads(latest.counts)
    for change in ("created", "updated", "deactivated", "removed"):
        figures[change] = sum(values.get(change, 0) for name, values in counts.items() if name.startswith("learning_"))
    return figures


def cell_number(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text) or 0)


def test_districts_and_a_district_page_in_chromium(page, standalone):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base_url = standalone["base_url"]

    # "Districts" is in Airflow's navigation; it shows the plugin's page inside the UI.
    page.goto(f"{base_url}/")
    page.get_by_text("Districts", exact=True).first.click()
    page.wait_for_url(re.compile(r"/plugin/districts"))
    frame = page.frame_locator("iframe[title=Districts]")
    table = frame.locator("table#districts")
    table.wait_for()
    frame.locator("tr[data-district=north]").wait_for()
    page.screenshot(path=str(SCREENSHOTS / "districts.png"))

    for district_id in ("north", "south"):
        row = frame.locator(f"tr[data-district={district_id}]")
        expected = staged_figures(standalone["staging_url"], district_id)
        shown = {name: cell_number(row.locator(f"td[data-field={name}]").inner_text()) for name in expected}
        assert shown == expected, (district_id, shown, expected)
    north = frame.locator("tr[data-district=north]")
    assert north.locator("td[data-field=status]").inner_text().startswith("success")
    assert north.locator("td[data-field=duration]").inner_text() == "1 min 15 s"
    assert north.locator("td[data-field=push_p50]").inner_text() == "3.0 s"
    assert north.locator("td[data-field=push_p95]").inner_text() == "8.8 s"
    assert north.locator("td[data-field=refused_scores]").inner_text() == "2"
    assert "waiting" in frame.locator("tr[data-district=south] td[data-field=waiting]").inner_text()
    assert frame.locator("tr[data-district=demo]").count() == 1  # the configured district, run or not yet

    # A district page: charts, the reasons (each linking to its rows), the schools, the runs.
    north.locator("a.district-link").click()
    frame.locator("h1", has_text="north").wait_for()
    assert frame.locator("svg.chart").count() == 2
    assert frame.locator("[data-field=users]").inner_text() == "5"
    reasons = frame.locator("table#reasons-table tbody tr")
    assert reasons.count() == 3
    assert reasons.first.get_attribute("data-rule") == "login_present"
    schools = frame.locator("table#schools tbody tr")
    assert "Adams Elementary" in schools.first.inner_text() and "Lincoln High" in schools.nth(1).inner_text()
    assert frame.locator("table#runs tbody tr").count() == 3
    page.screenshot(path=str(SCREENSHOTS / "district.png"), full_page=True)

    reasons.first.locator("a").click()
    frame.locator("table#rows").wait_for()
    assert frame.locator("table#rows tbody tr").count() == 3
    assert "4000" in frame.locator("table#rows tbody tr").first.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "rejected-rows.png"))

    # A link to an Airflow page opens in the whole window, not inside the frame.
    frame.locator("a", has_text="north").first.click()
    frame.locator("table#runs").wait_for()
    frame.locator("table#runs tbody tr a[data-airflow]").first.click()
    page.wait_for_url(re.compile(r"/dags/sis_import__north/runs/r3"), wait_until="commit")
    assert "/plugin/" not in page.url


def test_pages_need_an_airflow_login(browser, standalone):
    context = browser.new_context()
    anonymous = context.new_page()
    response = anonymous.goto(f"{standalone['base_url']}/sis-learning/districts")
    assert response.status == 401
    assert "log in" in anonymous.inner_text("body").lower()
    assert anonymous.goto(f"{standalone['base_url']}/sis-learning/districts/north").status == 401
    context.close()
