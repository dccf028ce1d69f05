"""The naive baseline: how most PowerSchool clients extract (deliberately simple, extract only).

    echo '<spec JSON>' | python bench/naive_client.py

One ``requests`` session, one request at a time, page size 100 everywhere, paging until a
short page, and **one section_enrollment call per section** (no CC table). It reads the
same data as our extract (schools; per school: terms, courses, sections from the import
start year, staff, active students; the enrollments of each of those sections; the
SectionTeacher table; the guardian PowerQuery) and parses every page, but stages nothing.

It can run on a subset (``fraction`` < 1): the first ``ceil(fraction x schools)`` schools,
and the same share of the pages of the two district-wide reads. It reports, per kind of
request, the requests, seconds and rows it saw, so ``bench/run.py`` can extrapolate to the
whole district (and label the figure as extrapolated). Credentials come on stdin.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from typing import Any

import requests

PAGE_SIZE = 100
GUARDIAN_QUERY = "com.pearson.core.guardian.student_guardian_detail"


def records(body: Any, plural: str, singular: str) -> list[dict[str, Any]]:
    """The list in a v1 answer, whatever its quirk shape (object for one, "", null, ...)."""
    wrapper = body.get(plural) if isinstance(body, dict) else None
    items = wrapper.get(singular) if isinstance(wrapper, dict) else None
    if isinstance(items, dict):
        return [items] if items else []  # {} is one of the empty page's shapes, not one empty record
    return items if isinstance(items, list) else []


class NaiveClient:
    def __init__(self, base_url: str, client_id: str, client_secret: str, ca_bundle: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.verify = ca_bundle
        self.session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment replaces the sandbox CA
        token = self.session.post(
            f"{self.base_url}/oauth/access_token",
            auth=(client_id, client_secret),
            data={"grant_type": "client_credentials"},
            headers={"Accept": "application/json"},
            timeout=60,
        ).json()["access_token"]
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self.kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"requests": 0, "seconds": 0.0, "rows": 0})

    def _call(self, kind: str, method: str, path: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        for _attempt in range(5):  # the one concession: a throttled request waits and tries again
            response = self.session.request(method, f"{self.base_url}{path}", timeout=120, **kwargs)
            self.kinds[kind]["requests"] += 1
            if response.status_code != 429:
                break
            time.sleep(float(response.headers.get("Retry-After", 1)))
        response.raise_for_status()
        body = response.json()
        self.kinds[kind]["seconds"] += time.perf_counter() - started
        return body

    def list_all(self, kind: str, path: str, plural: str, singular: str, **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._call(kind, "GET", path, params={**params, "page": page, "pagesize": PAGE_SIZE})
            batch = records(body, plural, singular)
            rows.extend(batch)
            self.kinds[kind]["rows"] += len(batch)
            if len(batch) < PAGE_SIZE:
                return rows
            page += 1

    def table_pages(
        self, kind: str, pages: int | None, method: str, path: str, params: dict[str, Any], body: dict[str, Any] | None
    ) -> int:
        """Read a /ws/schema table or PowerQuery page by page (all pages, or the first ``pages``)."""
        page = 1
        while pages is None or page <= pages:
            answer = self._call(kind, method, path, params={**params, "page": page, "pagesize": PAGE_SIZE}, json=body)
            batch = answer.get("record") if isinstance(answer, dict) else None
            batch = [batch] if isinstance(batch, dict) else (batch if isinstance(batch, list) else [])
            self.kinds[kind]["rows"] += len(batch)
            if len(batch) < PAGE_SIZE:
                break
            page += 1
        return min(page, pages) if pages is not None else page


def run(spec: dict[str, Any]) -> dict[str, Any]:
    client = NaiveClient(spec["base_url"], spec["client_id"], spec["client_secret"], spec["ca_bundle"])
    fraction = float(spec.get("fraction", 1.0))
    year = int(spec["import_start_year"])
    started = time.perf_counter()
    schools = client.list_all("schools", "/ws/v1/district/school", "schools", "school")
    schools = sorted(schools, key=lambda school: int(school["id"]))
    chosen = schools[: max(1, math.ceil(fraction * len(schools)))]
    sections_seen = 0
    for school in chosen:
        school_id = school["id"]
        client.list_all("terms", f"/ws/v1/school/{school_id}/term", "terms", "term")
        client.list_all("courses", f"/ws/v1/school/{school_id}/course", "courses", "course")
        sections = client.list_all(
            "sections", f"/ws/v1/school/{school_id}/section", "sections", "section", q=f"term.start_year=ge={year}"
        )
        client.list_all(
            "staff", f"/ws/v1/school/{school_id}/staff", "staffs", "staff", expansions="emails,school_affiliations"
        )
        client.list_all(
            "students",
            f"/ws/v1/school/{school_id}/student",
            "students",
            "student",
            expansions="school_enrollment,contact_info",
        )
        for section in sections:  # the expensive part: one call (or more) per section
            client.list_all(
                "section_enrollments",
                f"/ws/v1/section/{section['id']}/section_enrollment",
                "section_enrollments",
                "section_enrollment",
            )
            sections_seen += 1
    district_pages: dict[str, dict[str, int]] = {}
    for kind, method, path, params, body in (
        ("section_teachers", "GET", "/ws/schema/table/sectionteacher", {"projection": "*"}, None),
        ("guardians", "POST", f"/ws/schema/query/{GUARDIAN_QUERY}", {}, {}),
    ):
        total_pages = None
        if fraction < 1:
            # Not part of the naive client's time: only to know how far to extrapolate.
            count_answer = client.session.request(
                method, f"{client.base_url}{path}/count", timeout=120, params=params, json=body
            )
            total = int(count_answer.json()["count"])
            total_pages = total // PAGE_SIZE + 1
        wanted = None if total_pages is None else max(1, math.ceil(fraction * total_pages))
        read = client.table_pages(kind, wanted, method, path, params, body)
        district_pages[kind] = {"pages_read": read, "total_pages": total_pages if total_pages else read}
    seconds = time.perf_counter() - started
    return {
        "fraction": fraction,
        "schools_total": len(schools),
        "schools_read": len(chosen),
        "sections_read": sections_seen,
        "seconds": round(seconds, 2),
        "requests": int(sum(item["requests"] for item in client.kinds.values())),
        "kinds": {
            kind: {"requests": int(item["requests"]), "seconds": round(item["seconds"], 3), "rows": int(item["rows"])}
            for kind, item in client.kinds.items()
        },
        "district_pages": district_pages,
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.stdin.read()))))
