"""PowerSchoolHook paging against a scripted server: what a real server may do that the sandbox does not.

Counts that drift mid-run (rows added or removed between /count and the pages), a server
that ignores the page parameter, a server that clamps the page size below what metadata
advertises, every empty-page shape, single-object pages. Each must end with every row
exactly once and a finite number of requests.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from sis_learning.hooks.http_client import RetryPolicy
from sis_learning.hooks.powerschool import (
    MAX_PAGES_PAST_COUNT,
    PageSizeTooSmallError,
    PowerSchoolHook,
    as_list,
    id_string,
    normalise_lists,
    parse_count,
    query_records,
    table_records,
    v1_records,
)
from tests.hooks.scripted_server import Answer, scripted_server

FAST = RetryPolicy(max_retries=3, base_delay_seconds=0.01, max_delay_seconds=0.02)


@pytest.fixture(scope="module")
def tls_directory(tmp_path_factory):
    return tmp_path_factory.mktemp("tls")


def _token_or_metadata(path: str, page_size: int) -> Answer | None:
    """The OAuth token and the metadata (student page size) every fake server answers alike."""
    if path == "/oauth/access_token":
        return Answer(200, {"access_token": "tok", "token_type": "Bearer", "expires_in": "3600"})
    if path == "/ws/v1/metadata":
        return Answer(200, {"metadata": {"student_max_page_size": page_size}})
    return None


class FakeDistrict:
    """Serves /oauth, /ws/v1/metadata and one student list whose behaviour a test bends."""

    def __init__(
        self,
        rows: int,
        *,
        page_size: int = 100,
        reported: int | None = None,
        clamp_to: int | None = None,
        ignore_page: bool = False,
        empty_shape: object = "missing",
        grow_after_count: int = 0,
    ):
        self.rows = [{"id": 1000 + n, "name": {"first_name": f"S{n}"}} for n in range(rows)]
        self.page_size = page_size
        self.reported = reported
        self.clamp_to = clamp_to
        self.ignore_page = ignore_page
        self.empty_shape = empty_shape
        self.grow_after_count = grow_after_count
        self.page_requests: list[int] = []

    def __call__(self, seen, _number):
        url = urlsplit(seen.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        answer = _token_or_metadata(url.path, self.page_size)
        if answer is not None:
            return answer
        if url.path.endswith("/student/count"):
            count = len(self.rows) if self.reported is None else self.reported
            if self.grow_after_count:
                self.rows += [{"id": 9000 + n} for n in range(self.grow_after_count)]
                self.grow_after_count = 0
            return Answer(200, {"resource": {"count": count}})
        if url.path.endswith("/student"):
            page = 1 if self.ignore_page else int(query["page"])
            self.page_requests.append(int(query["page"]))
            size = min(int(query["pagesize"]), self.clamp_to or 10**9)
            chunk = self.rows[(page - 1) * size : page * size]
            if not chunk:
                if self.empty_shape == "missing":
                    return Answer(200, {"students": {"@expansions": "x"}})
                if self.empty_shape == "whole_empty_string":
                    return Answer(200, {"students": ""})
                return Answer(200, {"students": {"student": self.empty_shape}})
            return Answer(200, {"students": {"student": chunk[0] if len(chunk) == 1 else chunk}})
        return Answer(404, {"message": "no such path"})


def read_everything(server, **options):
    hook = PowerSchoolHook.from_settings(
        server.base_url, "client", "secret", server.ca_bundle, retry_policy=FAST, **options
    )
    listing = hook.v1_listing("5", "/ws/v1/school/5/student", wrapper="students", item="student", resource="student")
    ids = [record["id"] for _listing, page in hook.read_pages([listing]) for record in page]
    return hook, listing, ids


@pytest.mark.parametrize("empty_shape", ["missing", None, "", [], {}, "whole_empty_string"])
def test_every_row_once_whatever_the_empty_page_looks_like(tls_directory, empty_shape):
    district = FakeDistrict(300, empty_shape=empty_shape)  # an exact multiple: the last page is empty
    with scripted_server(district, tls_directory) as server:
        _hook, listing, ids = read_everything(server, max_concurrent_requests=3)
    assert sorted(ids) == [1000 + n for n in range(300)]
    assert listing.reported_count == 300 and not listing.mismatch
    assert sorted(district.page_requests) == [1, 2, 3, 4]  # 3 full pages + 1 empty page ends it


def test_short_last_page_needs_no_extra_request(tls_directory):
    district = FakeDistrict(250)
    with scripted_server(district, tls_directory) as server:
        hook, listing, ids = read_everything(server)
    assert len(ids) == len(set(ids)) == 250
    assert sorted(district.page_requests) == [1, 2, 3]
    assert listing.requests == 4  # the count + 3 pages, the minimum
    assert hook.stats.requests["GET /ws/v1/school/{id}/student"] == 3


def test_single_record_page_is_an_object(tls_directory):
    district = FakeDistrict(101)  # page 2 holds one record, sent as an object
    with scripted_server(district, tls_directory) as server:
        _hook, _listing, ids = read_everything(server)
    assert sorted(ids) == [1000 + n for n in range(101)]


def test_count_drifting_up_mid_run_reads_the_new_rows_and_records_the_mismatch(tls_directory):
    district = FakeDistrict(200, grow_after_count=130)  # /count says 200, 330 rows by the time pages are read
    with scripted_server(district, tls_directory) as server:
        _hook, listing, ids = read_everything(server)
    assert len(ids) == len(set(ids)) == 330
    assert listing.mismatch and listing.reported_count == 200
    assert "/count reported 200, read 330" in listing.note


def test_count_drifting_down_stops_on_the_empty_page(tls_directory):
    district = FakeDistrict(120, reported=400)
    with scripted_server(district, tls_directory) as server:
        _hook, listing, ids = read_everything(server)
    assert len(ids) == 120
    assert listing.mismatch
    assert max(district.page_requests) == 4  # the pages the count called for, no more


def test_server_ignoring_the_page_parameter_does_not_loop_forever(tls_directory):
    district = FakeDistrict(500, reported=200, ignore_page=True)  # every page is page 1, always full
    with scripted_server(district, tls_directory) as server:
        _hook, listing, ids = read_everything(server)
    assert len(ids) == 100 and len(set(ids)) == 100
    # pages 1 and 2 are read concurrently; whichever comes second repeats the first, and the
    # paging stops at the first page past the count that brings nothing new
    assert listing.duplicates in (100, 200)
    assert "repeated rows" in listing.note
    assert len(district.page_requests) <= 3 < MAX_PAGES_PAST_COUNT


def test_clamped_page_size_is_detected_and_paged_through(tls_directory):
    district = FakeDistrict(450, page_size=200, clamp_to=100)  # metadata says 200, server sends 100
    with scripted_server(district, tls_directory) as server:
        _hook, listing, ids = read_everything(server)
    assert sorted(ids) == [1000 + n for n in range(450)]
    assert not listing.mismatch
    assert "pages of 100 rows" in listing.note


def test_page_size_under_100_fails_naming_the_setting(tls_directory):
    with scripted_server(FakeDistrict(10, page_size=50), tls_directory) as server:
        hook = PowerSchoolHook.from_settings(server.base_url, "client", "secret", server.ca_bundle, retry_policy=FAST)
        with pytest.raises(PageSizeTooSmallError) as raised:
            hook.max_page_size("student")
    message = str(raised.value)
    assert "50" in message and "at least 100" in message and "Data Configuration" in message


def test_quirk_parsers():
    assert as_list(None) == as_list("") == as_list({}) == as_list([]) == []
    assert as_list({"a": 1}) == [{"a": 1}]
    assert id_string(3001001) == "3001001" and id_string(12.0) == "12" and id_string("TestID") == "TestID"
    assert id_string("") is None
    record = normalise_lists({"school_affiliations": {"school_affiliation": {"school_id": 5}}, "addresses": ""})
    assert record == {"school_affiliations": {"school_affiliation": [{"school_id": 5}]}, "addresses": ""}
    assert v1_records({"students": {"student": {"id": 1}}}, "students", "student") == [{"id": 1}]
    assert v1_records({"students": ""}, "students", "student") == []
    assert v1_records(None, "students", "student") == []
    assert table_records({"record": {"id": 4, "tables": {"CC": {"DCID": "47"}}}}, "cc") == [{"dcid": "47"}]
    assert query_records({"record": [{"guardian.guardianid": "5", "username": "p"}]}) == [
        {"guardianid": "5", "username": "p"}
    ]
    assert parse_count({"resource": {"count": "423"}}) == 423 and parse_count({"count": 7}) == 7
    assert parse_count(json.loads('{"x": 1}')) is None


def test_pages_in_memory_are_bounded_while_the_consumer_is_slow(tls_directory):
    district = FakeDistrict(2000)  # 20 pages of 100
    with scripted_server(district, tls_directory) as server:
        hook = PowerSchoolHook.from_settings(
            server.base_url, "client", "secret", server.ca_bundle, retry_policy=FAST, max_concurrent_requests=2
        )
        listing = hook.v1_listing(
            "5", "/ws/v1/school/5/student", wrapper="students", item="student", resource="student"
        )
        consumed = 0
        most_ahead = 0
        for _listing, page in hook.read_pages([listing]):
            consumed += 1
            # pages fetched but not yet handed over: never more than the window (2 x concurrency)
            most_ahead = max(most_ahead, len(district.page_requests) - consumed)
            time.sleep(0.03)  # a slow staging write
            assert len(page) == 100
    assert consumed == 20
    assert most_ahead <= 4


# --------------------------------------------------------------------------- page by page (many listings)


class FakeSchools:
    """One student list per school (``sizes[school]`` rows); the same bends as FakeDistrict."""

    def __init__(
        self,
        sizes: dict[str, int],
        *,
        page_size: int = 100,
        clamp_to: int | None = None,
        ignore_page: bool = False,
        grow_after_page_1: dict[str, int] | None = None,
    ):
        self.rows = {school: [{"id": int(school) * 10_000 + n} for n in range(size)] for school, size in sizes.items()}
        self.page_size = page_size
        self.clamp_to = clamp_to
        self.ignore_page = ignore_page
        self.grow_after_page_1 = dict(grow_after_page_1 or {})
        self.page_requests: list[tuple[str, int]] = []
        self.count_requests: list[str] = []

    def __call__(self, seen, _number):
        url = urlsplit(seen.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        answer = _token_or_metadata(url.path, self.page_size)
        if answer is not None:
            return answer
        school = url.path.split("/")[4]
        if url.path.endswith("/student/count"):
            self.count_requests.append(school)
            return Answer(200, {"resource": {"count": len(self.rows[school])}})
        page = 1 if self.ignore_page else int(query["page"])
        self.page_requests.append((school, int(query["page"])))
        size = min(int(query["pagesize"]), self.clamp_to or 10**9)
        chunk = self.rows[school][(page - 1) * size : page * size]
        if page == 1 and self.grow_after_page_1.get(school):
            grown = self.grow_after_page_1.pop(school)
            self.rows[school] += [{"id": int(school) * 10_000 + 5_000 + n} for n in range(grown)]
        return Answer(200, {"students": {"student": chunk[0] if len(chunk) == 1 else chunk} if chunk else ""})


def read_schools_page_by_page(server, schools):
    hook = PowerSchoolHook.from_settings(
        server.base_url, "client", "secret", server.ca_bundle, retry_policy=FAST, max_concurrent_requests=3
    )
    listings = {
        school: hook.v1_listing(
            school, f"/ws/v1/school/{school}/student", wrapper="students", item="student", resource="student"
        )
        for school in schools
    }
    ids: dict[str, list[int]] = {school: [] for school in schools}
    for listing, page in hook.read_pages(listings.values(), page_by_page=True):
        ids[listing.scope] += [record["id"] for record in page]
    return hook, listings, ids


def test_page_by_page_listings_that_fit_in_one_page_need_no_count(tls_directory):
    sizes = {"1": 30, "2": 250, "3": 100, "4": 0}
    district = FakeSchools(sizes)
    with scripted_server(district, tls_directory) as server:
        hook, listings, ids = read_schools_page_by_page(server, sizes)
    for school, size in sizes.items():
        assert sorted(ids[school]) == [int(school) * 10_000 + n for n in range(size)]
    # a full page 1 (school 2) shows the server does not clamp: no /count at all, and
    # every listing costs the pages its rows need (an exact multiple: one empty page more)
    assert district.count_requests == []
    assert sorted(district.page_requests) == [("1", 1), ("2", 1), ("2", 2), ("2", 3), ("3", 1), ("3", 2), ("4", 1)]
    assert hook.stats.total_requests == 2 + 7  # token, metadata and the pages
    assert all(listing.reported_count is None and not listing.mismatch for listing in listings.values())


def test_page_by_page_counts_only_the_longest_short_listings(tls_directory):
    sizes = {"1": 130, "2": 170, "3": 170, "4": 12}
    district = FakeSchools(sizes, page_size=250)
    with scripted_server(district, tls_directory) as server:
        _hook, listings, ids = read_schools_page_by_page(server, sizes)
    assert {school: len(found) for school, found in ids.items()} == sizes
    # no page 1 was full: the longest (170) could be a clamp, so those two are counted, and
    # their count agrees; the shorter ones cannot have been clamped
    assert sorted(district.count_requests) == ["2", "3"]
    assert listings["2"].reported_count == listings["3"].reported_count == 170
    assert not any(listing.mismatch for listing in listings.values())
    assert listings["1"].reported_count is None and listings["4"].reported_count is None


def test_page_by_page_pages_under_100_rows_are_ends(tls_directory):
    sizes = {"1": 30, "2": 70, "3": 70}
    district = FakeSchools(sizes)
    with scripted_server(district, tls_directory) as server:
        _hook, listings, ids = read_schools_page_by_page(server, sizes)
    assert {school: len(found) for school, found in ids.items()} == sizes
    # no plugin the integration accepts serves pages under 100 rows: nothing to count
    assert district.count_requests == [] and len(district.page_requests) == 3
    assert all(listing.reported_count is None and listing.note is None for listing in listings.values())


def test_page_by_page_clamped_page_size_is_detected_and_paged_through(tls_directory):
    sizes = {"1": 450, "2": 100, "3": 60, "4": 0}
    district = FakeSchools(sizes, page_size=200, clamp_to=100)  # metadata says 200, server sends 100
    with scripted_server(district, tls_directory) as server:
        _hook, listings, ids = read_schools_page_by_page(server, sizes)
    for school, size in sizes.items():
        assert sorted(ids[school]) == [int(school) * 10_000 + n for n in range(size)], school
    assert sorted(district.count_requests) == ["1", "2"]  # the two whose page 1 held 100 rows
    assert "pages of 100 rows" in listings["1"].note and not listings["1"].mismatch
    assert sorted(page for school, page in district.page_requests if school == "1") == [1, 2, 3, 4, 5]
    assert listings["2"].note is None and listings["2"].reported_count == 100


def test_page_by_page_reads_rows_added_mid_read(tls_directory):
    sizes = {"1": 250, "2": 40}
    district = FakeSchools(sizes, grow_after_page_1={"1": 130})  # 380 rows by the time page 2 is read
    with scripted_server(district, tls_directory) as server:
        _hook, _listings, ids = read_schools_page_by_page(server, sizes)
    assert len(ids["1"]) == len(set(ids["1"])) == 380
    assert sorted(ids["2"]) == [20_000 + n for n in range(40)]


def test_page_by_page_server_ignoring_the_page_parameter_does_not_loop_forever(tls_directory):
    sizes = {"1": 500, "2": 300}
    district = FakeSchools(sizes, ignore_page=True)  # every page is page 1, always full
    with scripted_server(district, tls_directory) as server:
        _hook, listings, ids = read_schools_page_by_page(server, sizes)
    assert {school: len(set(found)) for school, found in ids.items()} == {"1": 100, "2": 100}
    assert all("repeated rows" in listing.note for listing in listings.values())
    assert len(district.page_requests) == 4  # page 1 and a page 2 that brought nothing new, per school
