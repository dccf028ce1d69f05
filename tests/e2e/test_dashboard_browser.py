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

Then an approval, end to end under the scheduler: the demo district is imported, 40
students of its biggest school leave in the SIS simulator, the next run stops at the
safety guard and waits; the Districts page shows it waiting and links to the run's
approval page in Airflow (its Required Action: the figures per school and examples),
where the test clicks Approve; the run succeeds, and Learning disabled the leavers.

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
from urllib.parse import quote

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SIS_LEARNING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("SIS_LEARNING_REQUIRE_BROWSER") == "1"
SCREENSHOTS = REPO_ROOT / "var" / "test-output" / "browser"
START_SECONDS = 480  # migrate a fresh database, parse the DAGs, start four components (shared 2-core machine)
STOP_SECONDS = 90
RUN_SECONDS = 420  # one demo import under the scheduler (30-60 s on the shared machine), queued runs included
LEAVERS = 40


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
    from sis_learning.staging.runs import SyncRun, utcnow
    from tests.dashboard.staged_history import running_run, write_history

    root = tmp_path_factory.mktemp("standalone")
    staging_url = f"sqlite:///{root / 'staging.sqlite'}"
    engine = create_all(get_engine(staging_url))
    write_history(engine, now=utcnow())  # the page reads the real clock
    # A district part-way through its longest-named stage (the demo's own scheduled run may be there too).
    with engine.begin() as connection:
        # A district-scale run's figures (a million rows): the widest numbers the columns hold.
        figures = {"created": 1015437, "updated": 826104, "deactivated": 120550, "removed": 250871}
        connection.execute(
            SyncRun.__table__.insert(),
            running_run("west", "w1", "extract_section_enrollments", utcnow(), {"learning_rosters": figures}),
        )
    engine.dispose()
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
    # Staging says south's run s1 waits for approval, but this Airflow has no such run: nobody can answer it
    # there, so the page says so instead of linking to a Required Action (Airflow's metadata, read for real).
    south_waiting = frame.locator("tr[data-district=south] td[data-field=waiting]")
    assert south_waiting.inner_text().startswith("not waiting") and "s1" in south_waiting.inner_text()
    assert "required_actions" not in (south_waiting.locator("a").get_attribute("href") or "")
    assert frame.locator("tr[data-district=demo]").count() == 1  # the configured district, run or not yet
    # A running import says which stage it is in, broken at its underscores so the column stays narrow.
    west_status = frame.locator("tr[data-district=west] td[data-field=status]").inner_text()
    assert "extract_section_enrollments" in west_status.replace("\n", ""), west_status
    # On a 1280-pixel screen every column is in view, grade push included: no sideways scrolling.
    page.set_viewport_size({"width": 1280, "height": 800})
    wide = frame.locator("div.wide")
    assert wide.evaluate("w => w.scrollWidth <= w.clientWidth"), wide.evaluate("w => [w.scrollWidth, w.clientWidth]")
    refused = north.locator("td[data-field=refused_scores]")
    assert refused.evaluate("cell => cell.getBoundingClientRect().right <= window.innerWidth")
    page.screenshot(path=str(SCREENSHOTS / "districts-1280.png"))
    page.set_viewport_size({"width": 1800, "height": 900})

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


# ---- an approval in the Airflow UI ------------------------------------------------------------------


