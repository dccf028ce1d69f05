"""Paging: every row exactly once for any page size up to the maximum; oversize clamped or refused."""

from __future__ import annotations

import pytest

from tests.sandbox.powerschool.conftest import as_list

ALL_STATUSES = "school_enrollment.enroll_status_code==(0,-1,2,3,4)"


def page_through(api, path, key, singular, pagesize, **params):
    seen, page = [], 1
    while True:
        body = api.get_json(path, page=page, pagesize=pagesize, **params)[key]
        items = as_list(body.get(singular) if isinstance(body, dict) else body)
        seen.extend(items)
        if len(items) < pagesize:
            return seen, page
        page += 1


@pytest.mark.parametrize("pagesize", [1, 7, 13, 59, 60, 100])
def test_students_every_row_exactly_once(api, oracle, pagesize):
    seen, pages = page_through(api, "/ws/v1/district/student", "students", "student", pagesize, q=ALL_STATUSES)
    ids = [student["id"] for student in seen]
    assert sorted(ids) == sorted(row["dcid"] for row in oracle.rows("students"))
    assert len(ids) == len(set(ids))
    assert pages == len(ids) // pagesize + 1


@pytest.mark.parametrize("pagesize", [1, 9, 100])
def test_sections_of_each_school_exactly_once(api, oracle, pagesize):
    for school in oracle.rows("schools"):
        seen, _ = page_through(api, f"/ws/v1/school/{school['dcid']}/section", "sections", "section", pagesize)
        expected = [row["dcid"] for row in oracle.rows("sections", "schoolid = ?", (school["school_number"],))]
        assert sorted(section["id"] for section in seen) == sorted(expected)


def test_oversize_page_is_clamped_by_default(api, powerschool):
    powerschool.configure(max_page_sizes={"student": 10})
    body = api.get_json("/ws/v1/district/student", pagesize=50)
    assert len(as_list(body["students"]["student"])) == 10
    assert api.get_json("/ws/v1/metadata")["metadata"]["student_max_page_size"] == 10


def test_oversize_page_is_refused_when_configured(api, powerschool):
    powerschool.configure(max_page_sizes={"student": 10}, oversize_page="refuse")
    response = api.get("/ws/v1/district/student", pagesize=11)
    assert response.status_code == 400
    assert "maximum page size of 10" in response.json()["message"]
    assert api.get("/ws/v1/district/student", pagesize=10).status_code == 200


@pytest.mark.parametrize("params", [{"page": 0}, {"pagesize": -1}, {"page": "two"}])
def test_bad_paging_parameters_are_400(api, params):
    response = api.get("/ws/v1/district/student", **params)
    assert response.status_code == 400
    assert response.json()["message"]


@pytest.mark.parametrize("pagesize", [1, 17, 100, 1000])
def test_cc_table_every_row_exactly_once(api, oracle, pagesize):
    seen, page = [], 1
    while True:
        body = api.get_json("/ws/schema/table/cc", projection="dcid,sectionid", page=page, pagesize=pagesize)
        records = as_list(body.get("record"))
        seen.extend(record["tables"]["cc"]["dcid"] for record in records)
        if len(records) < pagesize:
            break
        page += 1
    assert sorted(seen) == sorted(str(row["dcid"]) for row in oracle.rows("cc"))
    assert len(seen) == len(set(seen))


def test_pages_read_after_a_change_reflect_it(powerschool_writable):
    """A write between two pages must not serve stale page boundaries (the keyset cache is reset)."""
    sandbox, api, store = powerschool_writable
    first = as_list(api.get_json("/ws/schema/table/cc", projection="dcid", page=1, pagesize=10)["record"])
    student = next(store.rows("students", "enroll_status = 0"))
    section = next(store.rows("sections"))
    sandbox.enroll_student(student["dcid"], section["dcid"])
    everything = []
    page = 1
    while True:
        records = as_list(api.get_json("/ws/schema/table/cc", projection="dcid", page=page, pagesize=10).get("record"))
        everything.extend(record["tables"]["cc"]["dcid"] for record in records)
        if len(records) < 10:
            break
        page += 1
    assert everything[:10] == [record["tables"]["cc"]["dcid"] for record in first]
    assert len(everything) == store.count("cc") == len(set(everything))


def test_count_offset_makes_the_count_disagree_with_the_rows(api, powerschool, oracle):
    powerschool.configure(count_offset=3)
    active = oracle.count("students", "enroll_status = 0")
    assert api.get_json("/ws/v1/district/student/count") == {"resource": {"count": active + 3}}
    seen, _ = page_through(api, "/ws/v1/district/student", "students", "student", 100)
    assert len(seen) == active
