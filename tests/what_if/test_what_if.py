"""The mapping what-if: a past run's staged inputs through an edited mapping or another setting.

A run is staged by hand (tests/validate/staged_rows.py), validated and transformed with the
shipped mappings, as the import does; the what-if then runs on it with an edited
``users_students.csv`` or another ``co_teacher_class_limit``, and must report exactly the
Learning rows that change, and leave the staging database as it was.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from sis_learning import transform, validate
from sis_learning.config import MAPPINGS_DIR
from sis_learning.exceptions import MappingSpecError
from sis_learning.staging.base import Base, create_all, get_engine
from sis_learning.staging.runs import finish_run, start_run
from sis_learning.what_if import parse_setting, run_what_if, with_settings
from tests.validate.staged_rows import DISTRICT_ID, RUN_ID, district_config, small_district


def staged_run(engine, tmp_path: Path):
    """A run as the import leaves it: staged rows, validated, transformed, a sync_runs row."""
    staged = small_district()
    staged.student("302", first_name="Zoë", last_name="Ångström", student_username=None, email="zoe@gmail.com")
    staged.student("303", student_username=None, email="li@students.test.org")
    staged.staff("260")
    for number in range(3):  # a co-teacher of three classes
        staged.section(str(1000 + number), staff_id="200", section_number=str(number))
        staged.section_teacher(str(1000 + number), "260")
    staged.insert(engine)
    config = district_config()
    start_run(engine, DISTRICT_ID, RUN_ID, dag_id="sis_import__test_district")
    validate.validate_run(engine, config, RUN_ID, tmp_path / "validation")
    transform.transform_run(engine, config, RUN_ID)
    finish_run(engine, DISTRICT_ID, RUN_ID, status="success")
    return config


def table_counts(engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
            if inspect(engine).has_table(table.name)
        }


def edited_mappings(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS_DIR, folder)
    spec = folder / "users_students.csv"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))
    return folder


@pytest.fixture
def what_if_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIS_LEARNING_WHAT_IF_DIR", str(tmp_path / "what-if"))
    return tmp_path / "what-if"


def test_an_edited_login_template_changes_exactly_the_generated_login(staging_engine, tmp_path, what_if_dir):
    config = staged_run(staging_engine, tmp_path)
    before = table_counts(staging_engine)
    mappings = edited_mappings(tmp_path, "{first_name}.{last_name}.s{student_id}", "s{student_id}")

    result = run_what_if(staging_engine, config, RUN_ID, mappings_dir=mappings)

    # Only student 302 has neither a SIS username nor an SSO email: her generated login changes.
    assert result.totals["users"] == {"added": 0, "dropped": 0, "changed": 1, "same": 6}
    assert result.fields_changed["users"] == {"login": 1}
    assert result.examples["users"]["changed"] == [
        {"key": "S:302", "changes": {"login": ["zoe.angstrom.s302", "s302"]}}
    ]
    for entity in ("organizations", "user_levels", "classes", "rosters", "parent_links"):
        assert result.totals[entity]["added"] == result.totals[entity]["dropped"] == 0, entity
        assert result.totals[entity]["changed"] == 0, entity
    assert result.rejections == {}
    with (result.directory / "users.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [
            {
                "difference": "changed",
                "key": "S:302",
                "field": "login",
                "before": "zoe.angstrom.s302",
                "after": "s302",
                "in_learning": "updated",
            }
        ]
    summary = json.loads((result.directory / "summary.json").read_text())
    assert summary["mappings_dir"] == str(mappings) and summary["totals"]["users"]["changed"] == 1
    assert "S:302" in (result.directory / "index.html").read_text()
    # Staging was only read; the scratch copy is gone.
    assert table_counts(staging_engine) == before
    assert not (result.directory / "scratch.sqlite").exists()


def test_a_lower_co_teacher_limit_drops_roster_rows_and_says_why(sqlite_url, tmp_path, what_if_dir):
    engine = create_all(get_engine(sqlite_url))
    config = staged_run(engine, tmp_path)
    before = table_counts(engine)
    changed = with_settings(config, dict([parse_setting("co_teacher_class_limit=2")]))
    assert changed.co_teacher_class_limit == 2

    result = run_what_if(engine, config, RUN_ID, config=changed, settings={"co_teacher_class_limit": 2})

    # Latest term first, then the lowest section id: the third class (1002) loses its co-teacher.
    assert result.totals["rosters"]["dropped"] == 1
    assert result.examples["rosters"]["dropped"][0]["key"] == "1002:T:260"
    assert result.totals["users"]["changed"] == 0
    assert result.rejections == {"newly_excluded": 1}
    with (result.directory / "rejections.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["difference"], row["entity"], row["source_id"]) for row in rows] == [
        ("newly_excluded", "section_teachers", "1002:260")
    ]
    assert rows[0]["after"].startswith("co_teacher_class_limit")
    assert table_counts(engine) == before


def test_the_same_mappings_and_settings_change_nothing(sqlite_url, tmp_path, what_if_dir):
    engine = create_all(get_engine(sqlite_url))
    config = staged_run(engine, tmp_path)
    result = run_what_if(engine, config, RUN_ID)
    assert not result.any_difference, result.totals


def test_a_bad_mapping_or_setting_is_refused_before_any_work(sqlite_url, tmp_path, what_if_dir):
    engine = create_all(get_engine(sqlite_url))
    config = staged_run(engine, tmp_path)
    before = table_counts(engine)
    mappings = edited_mappings(tmp_path, "student/name/first_name", "student/name/nickname")
    with pytest.raises(MappingSpecError, match=r"users_students\.csv"):
        run_what_if(engine, config, RUN_ID, mappings_dir=mappings)
    with pytest.raises(Exception, match="co_teacher_class_limit"):
        with_settings(config, {"co_teacher_class_limit": 0})
    with pytest.raises(Exception, match="not a known setting"):
        with_settings(config, {"co_teacher_limit": 3})
    with pytest.raises(ValueError, match="no import run"):
        run_what_if(engine, config, "manual__nope")
    assert table_counts(engine) == before


def test_the_command_prints_the_differences_and_refuses_what_it_cannot_use(
    sqlite_url, tmp_path, what_if_dir, monkeypatch, capsys
):
    import yaml

    import sis_learning.config
    from scripts.what_if import main

    districts = tmp_path / "districts"
    districts.mkdir()
    config = district_config()
    (districts / f"{DISTRICT_ID}.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    monkeypatch.setattr(sis_learning.config, "DISTRICTS_DIR", districts)
    monkeypatch.setenv("SIS_LEARNING_STAGING_URL", sqlite_url)
    engine = create_all(get_engine(sqlite_url))
    staged_run(engine, tmp_path)

    assert main([DISTRICT_ID, "--set", "co_teacher_class_limit=2"]) == 0  # the latest run by default
    printed = capsys.readouterr().out
    assert "rosters: 0 added, 1 dropped, 0 changed" in printed and "newly excluded 1" in printed
    assert main([DISTRICT_ID, "--set", "co_teacher_limit=2"]) == 2
    assert "not a known setting" in capsys.readouterr().err
    assert main([DISTRICT_ID, "--run", "manual__nope"]) == 2