class RestApi:
    """Airflow's REST API of the running standalone, as the admin user."""

    def __init__(self, base_url: str, password: str):
        self.base_url = base_url
        self.token = self._json("POST", "/auth/token", {"username": "admin", "password": password})["access_token"]

    def _json(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            method=method,
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        return self._json(method, f"/api/v2{path}", body, self.token)

    def trigger(self, dag_id: str = "sis_import__demo") -> str:
        return self.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {}})["dag_run_id"]

    def run_state(self, run_id: str, dag_id: str = "sis_import__demo") -> str:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]

    def task_state(self, run_id: str, task_id: str, dag_id: str = "sis_import__demo") -> str | None:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        return self.call("GET", path)["state"]

    def unfinished(self, run_id: str, dag_id: str = "sis_import__demo") -> str:
        """What a timeout waited on: the run's tasks not succeeded with their states, and for each
        task waiting for a person its try and its request's answer, if any."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        instances = self.call("GET", f"{path}?limit=100")["task_instances"]
        states = [f"{item['task_id']}={item['state']}" for item in instances if item["state"] not in ("success",)]
        waiting = []
        for item in instances:
            if item["state"] != "awaiting_input":
                continue
            try:
                hitl = self.call("GET", f"{path}/{item['task_id']}/-1/hitlDetails")
                answer = {key: hitl.get(key) for key in ("response_received", "responded_at", "chosen_options")}
            except OSError as error:  # the diagnosis never hides the timeout it explains
                answer = f"(its request not readable: {error})"
            waiting.append(f"{item['task_id']} try {item['try_number']}: {answer}")
        return (", ".join(sorted(states)) or "every task succeeded") + (
            f"; waiting: {'; '.join(waiting)}" if waiting else ""
        )

    def wait(self, what: str, done, seconds: float = RUN_SECONDS, run_id: str | None = None):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = done()
            if value:
                return value
            time.sleep(2)
        detail = f"; the run's tasks not succeeded: {self.unfinished(run_id)}" if run_id else ""
        raise AssertionError(f"{what}: not within {seconds} s{detail}")


def scheduler_lines(root: Path, run_id: str, task_id: str) -> list[str]:
    """The lines of Airflow's own output (the standalone's scheduler, executor and api-server) on a task of a run."""
    output = root / "standalone" / "airflow.log"
    if not output.exists():
        return []
    named = (f"task_id={task_id},", f"run_id={run_id},")
    return [line for line in output.read_text(errors="replace").splitlines() if all(part in line for part in named)]


def scheduler_saw_it_park(root: Path, run_id: str, task_id: str) -> bool:
    """Whether the scheduler says it handled the exit of the task's process parked for input."""
    return any(
        "TaskInstance Finished:" in line and "state=awaiting_input" in line
        for line in scheduler_lines(root, run_id, task_id)
    )


def task_log_tails(root: Path, run_id: str, task_id: str, lines: int = 15) -> str:
    """What a stuck approval did: each try's warnings, errors and last lines, and what Airflow said of the task.

    From the standalone's task logs (JSON lines: the levels say what went wrong, wherever it is in the
    log) and Airflow's own output (the scheduler's lines on the task: its tries finishing, retries).
    """
    tails = []
    logs = root / "airflow-home" / "logs"
    for log in sorted(logs.glob(f"dag_id=*/run_id={run_id}/task_id={task_id}/attempt=*.log")):
        text = log.read_text(errors="replace").splitlines()
        notable = [line for line in text[:-lines] if not line.startswith("{") or '"level":"info"' not in line]
        tails.append(f"--- {log.name}: {len(notable)} warning/error line(s), then the last {lines}")
        tails.extend(line[:2000] for line in notable[-60:] + text[-lines:])
    said = [
        line[:1000]
        for line in scheduler_lines(root, run_id, task_id)
        if any(word in line for word in ("Finished", "error", "UP_FOR_RETRY", "state mismatch", "heartbeat"))
    ]
    tails.append(f"--- airflow.log: {len(said)} scheduler line(s) on {task_id} of this run")
    tails.extend(said[-40:])
    return "\n".join(tails) or f"no log of {task_id} under {logs}"


def students_of_the_biggest_school(staging_url: str) -> tuple[str, list[int]]:
    """(school, its students' DCIDs in Learning), from the snapshot of what Learning accepted."""
    from sqlalchemy import create_engine, text

    engine = create_engine(staging_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT key, organization_id FROM learning_snapshot WHERE district_id = 'demo' AND entity = 'users' "
                "AND active AND key LIKE 'S:%'"
            )
        ).all()
    engine.dispose()
    by_school: dict[str, list[int]] = {}
    for key, school in rows:
        by_school.setdefault(school, []).append(int(key.split(":", 1)[1]))
    school, students = max(by_school.items(), key=lambda item: len(item[1]))
    return school, sorted(students)


def staged(staging_url: str, sql: str, **params) -> list[dict]:
    from sqlalchemy import create_engine, text

    engine = create_engine(staging_url)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(text(sql), params)]
    engine.dispose()
    return rows


