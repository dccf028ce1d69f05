"""PowerTeacher's calls for grade push, on top of the PowerSchoolHook: PowerTeacher Pro and the legacy gradebook.

The source document's grade push writes Learning's gradables and scores into
PowerTeacher (SIS 10.1+: PowerTeacher Pro or the PowerTeacher Gradebook): an assignment
per gradable in the class's section, then the scores. ``powerschool-api.md`` ("Grade
push") gives the calls. PowerTeacher Pro (``/ws/xte``; every call carries the acting
teacher's ``users_dcid``):

- ``GET /ws/xte/teacher_category?users_dcid=&year_id=``: the teacher's categories;
- ``GET /ws/xte/section/assignment/?users_dcid=&section_ids=``: the section's assignments
  (used to find an assignment a crashed run created but did not record);
- ``POST /ws/xte/section/assignment/?users_dcid=``: 201, the id is the last segment of
  ``Location``, the assignment-section ids a JSON array in ``AssignmentSectionIds``;
- ``PUT /ws/xte/section/assignment/{id}?users_dcid=[&update_scores=true]``: replaces it;
- ``DELETE /ws/xte/section/assignment/{id}?users_dcid=``: 204, or 412 "Assignment has
  grades associated" (never retried, never forced: grade push does not delete grades);
- ``PUT /ws/xte/score?users_dcid=``: many scores in one request; they upsert on
  (assignment section, student), the last write wins.

The legacy PowerTeacher Gradebook v2 (``/powerschool-ptg-api/v2``): assignment create
(201, id in ``Location``), update and delete, and ``PUT .../assignment/{id}/score``, which
answers 200 with a ``batch_result`` per item (409 for a refused one).

Built by composition: OAuth, the token cache, TLS, the per-host concurrency bound and
the retries (429/5xx and PowerTeacher's 412 "Resubmit" on score writes, with backoff) all
come from :class:`~sis_learning.hooks.powerschool.PowerSchoolHook`. This class only knows
the paths and the shapes. A 409 (PowerTeacher's validation error) or a 412 on a delete is
*not* an exception here: it comes back as a :class:`Refusal` carrying PowerTeacher's
message, so the caller can record it and carry on. Nothing is ever read back into
Learning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sis_learning.hooks.http_client import ApiError
from sis_learning.hooks.powerschool import PowerSchoolHook, as_list

XTE = "/ws/xte"
PTG = "/powerschool-ptg-api/v2"


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


def _location_id(response: Any) -> str:
    location = response.headers.get("Location", "").rstrip("/")
    return location.rsplit("/", 1)[-1] if location else ""


class PowerTeacherClient:
    """The PowerTeacher Pro and PowerTeacher Gradebook calls grade push makes."""

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
            section_ids = tuple(
                str(value) for value in json.loads(response.headers.get("AssignmentSectionIds") or "[]")
            )
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

    def update_assignment(
        self, users_dcid: str, assignment_id: str, assignment: Mapping[str, Any], *, update_scores: bool
    ) -> Refusal | None:
        """PUT the whole assignment again (idempotent); ``update_scores`` when its scoring changes."""
        params: dict[str, Any] = {"users_dcid": users_dcid}
        if update_scores:
            params["update_scores"] = "true"
        response = self.powerschool.request(
            "PUT",
            f"{XTE}/section/assignment/{assignment_id}",
            params=params,
            json=dict(assignment),
            headers={"Content-Type": "application/json"},
            expected=(200, 201, 204, 404, 409),
            idempotent=True,
            kind="PUT /ws/xte/section/assignment/{id}",
        )
        if response.status_code in (404, 409):
            return _refusal(response)
        return None

    def delete_assignment(self, users_dcid: str, assignment_id: str) -> Refusal | None:
        """DELETE (never forced): None when gone (204, or 404: already deleted), a Refusal on 412/409."""
        response = self.powerschool.request(
            "DELETE",
            f"{XTE}/section/assignment/{assignment_id}",
            params={"users_dcid": users_dcid},
            expected=(200, 204, 404, 409, 412),
            idempotent=True,
            kind="DELETE /ws/xte/section/assignment/{id}",
        )
        if response.status_code in (409, 412):
            return _refusal(response)
        return None

    # ---- the legacy PowerTeacher Gradebook (v2)

    def ptg_create_assignment(self, section_dcid: str, assignment: Mapping[str, Any]) -> str | Refusal:
        """POST one assignment to a legacy-gradebook section: its id (``Location``), or a Refusal on 409."""
        response = self.powerschool.request(
            "POST",
            f"{PTG}/section/{section_dcid}/assignment",
            json={"assignment": dict(assignment)},
            headers={"Content-Type": "application/json"},
            expected=(200, 201, 409),
            idempotent=False,
            kind="POST /powerschool-ptg-api/v2/section/{id}/assignment",
        )
        if response.status_code == 409:
            return _refusal(response)
        assignment_id = _location_id(response)
        if not assignment_id.strip("-").isdigit():
            raise ApiError(
                response.status_code,
                "the PowerTeacher Gradebook created an assignment but its answer "
                "lacks the id (Location header); the push cannot record it.",
                response.url,
                method="POST",
            )
        return assignment_id

    def ptg_section_assignments(self, section_dcid: str) -> list[dict[str, Any]]:
        """The assignments of a legacy-gradebook section (to find one a crashed run created but did not record)."""
        body = self.powerschool.request_json(
            "GET",
            f"{PTG}/section/{section_dcid}/assignment",
            kind="GET /powerschool-ptg-api/v2/section/{id}/assignment",
        )
        if isinstance(body, dict):
            wrapper = body.get("assignments")
            body = wrapper.get("assignment") if isinstance(wrapper, dict) else (wrapper or body.get("assignment") or [])
        return [dict(item) for item in as_list(body) if isinstance(item, Mapping)]

    def ptg_assignment(self, assignment_id: str) -> dict[str, Any] | None:
        response = self.powerschool.request(
            "GET",
            f"{PTG}/assignment/{assignment_id}",
            expected=(200, 404),
            kind="GET /powerschool-ptg-api/v2/assignment/{id}",
        )
        if response.status_code == 404:
            return None
        body = response.json()
        return dict(body.get("assignment") or {}) if isinstance(body, dict) else None

    def ptg_update_assignment(self, assignment_id: str, assignment: Mapping[str, Any]) -> Refusal | None:
        response = self.powerschool.request(
            "PUT",
            f"{PTG}/assignment/{assignment_id}",
            json={"assignment": dict(assignment)},
            headers={"Content-Type": "application/json"},
            expected=(200, 201, 204, 404, 409),
            idempotent=True,
            kind="PUT /powerschool-ptg-api/v2/assignment/{id}",
        )
        return _refusal(response) if response.status_code in (404, 409) else None

    def ptg_delete_assignment(self, assignment_id: str) -> Refusal | None:
        response = self.powerschool.request(
            "DELETE",
            f"{PTG}/assignment/{assignment_id}",
            expected=(200, 204, 404, 409, 412),
            idempotent=True,
            kind="DELETE /powerschool-ptg-api/v2/assignment/{id}",
        )
        return _refusal(response) if response.status_code in (409, 412) else None

    def ptg_put_scores(self, assignment_id: str, scores: Sequence[Mapping[str, Any]]) -> dict[int, str]:
        """PUT many scores of one assignment; {index: message} of the items it refused (batch_result 409).

        PowerTeacher Gradebook answers 200 and writes the accepted items; a refused one
        carries ``batch_result.code`` 409 (or another non-2xx code) and a message.
        """
        response = self.powerschool.request(
            "PUT",
            f"{PTG}/assignment/{assignment_id}/score",
            json={"assignment_scores": {"assignment_score": [dict(score) for score in scores]}},
            headers={"Content-Type": "application/json"},
            expected=(200, 201, 204, 409),
            idempotent=True,
            kind="PUT /powerschool-ptg-api/v2/assignment/{id}/score",
        )
        if response.status_code == 409:  # the whole request refused: every item with its message
            refusal = _refusal(response)
            return {index: refusal.message for index in range(len(scores))}
        if response.status_code == 204 or not response.content:
            return {}
        body = response.json()
        wrapper = body.get("assignment_scores") if isinstance(body, dict) else None
        items = as_list(wrapper.get("assignment_score")) if isinstance(wrapper, dict) else []
        # An answer item names its student: map it back to the request's item by student id
        # (by position when it names none).
        positions: dict[str, list[int]] = {}
        for index, score in enumerate(scores):
            positions.setdefault(str((score.get("student") or {}).get("id")), []).append(index)
        refused: dict[int, str] = {}
        for position, item in enumerate(items):
            result = item.get("batch_result") if isinstance(item, dict) else None
            code = result.get("code") if isinstance(result, dict) else None
            try:
                code = int(code) if code is not None else 200
            except (TypeError, ValueError):
                code = 409
            if 200 <= code < 300:
                continue
            student = (item.get("student") or {}).get("id") if isinstance(item, dict) else None
            candidates = positions.get(str(student)) if student is not None else None
            index = candidates.pop(0) if candidates else position
            refused[index] = str((result or {}).get("message") or f"refused ({code})")
        return refused
