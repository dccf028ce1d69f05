"""District configuration: validated once, errors name the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sis_learning.config import DistrictConfigError, load_district, load_districts

MINIMAL = """
name: Test District
powerschool: {connection_id: ps_test}
learning: {connection_id: learning_test}
import_start_year: 2025
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_every_shipped_district_config_is_valid():
    configs = load_districts()
    assert configs, "include/districts/ must hold at least the demo district"
    assert [c.district_id for c in configs] == sorted(c.district_id for c in configs)


def test_minimal_config_gets_the_source_documents_defaults(tmp_path):
    config = load_district(write(tmp_path, "test_district", MINIMAL))
    assert config.district_id == "test_district"
    assert config.import_dag_id == "sis_import__test_district"
    assert config.co_teacher_class_limit == 25
    assert config.ignore_parents is False  # parents are imported by default
    assert config.schedule == "0 6,18 * * *"  # twice a day


def test_missing_key_names_file_key_and_fix(tmp_path):
    path = write(tmp_path, "broken", "name: X\nlearning: {connection_id: l}\nimport_start_year: 2025\n")
    with pytest.raises(DistrictConfigError) as error:
        load_district(path)
    message = str(error.value)
    assert str(path) in message and "powerschool" in message and "is required" in message


def test_misspelled_setting_is_rejected(tmp_path):
    path = write(tmp_path, "typo", MINIMAL + "ignore_parent: true\n")
    with pytest.raises(DistrictConfigError, match="ignore_parent: is not a known setting"):
        load_district(path)


def test_a_password_in_the_file_is_refused(tmp_path):
    path = write(tmp_path, "secret", MINIMAL + "default_password: hunter2\n")
    with pytest.raises(DistrictConfigError, match="reference to a secret") as error:
        load_district(path)
    assert "hunter2" not in str(error.value)


def test_unknown_time_zone(tmp_path):
    with pytest.raises(DistrictConfigError, match="unknown IANA time zone"):
        load_district(write(tmp_path, "tz", MINIMAL + "timezone: Mars/Olympus\n"))


def test_file_name_must_match_district_id(tmp_path):
    with pytest.raises(DistrictConfigError, match="must match the file name"):
        load_district(write(tmp_path, "one", MINIMAL + "district_id: two\n"))


def test_sso_email_matches_only_the_districts_domains(tmp_path):
    config = load_district(
        write(
            tmp_path, "sso", MINIMAL + "sso_domains: {google: ['@Kids.Example.org'], office365: [staff.example.org]}\n"
        )
    )
    assert config.is_sso_email("ana@kids.example.org")
    assert config.is_sso_email("Bo@STAFF.example.org")
    assert not config.is_sso_email("ana@gmail.com")
    assert not config.is_sso_email("ana@notkids.example.org.evil.com")
    assert not config.is_sso_email(None)


def test_grade_push_organizations_must_be_imported_schools(tmp_path):
    text = MINIMAL + "schools: ['101', '102']\ngrade_push: {enabled: true, organizations: ['103']}\n"
    with pytest.raises(DistrictConfigError, match="not imported"):
        load_district(write(tmp_path, "gp", text))


def test_one_rule_selects_schools_by_dcid_first_then_school_number(tmp_path):
    # DCIDs and school numbers overlap in real districts: school 5's number is 7 and school 7's is 100.
    schools = [("5", "7"), ("7", "100"), ("9", None)]
    everything = load_district(write(tmp_path, "all_schools", MINIMAL))
    assert everything.select_schools(schools) == (["5", "7", "9"], [])
    config = load_district(write(tmp_path, "some", MINIMAL + 'schools: ["7", "100", " 9 ", "404"]\n'))
    # "7" is school 7 (a DCID wins over a number), "100" is school 7's number (already chosen), "404" is nobody.
    assert config.select_schools(schools) == (["7", "9"], ["404"])