def test_a_stopped_run_is_approved_in_the_airflow_ui(page, standalone):
    import httpx

    from scripts.teacher import learning_client, rows

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base_url, staging_url = standalone["base_url"], standalone["staging_url"]
    sandboxes = json.loads((standalone["root"] / "standalone" / "sandboxes.json").read_text())
    api = RestApi(base_url, standalone["password"])
    started = time.monotonic()

    # A first import of the demo district, then 40 students of its biggest school leave in the SIS.
    first = api.trigger()
    assert (
        api.wait(
            "the first import",
            lambda: api.run_state(first) in ("success", "failed") and api.run_state(first),
            run_id=first,
        )
        == "success"
    )
    school, students = students_of_the_biggest_school(staging_url)
    leavers = students[:LEAVERS]
    assert 0.10 * len(students) < LEAVERS <= len(students)
    powerschool = sandboxes["powerschool"]
    for dcid in leavers:
        httpx.post(
            f"{powerschool['base_url']}/sandbox/admin/student-status",
            json={"student_dcid": dcid, "enroll_status": 2, "exitdate": "2025-12-01"},
            headers={"X-Sandbox-Admin-Token": powerschool["admin_token"]},
            verify=powerschool["ca_bundle"],
            timeout=60,
        ).raise_for_status()
    stopped = api.trigger()
    api.wait(
        "the run to ask",
        lambda: api.task_state(stopped, "load.approve_mass_changes") == "awaiting_input",
        run_id=stopped,
    )
    asked = time.monotonic() - started
    # Airflow 3.3.2 races here, not this project: the parked task's process exits, and when the answer
    # resumes the task (scheduled, queued again under the same try number) before the scheduler has
    # handled the executor's report of that exit, the scheduler takes the report for the new workload
    # ("finished with state success, but the task instance's state attribute is queued"), marks the
    # try up_for_retry, and the retry asks again with the answer gone (CI hit it with the answer 6 s
    # after the ask, on a loaded machine). A person takes longer than the scheduler; the test waits
    # for the scheduler's own line saying it handled the exit of the parked try.
    api.wait(
        "the scheduler to handle the parked try's exit",
        lambda: scheduler_saw_it_park(standalone["root"], stopped, "load.approve_mass_changes"),
        seconds=120,
        run_id=stopped,
    )
    review = staged(staging_url, "SELECT status, rows, findings FROM mass_change_reviews WHERE run_id = :r", r=stopped)
    assert [item["status"] for item in review] == ["waiting"]
    users_leaving = next(
        finding["rows"]
        for finding in json.loads(review[0]["findings"])
        if finding["entity"] == "users" and finding["organization_id"] == school
    )

    # The Districts page shows the run waiting and links to its approval page in Airflow.
    page.goto(f"{base_url}/")
    page.get_by_text("Districts", exact=True).first.click()
    frame = page.frame_locator("iframe[title=Districts]")
    waiting = frame.locator("tr[data-district=demo] td[data-field=waiting]")
    # The link appears once the task has been parked for SETTLE_SECONDS (the page reloads every 5 s).
    waiting.locator("a").wait_for(timeout=90_000)
    assert waiting.inner_text().startswith("waiting") and stopped in waiting.inner_text()
    waiting.locator("a").click()
    page.wait_for_url(re.compile(r"/tasks/load.approve_mass_changes/required_actions"), wait_until="commit")
    assert "/plugin/" not in page.url and quote(stopped, safe="") in page.url

    # Airflow's Required Action: the figures per school with examples, Approve and Reject.
    approve = page.get_by_role("button", name="Approve", exact=True)
    approve.wait_for()
    body = page.inner_text("body")
    assert f"approve {review[0]['rows']:,} change(s) the safety guard stopped?" in body
    assert re.search(rf"\n{school}\tusers deactivated\t{users_leaving}\t", body), body[-3000:]
    assert page.get_by_role("button", name="Reject", exact=True).is_visible()
    page.screenshot(path=str(SCREENSHOTS / "approval.png"), full_page=True)
    approve.click()
    page.get_by_text("response successful").first.wait_for()
    try:
        approved_state = api.wait(
            "the approved run",
            lambda: api.run_state(stopped) in ("success", "failed") and api.run_state(stopped),
            run_id=stopped,
        )
    except AssertionError as stuck:
        tails = task_log_tails(standalone["root"], stopped, "load.approve_mass_changes")
        raise AssertionError(f"{stuck}\n{tails}") from None
    assert approved_state == "success"
    page.reload()
    page.get_by_text("Response received").first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "approved.png"), full_page=True)
    print(f"approval in the UI: asked {asked:.0f} s after the first trigger, done {time.monotonic() - started:.0f} s")

    # Staging says who approved what; Learning disabled exactly the leavers of that school (no one deleted).
    decided = staged(
        staging_url, "SELECT status, decided_by, task_id FROM mass_change_reviews WHERE run_id = :r", r=stopped
    )
    assert decided == [{"status": "approved", "decided_by": "admin", "task_id": "load.approve_mass_changes"}]
    assert staged(staging_url, "SELECT status FROM sync_runs WHERE run_id = :r", r=stopped) == [{"status": "success"}]
    with learning_client(sandboxes) as client:
        students_now = {int(user["external_id"]): user for user in rows(client, "users") if user["user_type"] == "S"}
    assert all(students_now[dcid]["enabled"] is False for dcid in leavers)
    assert all(students_now[dcid]["enabled"] is True for dcid in students[LEAVERS:])
