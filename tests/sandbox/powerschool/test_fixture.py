"""The JSON fixture format: a round trip through export and load, clear errors, and serving a fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.powerschool import datasets, fixture, store
from sandbox.powerschool.testing import running_powerschool
from tests.sandbox.powerschool.conftest import ApiClient, as_list

EXAMPLE = Path(fixture.__file__).parent / "fixtures" / "small-district.json"
SMALL_FIXTURE = json.loads(EXAMPLE.read_text(encoding="utf-8"))


def write(tmp_path, document, name="district.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def test_export_then_load_gives_the_same_tables(tmp_path):
    source = datasets.resolve_dataset("tiny", seed=1)
    exported = tmp_path / "tiny.json"
    fixture.export_fixture(source, exported)
    loaded = tmp_path / "loaded.sqlite"
    fixture.load_fixture(exported, loaded)
    with store.DatasetStore(source) as left, store.DatasetStore(loaded) as right:
        for table in store.SIS_TABLES:
            assert list(left.rows(table)) == list(right.rows(table)), table
        assert right.info()["google_domains"] == left.info()["google_domains"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: doc.update(shoes=[]), "unknown table"),
        (lambda doc: doc["students"][0].update(shoe_size=9), "students\\[0\\] has unknown column"),
        (lambda doc: doc["students"][0].pop("dcid"), "students\\[0\\] lacks required column"),
        (lambda doc: doc["students"].append(dict(doc["students"][0])), "must be unique"),
        (lambda doc: doc["district"].update(timezone="UTC"), "unknown district key"),
        (lambda doc: doc.update(cc={"id": 1}), "cc must be a list"),
    ],
)
def test_bad_fixtures_name_the_problem(tmp_path, change, message):
    document = json.loads(json.dumps(SMALL_FIXTURE))
    change(document)
    with pytest.raises(store.DatasetError, match=message):
        fixture.load_fixture(write(tmp_path, document), tmp_path / "out.sqlite")


def test_invalid_json_is_reported(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(store.DatasetError, match="not valid JSON"):
        fixture.load_fixture(path, tmp_path / "out.sqlite")


def test_the_server_serves_the_documented_example_fixture():
    with running_powerschool(EXAMPLE) as sandbox:
        api = ApiClient(sandbox)
        try:
            school = api.get_json("/ws/v1/district/school")["schools"]["school"]
            assert school["id"] == 501  # one school: an object (quirk 1)
            student = api.get_json("/ws/v1/school/501/student", expansions="school_enrollment")["students"]["student"]
            assert student["name"]["last_name"] == "O'Neil" and student["local_id"] == 42
            section = api.get_json("/ws/v1/school/501/section")["sections"]["section"]
            assert section["staff_id"] == 701 and section["term_id"] == 801
            guardians = api.post(
                "/ws/schema/query/com.pearson.core.guardian.student_guardian_detail", {"students_dcid": [1001]}
            ).json()
            assert as_list(guardians["record"]) == [
                {
                    "studentsdcid": "1001",
                    "guardianid": "1",
                    "firstname": "Maeve",
                    "lastname": "O'Neil",
                    "relationship": "Mother",
                    "accountidentifier": "tok-1",
                    "username": "maeve",
                    "isenabled": "1",
                    "emailaddress": "maeve@example.com",
                }
            ]
            roles = as_list(api.get_json("/ws/schema/table/roledef", projection="name")["record"])
            assert len(roles) == 3  # RoleDef defaults to the three PowerSchool roles
            assert api.get_json("/ws/v1/metadata")["metadata"]["district_name"] == "Fixture USD"
        finally:
            api.close()
