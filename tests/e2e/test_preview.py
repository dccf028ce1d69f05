"""A preview sends nothing, advances nothing, and reports exactly what the following real run sends.

Issue 19. The demo district's DAG runs with ``preview=true`` against the sandboxes; the
report's CSVs are then compared, row by row, with what the next real run hands to
``LearningHook`` (recorded on the way to the reference Learning server, which still gets
every request), and with the state the Learning server ends in. Between the runs,
nothing a later run starts from may move: the Learning snapshot, the extract cursors (the
next run reads changes since the last *real* run), the grade push ledger, and Learning
itself (no write request reaches it).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from scripts.demo_environment import apply_everyday_changes
from tests.e2e.conftest import DISTRICT_ID, run_dag, staged_rows

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture
def previews_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "previews"
    monkeypatch.setenv("SIS_LEARNING_PREVIEWS_DIR", str(directory))
    return directory


@pytest.fixture
def sent_to_learning(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every row the pipeline hands to LearningHook, as (entity, method, row); the request still goes out."""
    from sis_learning.hooks.learning import LearningHook

    sent: list[tuple[str, str, dict[str, Any]]] = []
    upsert, remove, deactivate = LearningHook.upsert, LearningHook.remove, LearningHook.deactivate_users

    def recording_upsert(self, entity, rows):
        sent.extend((entity, "upsert", dict(row)) for row in rows)
        return upsert(self, entity, rows)

    def recording_remove(self, entity, rows):
        sent.extend((entity, "remove", dict(row)) for row in rows)
        return remove(self, entity, rows)

    def recording_deactivate(self, users):
        sent.extend(("users", "deactivate", dict(user)) for user in users)
        return deactivate(self, users)

    monkeypatch.setattr(LearningHook, "upsert", recording_upsert)
    monkeypatch.setattr(LearningHook, "remove", recording_remove)
    monkeypatch.setattr(LearningHook, "deactivate_users", recording_deactivate)
    return sent


