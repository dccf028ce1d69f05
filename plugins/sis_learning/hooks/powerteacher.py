"""PowerTeacher Pro's ``/ws/xte`` calls for grade push, on top of the PowerSchoolHook.

The source document's grade push writes Learning's gradables and scores into
PowerTeacher Pro (SIS 10.1+): an assignment per gradable in the class's section, then the
scores. ``powerschool-api.md`` ("Grade push: PowerTeacher Pro") gives the calls; every
one carries the acting teacher's ``users_dcid``:

- ``GET /ws/xte/teacher_category?users_dcid=&year_id=``: the teacher's categories;
- ``GET /ws/xte/section/assignment/?users_dcid=&section_ids=``: the section's assignments
  (used to find an assignment a crashed run created but did not record);
- ``POST /ws/xte/section/assignment/?users_dcid=``: 201, the id is the last segment of
  ``Location``, the assignment-section ids a JSON array in ``AssignmentSectionIds``;
- ``PUT /ws/xte/score?users_dcid=``: many scores in one request; they upsert on
  (assignment section, student), the last write wins.

Built by composition: OAuth, the token cache, TLS, the per-host concurrency bound and
the retries (429/5xx and PowerTeacher's 412 "Resubmit", with backoff) all come from
:class:`~sis_learning.hooks.powerschool.PowerSchoolHook`. This class only knows the
paths and the shapes. A 409 (PowerTeacher's validation error) is *not* an exception
here: it comes back as a :class:`Refusal` carrying PowerTeacher's message, so the caller
can record it and carry on with the other scores. Nothing is ever read back into
Learning; the only reads are categories and the section's assignment list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sis_learning.hooks.http_client import ApiError
from sis_learning.hooks.powerschool import PowerSchoolHook, as_list

XTE = "/ws/xte"


@dataclass(frozen=True)
class Refusal:
    """PowerTeacher answered 409: the request's content was refused, with this message."""

    status: int
    message: str
    errors: tuple[dict[str, Any], ...] = ()

    def refused_indexes(self) -> dict[int, str]:
        """Index of each refused item in the request -> PowerTeacher's message about it."""
        found: dict[int, str] = {}
        for error in self.errors:
            index = error.get("index")
            if isinstance(index, int) and not isinstance(index, bool):
                text = error.get("message") or f"{error.get('field', '?')}: {error.get('code', 'invalid')}"
                found[index] = f"{found[index]}; {text}" if index in found else str(text)
        return found


@dataclass(frozen=True)
class CreatedAssignment:
    assignment_id: str
    assignment_section_ids: tuple[str, ...]


def _refusal(response: Any) -> Refusal:
    """PowerTeacher's 409 as a :class:`Refusal`: its message and its per-item ``errors``."""
    try:
        body = response.json()
    except ValueError:
        return Refusal(response.status_code, (response.text or "").strip()[:500] or f"HTTP {response.status_code}")
    if not isinstance(body, dict):
        return Refusal(response.status_code, str(body)[:500])
    errors = tuple(error for error in as_list(body.get("errors")) if isinstance(error, dict))
    message = str(body.get("message") or body.get("error") or f"HTTP {response.status_code}")
    details = "; ".join(str(error.get("message") or error.get("code")) for error in errors[:5])
    if details:
        message = f"{message}: {details}"
    return Refusal(response.status_code, message[:2000], errors)


class PowerTeacherClient:
    """The four PowerTeacher Pro calls grade push makes, as the given teacher."""

    def __init__(self, powerschool: PowerSchoolHook) -> None:
        self.powerschool = powerschool

    @property
    def stats(self):
        return self.powerschool.stats

    # ---- reads

    def teacher_categories(self, users_dcid: str, year_id: str | int | None = None) -> list[dict[str, Any]]:
        """The teacher's categories (``id``, ``name``, ``categorytype``, ``isactive``, ``displayposition``)."""
        params: dict[str, Any] = {"users_dcid": users_dcid}
        if year_id is not None:
            params["year_id"] = year_id
        body = self.powerschool.request_json(
            "GET", f"{XTE}/teacher_category", params=params, kind="GET /ws/xte/teacher_category"
        )
        if isinstance(body, dict):  # tolerate a wrapper object
            body = body.get("teacher_category") or body.get("categories") or body.get("data") or []
        return [dict(item) for item in as_list(body) if isinstance(item, Mapping)]

    def section_assignments(self, users_dcid: str, section_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The assignments of these sections, each with its ``_assignmentsections``."""
        body = self.powerschool.request_json(
            "GET",
            f"{XTE}/section/assignment/",
            params={"users_dcid": users_dcid, "section_ids": ",".join(str(value) for value in section_ids)},
            kind="GET /ws/xte/section/assignment",
        )
        if isinstance(body, dict):
            body = body.get("assignments") or body.get("assignment") or body.get("data") or []
        return [dict(item) for item in as_list(body) if isinstance(item, Mapping)]

    # ---- writes

    def create_assignment(self, users_dcid: str, assignment: Mapping[str, Any]) -> CreatedAssignment | Refusal:
        """POST one assignment; 201 -> its ids, 409 -> a :class:`Refusal`.

        Not idempotent: the hook retries it only when the server proved it did nothing
        (429, 503, connection refused). The caller records its intent first and looks
        the assignment up by name before ever sending it again.
        """
        response = self.powerschool.request(
            "POST",
            f"{XTE}/section/assignment/",
            params={"users_dcid": users_dcid},
            json=dict(assignment),
            headers={"Content-Type": "application/json"},
            expected=(200, 201, 409),
            idempotent=False,
            kind="POST /ws/xte/section/assignment",
        )
        if response.status_code == 409:
            return _refusal(response)
        location = response.headers.get("Location", "").rstrip("/")
        assignment_id = location.rsplit("/", 1)[-1] if location else ""
        try:
            section_ids = tuple(str(value) for value in json.loads(response.headers.get("AssignmentSectionIds") or "[]"))
        except ValueError:
            section_ids = ()
        if not assignment_id or not assignment_id.strip("-").isdigit() or not section_ids:
            raise ApiError(
                response.status_code,
                "PowerTeacher Pro created an assignment but its answer lacks the assignment id (Location header) "
                "or the assignment-section ids (AssignmentSectionIds header); the push cannot record it.",
                response.url,
                method="POST",
            )
        return CreatedAssignment(assignment_id, section_ids)

    def put_scores(self, users_dcid: str, scores: Sequence[Mapping[str, Any]]) -> Refusal | None:
        """PUT many scores in one request; None when accepted, a :class:`Refusal` on 409.

        Idempotent (scores upsert on assignment section and student), so the hook
        retries 412 "Resubmit", 429 and 5xx with backoff.
        """
        response = self.powerschool.request(
            "PUT",
            f"{XTE}/score",
            params={"users_dcid": users_dcid},
            json={"assignment_scores": [dict(score) for score in scores]},
            headers={"Content-Type": "application/json"},
            expected=(200, 201, 204, 409),
            idempotent=True,
            kind="PUT /ws/xte/score",
        )
        if response.status_code == 409:
            return _refusal(response)
        return None
