"""The run's Data Docs: offline, naming the run and the entity, the row rules beside the expectations.

A hand-made staged run (tests/validate/staged_rows.py) where one student passes every Great
Expectations expectation but shares another student's login (a row rule, not an
expectation): GX alone says the students suite succeeded 100%. After validate_run the pages
load nothing from the network, name the run and the data asset, and the students page and
the index show the login_unique rejection beside the expectation results.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from sis_learning import validate
from tests.validate.staged_rows import RUN_ID, district_config, small_district

CHROMIUM = os.environ.get("SIS_LEARNING_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "test-output" / "browser"

EXTERNAL = re.compile(r"<(?:link|script|img)\b[^>]*\b(?:href|src)=[\"']?(?:https?:)?//", re.I)


def build_docs(engine, tmp_path: Path) -> Path:
    staged = small_district()
    staged.student("302", student_username="shared.login")
    staged.student("303", student_username="shared.login")  # login_unique: a row rule, not an expectation
    staged.insert(engine)
    validate.validate_run(engine, district_config(), RUN_ID, tmp_path / "results")
    return tmp_path / "results" / "data_docs"


def test_data_docs_work_offline_and_show_the_row_rules(staging_engine, tmp_path: Path) -> None:
    docs = build_docs(staging_engine, tmp_path)

    pages = sorted(docs.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        content = page.read_text(encoding="utf-8")
        assert not EXTERNAL.search(content), (page, EXTERNAL.search(content).group(0))
        stylesheets = re.findall(r"<link[^>]*href=['\"]([^'\"]+\.css)['\"]", content)
        assert stylesheets and all((page.parent / href).is_file() for href in stylesheets), (page, stylesheets)
    assert "__none__" not in " ".join(str(page) for page in pages)

    [students] = [page for page in pages if page.parts[-4] == "students_suite"]
    content = students.read_text(encoding="utf-8")
    flat = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", content)))
    assert f"students: district {district_config().district_id}, run {RUN_ID}" in flat
    assert "Data asset: students" in flat
    assert f"Run Name {RUN_ID}" in flat
    assert re.search(r"Success Percent 100 ?%", flat)  # every expectation passed ...
    # ... and beside them, what the row rules did to the same rows
    assert re.search(
        r"login_unique rejected \(to fix in PowerSchool\) 1 the login 'shared\.login' is already used by student 302",
        flat,
    ), flat[:3000]

    index = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (docs / "index.html").read_text(encoding="utf-8")))
    assert f"run {RUN_ID}" in index
    assert re.search(r"students 4 0 1 0 0", index), index[:2000]


def test_data_docs_render_in_a_browser_with_no_network(sqlite_url: str, tmp_path: Path) -> None:
    """Headless Chromium, offline: the students page shows its content at once and asks for nothing remote."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("SIS_LEARNING_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    from sis_learning.staging.base import create_all, get_engine

    docs = build_docs(create_all(get_engine(sqlite_url)), tmp_path)
    [students] = [page for page in (docs / "validations").rglob("*.html") if page.parts[-4] == "students_suite"]
    remote: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 1600})
            page = context.new_page()
            page.on(
                "request",
                lambda request: remote.append(request.url) if not request.url.startswith(("file:", "data:")) else None,
            )
            started = time.monotonic()
            page.goto(students.as_uri(), wait_until="load", timeout=15_000)
            seconds = time.monotonic() - started
            banner = page.locator("section.sis-run")
            assert banner.is_visible() and "login_unique" in banner.inner_text()
            assert page.get_by_text("values must never be null").first.is_visible()
            assert page.get_by_text("Data asset:").first.is_visible()
            assert not page.locator(".ge-walkthrough-modal").first.is_visible()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "data-docs-students-offline.png"), full_page=True)
        finally:
            browser.close()
    assert remote == [], remote
    assert seconds < 10, f"the page took {seconds:.1f} s to load offline"
