"""The deferrable watch on Learning's gradebook that starts grade push within seconds.

Source document: "Grade Push Frequency: Immediate". :class:`GradebookChangeTrigger` is an
Airflow *event trigger* (``BaseEventTrigger``): an ``AssetWatcher`` on the district's
``learning_gradebook__<district_id>`` asset runs it in the **triggerer**, an asyncio
process where thousands of such watches cost no worker slot. Every
``poll_interval_seconds`` it asks Learning's change feed
(``GET /api/v1/gradebook/changes?after=<cursor>``) whether anything changed after the
district's ledger cursor (``grade_push_cursor``, which the push advances); when something
did, it yields a ``TriggerEvent``, Airflow records an asset event, and the scheduler
starts ``grade_push__<district_id>``, whose task pushes every change after the cursor.

Why an event trigger rather than a deferrable sensor in a continuous DAG: nothing waits in
a DAG run between changes (no run per idle poll, no task resumed on a worker just to find
nothing), each event starts a run at once (runs may overlap; the push's ledger lease keeps
their writes one at a time and in order), and the watch is part of the DAG definition, so
it starts with the triggerer and follows the district config. The feed announces
gradable, score and class-link changes alike: each is work for the push.

The trigger does not push and does not move the cursor: it only says "there is work".
It remembers the newest cursor it has announced so it does not fire again for the same
changes (a backlog is read to its end, up to ``PROBE_MAX_PAGES`` pages, and announced
once, so a burst starts one run, not one per page); if the ledger cursor has not moved
``rearm_seconds`` after an announcement (a push that failed all its retries), it announces
again. The feed and the ledger are read with the project's one HTTP client layer
(``LearningHook``) and staging layer, in a worker thread (``asyncio.to_thread``) so the
triggerer's event loop never blocks. Errors are logged (never with the token) and polling
goes on with a backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

CLASS_PATH = "sis_learning.triggers.GradebookChangeTrigger"
PROBE_LIMIT = 500
PROBE_MAX_PAGES = 20  # a backlog of up to 10,000 entries is one announcement
MAX_ERROR_BACKOFF_SECONDS = 60.0


class GradebookChangeTrigger(BaseEventTrigger):
    """Fires when Learning's gradebook change feed has entries after the district's ledger cursor.

    Args: ``district_id`` the district whose ledger cursor to compare with, ``learning_conn_id``
    the Airflow connection of its Learning domain, ``poll_interval_seconds`` how often the feed
    is read, ``rearm_seconds`` after how long the same unconsumed entries fire again (a push run
    that never moved the cursor).
    """

    def __init__(
        self,
        district_id: str,
        learning_conn_id: str,
        poll_interval_seconds: float = 2.0,
        rearm_seconds: float = 300.0,
    ) -> None:
        super().__init__()
        self.district_id = district_id
        self.learning_conn_id = learning_conn_id
        self.poll_interval_seconds = float(poll_interval_seconds)
        self.rearm_seconds = float(rearm_seconds)
        self._hook: Any = None
        self._engine: Any = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # No secret here: the token stays in the Airflow connection, the staging URL in the environment.
        return (
            CLASS_PATH,
            {
                "district_id": self.district_id,
                "learning_conn_id": self.learning_conn_id,
                "poll_interval_seconds": self.poll_interval_seconds,
                "rearm_seconds": self.rearm_seconds,
            },
        )

    # ---- one poll (runs in a worker thread)

    def _ledger_cursor(self) -> int:
        from sis_learning.staging import ledger
        from sis_learning.staging.base import create_all, get_engine

        if self._engine is None:
            self._engine = create_all(get_engine())
        return ledger.read_cursor(self._engine, self.district_id)

    def _probe(self, after: int) -> dict[str, Any] | None:
        """The feed after ``after``: None when empty, else what the event reports."""
        if self._hook is None:
            from sis_learning.hooks.http_client import RetryPolicy
            from sis_learning.hooks.learning import LearningHook

            # Short retries: the poll loop itself tries again, so one poll never hangs for minutes.
            self._hook = LearningHook(
                self.learning_conn_id,
                timeout_seconds=10.0,
                retry_policy=RetryPolicy(
                    max_retries=1, base_delay_seconds=0.2, max_delay_seconds=1.0, max_total_wait_seconds=5.0
                ),
            )
        body = self._hook.gradebook_changes(after, PROBE_LIMIT)
        changes = body.get("changes") or []
        if not changes:
            return None
        first_changed_at = changes[0].get("changed_at")
        count, newest = len(changes), max(int(change["cursor"]) for change in changes)
        # A backlog (a burst, or changes made while the DAG was paused) is announced once, through its
        # newest entry, not 500 entries per poll: each event starts a run, and every run but the first
        # would only wait for the lease, holding a worker and a PowerSchool pool slot. The run started
        # reads the feed to its end anyway. The chase is bounded (PROBE_MAX_PAGES): a larger backlog
        # is announced in steps of that size.
        pages = 1
        while body.get("has_more") and pages < PROBE_MAX_PAGES:
            body = self._hook.gradebook_changes(newest, PROBE_LIMIT)
            more = body.get("changes") or []
            if not more:
                break
            pages += 1
            count += len(more)
            newest = max(newest, *(int(change["cursor"]) for change in more))
        return {
            "district_id": self.district_id,
            "after": after,
            "through": newest,
            "changes": count,
            "has_more": bool(body.get("has_more")),
            "first_changed_at": first_changed_at,
        }

    def poll_once(self, announced_through: int | None) -> tuple[int, dict[str, Any] | None]:
        """(ledger cursor, event payload or None): what one poll finds (sync; tests call it)."""
        cursor = self._ledger_cursor()
        after = max(cursor, announced_through or 0)
        return cursor, self._probe(after)

    # ---- the loop (runs in the triggerer's event loop)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        announced_through: int | None = None
        announced_at_cursor: int | None = None
        announced_at = 0.0
        failures = 0
        self.log.info(
            "Watching Learning's gradebook for district %s every %.1fs", self.district_id, self.poll_interval_seconds
        )
        while True:
            try:
                cursor, payload = await asyncio.to_thread(self.poll_once, announced_through)
                failures = 0
            except Exception as error:  # keep watching: Learning or the staging DB may be back soon
                failures += 1
                delay = min(MAX_ERROR_BACKOFF_SECONDS, self.poll_interval_seconds * (2 ** min(failures, 6)))
                self.log.warning(
                    "Gradebook poll for district %s failed (%s: %s); next try in %.0fs",
                    self.district_id,
                    type(error).__name__,
                    str(error)[:300],
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if announced_through is not None and cursor >= announced_through:
                announced_through = None  # the push caught up with everything announced
            elif (
                announced_through is not None
                and cursor == announced_at_cursor
                and time.monotonic() - announced_at > self.rearm_seconds
            ):
                self.log.warning(
                    "Ledger cursor of district %s still at %d %.0fs after announcing changes up to %d: "
                    "announcing again",
                    self.district_id,
                    cursor,
                    time.monotonic() - announced_at,
                    announced_through,
                )
                announced_through = None
                cursor, payload = await asyncio.to_thread(self.poll_once, None)
            if payload is not None:
                announced_through = max(announced_through or 0, int(payload["through"]))
                announced_at_cursor = cursor
                announced_at = time.monotonic()
                self.log.info(
                    "District %s: %d change(s) after cursor %d: starting grade push",
                    self.district_id,
                    payload["changes"],
                    payload["after"],
                )
                yield TriggerEvent(payload)
            await asyncio.sleep(self.poll_interval_seconds)
