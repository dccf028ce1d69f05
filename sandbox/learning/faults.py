"""Failures on demand, so tests can prove the pipeline loses and duplicates nothing when Learning breaks.

Sandbox only (not part of the Learning contract, not in the OpenAPI document). An admin
call arms a plan for one domain: the next ``count`` import writes (batch upserts,
deactivations, removals) answer ``status`` instead of their result, either *before*
applying anything (a refused request: 429, 500, 503) or *after* committing (the
"lost answer": Learning applied the batch but the client never heard, so a retry must
be harmless). Plans live in memory only and count down to nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pydantic import Field

from sandbox.learning.schemas import StrictModel


class FaultPlanBody(StrictModel):
    count: int = Field(default=1, ge=0, le=1000, description="How many import writes fail; 0 disarms.")
    status: int = Field(default=503, ge=400, le=599)
    after_apply: bool = Field(default=False, description="Commit the batch, then answer the failure (a lost answer).")
    retry_after: int | None = Field(default=None, ge=0, le=3600, description="Seconds, sent as Retry-After.")


@dataclass(frozen=True)
class Fault:
    status: int
    after_apply: bool
    retry_after: int | None

    @property
    def message(self) -> str:
        when = "after applying the batch" if self.after_apply else "before applying anything"
        return f"injected fault (sandbox): answering {self.status} {when}"

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, tuple[Fault, int]] = {}

    def arm(self, domain: str, plan: FaultPlanBody) -> None:
        with self._lock:
            if plan.count == 0:
                self._plans.pop(domain, None)
            else:
                self._plans[domain] = (Fault(plan.status, plan.after_apply, plan.retry_after), plan.count)

    def take(self, domain: str) -> Fault | None:
        """The fault for this write, if one is armed (counting it down)."""
        with self._lock:
            armed = self._plans.get(domain)
            if armed is None:
                return None
            fault, remaining = armed
            if remaining <= 1:
                del self._plans[domain]
            else:
                self._plans[domain] = (fault, remaining - 1)
            return fault

    def remaining(self, domain: str) -> int:
        with self._lock:
            return self._plans.get(domain, (None, 0))[1]
