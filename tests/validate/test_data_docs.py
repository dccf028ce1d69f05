"""The run's Data Docs: offline, naming the run and the entity, the row rules beside the expectations.

A hand-made staged run (tests/validate/staged_rows.py) where one student passes every Great
Expectations expectation but shares another student's login (a row rule, not an
expectation): GX alone says the students suite succeeded 100%. After validate_run the pages
load nothing from the network, name the run and the data asset, and the students page and
the index show the login_unique rejection beside the expectation results.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from sis_learning import validate
from tests.validate.staged_rows import RUN_ID, district_config, small_district

EXTERNAL = re.compile(r"<(?:link|script|img)\b[^>]*\b(?:href|src)=[\"']?(?:https?:)?//", re.I)


def test_data_docs_work_offline_and_show_the_row_rules(staging_engine, tmp_path: Path) -> None:
    staged = small_district()
    staged.student("302", student_username="shared.login")
    staged.student("303", student_username="shared.login")  # login_unique: a row rule, not an expectation
    staged.insert(staging_engine)
    validate.validate_run(staging_engine, district_config(), RUN_ID, tmp_path / "results")
    docs = tmp_path / "results" / "data_docs"

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
    assert re.search(r"login_unique rejected \(to fix in PowerSchool\) 1 the login 'shared\.login' is already used by student 302", flat), flat[:3000]

    index = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (docs / "index.html").read_text(encoding="utf-8")))
    assert f"run {RUN_ID}" in index
    assert re.search(r"students 4 0 1 0 0", index), index[:2000]