METHOD_OF_ACTION = {"create": "upsert", "update": "upsert", "remove": "remove", "deactivate": "deactivate"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def preview_rows(directory: Path) -> Counter:
    """The report's CSVs as comparable rows: (entity, method, ((field, text), ...)); empty fields dropped."""
    rows: Counter = Counter()
    for path in sorted(directory.glob("*.csv")):
        entity = path.stem
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                method = METHOD_OF_ACTION[row["action"]]
                fields = {
                    name: value
                    for name, value in row.items()
                    if name not in ("action", "key", "school", "changes") and value != ""
                }
                rows[(entity, method, tuple(sorted(fields.items())))] += 1
    return rows


def sent_rows(sent: list[tuple[str, str, dict[str, Any]]]) -> Counter:
    rows: Counter = Counter()
    for entity, method, row in sent:
        fields = {name: _text(value) for name, value in row.items() if name != "password" and _text(value) != ""}
        rows[(entity, method, tuple(sorted(fields.items())))] += 1
    return rows


def snapshot_rows(staging_url: str) -> list[tuple]:
    return [
        tuple(row.values())
        for row in staged_rows(
            staging_url,
            "SELECT entity, key, content_hash, active, run_id FROM learning_snapshot WHERE district_id = :d "
            "ORDER BY entity, key",
            d=DISTRICT_ID,
        )
    ]


def ledger_counts(staging_url: str) -> dict[str, int]:
    counts = {}
    for table in ("grade_push_assignments", "grade_push_scores", "grade_push_cursors"):
        try:
            counts[table] = staged_rows(staging_url, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
        except Exception:  # the table does not exist: no grade push ever ran
            counts[table] = 0
    return counts


def run_status(staging_url: str, run_id: str) -> str:
    return staged_rows(
        staging_url, "SELECT status FROM sync_runs WHERE district_id = :d AND run_id = :r", d=DISTRICT_ID, r=run_id
    )[0]["status"]


def test_preview_reports_what_the_next_run_sends_and_advances_nothing(
    import_dag, sandboxes, previews_dir, sent_to_learning
):
    staging = sandboxes.staging_url

    # 1. A first preview, on an empty Learning domain: everything would be created.
    mark = sandboxes.learning_log_mark()
    preview, _ = run_dag(import_dag, preview=True)
    assert preview.state == "success"
    assert run_status(staging, preview.run_id) == "previewed"
    assert sent_to_learning == []
    assert [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"] == []
    assert sandboxes.learning.users(DISTRICT_ID) == {}
    assert snapshot_rows(staging) == []
    report_dir = next(previews_dir.glob(f"{DISTRICT_ID}/*"))
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["totals"]["users"]["create"] > 0 and summary["status"] == "previewed"
    assert (report_dir / "index.html").read_text().count("Nothing was sent") == 1
    planned = preview_rows(report_dir)

    # 2. The real run sends exactly the preview's rows.
    # conf given in full: under dag.test() a run's conf stays on the DAG's Params for the next run in
    # the same process (Airflow's ParamsDict resolves the conf into the DAG's own Param objects).
    first, _ = run_dag(import_dag, preview=False, email_preview=False)
    assert first.state == "success"
    assert sent_rows(sent_to_learning) == planned
    # ... and Learning holds what the preview said it would create.
    users = sandboxes.learning.users(DISTRICT_ID)
    with (report_dir / "users.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            key = f"{row['user_type']}:{row['external_id']}"
            refused = staged_rows(
                staging,
                "SELECT status FROM change_set WHERE district_id = :d AND run_id = :r "
                "AND entity = 'users' AND key = :k",
                d=DISTRICT_ID,
                r=first.run_id,
                k=key,
            )
            if refused and refused[0]["status"] == "refused":
                continue
            assert users[key]["login"] == row["login"], key
            assert users[key]["last_name"] == row["last_name"], key

    # 3. Everyday changes, then a preview that emails the district.
    print("\n".join(apply_everyday_changes(sandboxes.powerschool, sandboxes.learning)))
    snapshot_before = snapshot_rows(staging)
    ledger_before = ledger_counts(staging)
    learning_before = sandboxes.learning_state()
    sent_to_learning.clear()
    mark = sandboxes.learning_log_mark()
    second_preview, _ = run_dag(import_dag, preview=True, email_preview=True)
    assert second_preview.state == "success"
    assert run_status(staging, second_preview.run_id) == "previewed"
    assert sent_to_learning == []
    assert [r for r in sandboxes.learning_requests(mark) if r[0] != "GET"] == []
    assert sandboxes.learning_state() == learning_before
    assert snapshot_rows(staging) == snapshot_before
    assert ledger_counts(staging) == ledger_before
    report_dir = next(
        path
        for path in previews_dir.glob(f"{DISTRICT_ID}/*")
        if json.loads((path / "summary.json").read_text())["run_id"] == second_preview.run_id
    )
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["totals"]["rosters"]["create"] >= 1 and summary["totals"]["rosters"]["remove"] >= 1
    renamed = summary["examples"]["users"]["update"]
    assert any(
        "last_name" in example["changes"] and example["changes"]["last_name"][1].endswith("-Okafor")
        for example in renamed
    ), renamed
    assert any(item["entity"] == "rosters" for item in summary["per_school"])
    message = sandboxes.smtp.mailbox.wait_for(1, timeout=30)[-1]
    assert "preview" in message["Subject"].lower()
    planned = preview_rows(report_dir)

    # 4. The next real run reads changes since the last real run (not the preview) and sends the preview's rows.
    second, _ = run_dag(import_dag, preview=False, email_preview=False)
    assert second.state == "success"
    reads = staged_rows(
        staging,
        "SELECT mode, base_run_id FROM extract_reads WHERE district_id = :d AND run_id = :r "
        "AND entity = 'section_enrollments'",
        d=DISTRICT_ID,
        r=second.run_id,
    )
    assert reads == [{"mode": "incremental", "base_run_id": first.run_id}]
    assert sent_rows(sent_to_learning) == planned
