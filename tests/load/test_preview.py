"""preview.write_preview: what load_run would send, row for row, without sending; on SQLite and PostgreSQL.

The fast counterpart of tests/e2e/test_preview.py: the learning_* rows of two runs are
written as transform would; the second run is previewed, then loaded, and every row the
load hands to LearningHook must be a row of the preview's CSVs (and nothing else), with the
updates' before -> after against the snapshot, while the preview itself changes nothing.
"""

from __future__ import annotations

import csv
import json
from collections import Counter

from sqlalchemy import select

from sis_learning.diff import compute_changes
from sis_learning.hooks.learning import LearningHook
from sis_learning.load import load_run
from sis_learning.preview import write_preview
from sis_learning.staging.changes import LearningSnapshot
from tests.load.district_rows import LearningDistrict, make_config, write_run


class RecordingHook(LearningHook):
    """The real hook, keeping what it was handed (the requests still reach Learning)."""

    sent: list

    def upsert(self, entity, rows):
        self.sent.extend((entity, "upsert", dict(row)) for row in rows)
        return super().upsert(entity, rows)

    def remove(self, entity, rows):
        self.sent.extend((entity, "remove", dict(row)) for row in rows)
        return super().remove(entity, rows)

    def deactivate_users(self, users):
        self.sent.extend(("users", "deactivate", dict(user)) for user in users)
        return super().deactivate_users(users)


METHOD = {"create": "upsert", "update": "upsert", "remove": "remove", "deactivate": "deactivate"}


def text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def snapshot(engine):
    table = LearningSnapshot.__table__
    with engine.connect() as connection:
        return sorted(
            tuple(row)
            for row in connection.execute(select(table.c.entity, table.c.key, table.c.content_hash, table.c.active))
        )


def test_the_preview_is_what_the_load_then_sends(staging_engine, learning_domain, default_password, tmp_path):
    config = make_config(learning={"batch_size": 50})
    hook = RecordingHook.from_settings(learning_domain.base_url, learning_domain.token, learning_domain.ca_bundle)
    hook.sent = []
    first = LearningDistrict.generate(schools=2, students_per_school=30)
    write_run(staging_engine, first, "run-1")
    compute_changes(staging_engine, config, "run-1")
    load_run(staging_engine, config, "run-1", hook)

    second = first.copy()
    renamed = second.students_of("101")[0]
    second.users[renamed]["last_name"] = "Renamed"
    second.remove_user(second.students_of("100")[3])
    second.add_user("39990001", "S", "100", "Nadia", "Newcomer")
    write_run(staging_engine, second, "run-2")
    compute_changes(staging_engine, config, "run-2")
    before, hook.sent = snapshot(staging_engine), []

    result = write_preview(staging_engine, config, "run-2", tmp_path / "preview")
    assert hook.sent == [] and snapshot(staging_engine) == before
    summary = json.loads((tmp_path / "preview" / "summary.json").read_text())
    assert summary["totals"]["users"] | {"unchanged": 0} == {
        "create": 1,
        "update": 1,
        "deactivate": 1,
        "remove": 0,
        "unchanged": 0,
    }
    [update] = summary["examples"]["users"]["update"]
    assert update["key"] == f"S:{renamed}" and update["changes"]["last_name"][1] == "Renamed"
    assert {item["organization_id"] for item in summary["per_school"] if item["entity"] == "users"} == {"100", "101"}
    assert summary["domain_settings"]["autogenerate_usernames"] == config.autogenerate_usernames
    planned: Counter = Counter()
    for entity in ("organizations", "users", "user_levels", "classes", "rosters", "parent_links"):
        with (tmp_path / "preview" / f"{entity}.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                fields = tuple(
                    sorted(
                        (name, value)
                        for name, value in row.items()
                        if name not in ("action", "key", "school", "changes") and value != ""
                    )
                )
                planned[(entity, METHOD[row["action"]], fields)] += 1
    assert result["rows"] == sum(planned.values())

    load_run(staging_engine, config, "run-2", hook)
    sent = Counter(
        (
            entity,
            method,
            tuple(
                sorted((name, text(value)) for name, value in row.items() if name != "password" and text(value) != "")
            ),
        )
        for entity, method, row in hook.sent
    )
    assert sent == planned


def test_a_preview_with_nothing_to_send_says_so_under_each_heading(
    staging_engine, learning_domain, default_password, tmp_path
):
    config = make_config()
    hook = RecordingHook.from_settings(learning_domain.base_url, learning_domain.token, learning_domain.ca_bundle)
    hook.sent = []
    district = LearningDistrict.generate(schools=1, students_per_school=5)
    write_run(staging_engine, district, "run-1")
    compute_changes(staging_engine, config, "run-1")
    write_preview(staging_engine, config, "run-1", tmp_path / "first")
    first = (tmp_path / "first" / "index.html").read_text()
    assert "<h3>users: create" in first and "None: nothing would be sent." not in first
    load_run(staging_engine, config, "run-1", hook)

    write_run(staging_engine, district.copy(), "run-2")
    compute_changes(staging_engine, config, "run-2")
    write_preview(staging_engine, config, "run-2", tmp_path / "second")
    page = (tmp_path / "second" / "index.html").read_text()
    per_school, examples = (
        part.strip() for part in page.split("<h2>Per school</h2>", 1)[1].split("<h2>Examples</h2>", 1)
    )
    assert per_school.startswith("<p>Nothing would change.</p>")
    assert examples.startswith("<p>None: nothing would be sent.</p>") and "<h3>" not in examples
