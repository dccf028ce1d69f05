"""The tasks a stopped run waits in: the standard provider's human-in-the-loop approval, fed from staging.

``load.approve_mass_changes`` (then ``_2`` and ``_3``) of every import DAG. When the
safety guard found nothing (or the run was approved by its ``approve_mass_changes``
parameter, or is a preview) each returns at once. Otherwise the first shows the review
(``sis_learning.approval``: per school the figures and examples, the whole change set per
entity) as an Airflow "Required Action" with the two answers Approve and Reject, and the
run waits: on Airflow 3.3+ the task is parked in ``awaiting_input`` (no worker slot, no
triggerer), for at most the district's ``safety.approval_timeout_hours`` (enforced by the
scheduler).

The answer, in ``execute_complete``: Approve is recorded only when the change set is still
the one shown; else nothing is approved and the next approval task asks again with the new
figures. Airflow keeps the first request a task wrote (its subject and body stay through
the task's retries and clears), so a task never re-asks with other figures: each ask needs
a task of its own, and after the last one a change set that changed again fails the run.
Reject, or no answer in time, records that and skips what follows (the load); the report
then emails the district.

Imported by the DAG file at parse time: light imports only.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

# The tasks that ask, in order (in the DAG's load group, chained before the load): a later one asks
# only when the change set changed after the one before had asked.
APPROVAL_TASK_IDS = ("approve_mass_changes", "approve_mass_changes_2", "approve_mass_changes_3")


class MassChangeApprovalOperator(ApprovalOperator):
    """Wait for a person to approve the mass changes the safety guard stopped (or return at once)."""

    # Subject and body are written from staging when the task runs, never rendered as templates
    # (they hold school ids and examples).
    template_fields = ()
    ui_color = "#fde68a"

    def __init__(self, *, district_id: str, district_name: str, last_ask: bool, **kwargs: Any) -> None:
        super().__init__(
            subject=f"{district_name}: approve the changes the safety guard stopped?",
            body=None,
            ignore_downstream_trigger_rules=False,  # Reject skips what follows; the report (all done) still runs
            fail_on_reject=False,
            **kwargs,
        )
        self.district_id = district_id
        self.last_ask = last_ask

    def execute(self, context: Any) -> Any:
        from sis_learning import import_tasks
        from sis_learning.approval import ChangeSetKeptChanging

        if (context.get("params") or {}).get("preview"):
            self.log.info("A preview run never waits for approval: its safety findings are in the preview report")
            return {"decision": "not_needed", "preview": True}
        request = import_tasks.request_approval(self.district_id, context["run_id"])
        if request is None:
            self.log.info("No approval needed: the safety guard found nothing, or this change set is approved")
            return {"decision": "not_needed"}
        self.subject, self.body = request["subject"], request["body"]
        if not self._request_shows_this(context):
            if self.last_ask:
                raise ChangeSetKeptChanging(
                    "The change set changed again after the run's last approval task had asked: nothing was loaded. "
                    "Trigger the DAG again when PowerSchool holds what should be imported."
                )
            self.log.warning(
                "This task already asked about another change set (Airflow keeps a task's first request): "
                "the next approval task asks about this one (review %s)",
                request["review_id"],
            )
            return {"decision": "asked_in_next_task", "review_id": request["review_id"]}
        import_tasks.approval_asked(self.district_id, context["run_id"], request["review_id"], self.task_id)
        self.log.warning(
            "Waiting for a person to approve or reject %d change(s) (review %s) in the Airflow UI: "
            "Required Actions, or this task's page",
            request["rows"],
            request["review_id"],
        )
        from airflow.sdk.exceptions import TaskAwaitingInput

        try:
            return super().execute(context)  # writes the request (already there: kept), then parks the task
        except TaskAwaitingInput as waiting:  # the review it answers travels with the task
            raise TaskAwaitingInput(
                method_name=waiting.method_name,
                kwargs={**(waiting.kwargs or {}), "review_id": request["review_id"]},
                timeout=waiting.timeout,
            ) from None

    def _request_shows_this(self, context: Any) -> bool:
        """Write this task's request and say whether Airflow shows this subject and body for it.

        Airflow stores one request per task of a run: the first written stays (through retries
        and clears, the request moves to the new try), so a later write with other figures is
        not shown. The answer to the write is the request Airflow keeps.
        """
        from airflow.sdk.execution_time.comms import CreateHITLDetailPayload
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        kept = SUPERVISOR_COMMS.send(
            msg=CreateHITLDetailPayload(
                ti_id=context["task_instance"].id,
                options=self.options,
                subject=self.subject,
                body=self.body,
                defaults=self.defaults,
                params=self.serialized_params,
                multiple=self.multiple,
                assigned_users=[],
            )
        )
        if kept is None or not hasattr(kept, "body"):  # an Airflow that does not answer with it: assume shown
            self.log.warning("Airflow did not say which request it keeps for this task; assuming this one")
            return True
        return (kept.subject, kept.body) == (self.subject, self.body)

    def execute_complete(self, context: Any, event: dict[str, Any], review_id: int | None = None) -> Any:
        from sis_learning import import_tasks
        from sis_learning.approval import CHANGED, REJECTED, TIMED_OUT, ChangeSetKeptChanging

        timed_out = event.get("error_type") == "timeout"
        if "error" in event and not timed_out:
            self.process_trigger_event_error(event)  # raises
        if timed_out:
            approved, responded_by = None, None
        else:
            chosen = list(event.get("chosen_options") or [])
            self.validate_chosen_options(chosen)
            approved = chosen == [self.APPROVE]
            responded_by = (event.get("responded_by_user") or {}).get("name")
        outcome = import_tasks.record_approval_answer(
            self.district_id, context["run_id"], approved, responded_by, review_id
        )
        self.hitl_summary_extra.update({"decision": outcome["decision"], "review_id": outcome.get("review_id")})
        if outcome["decision"] == CHANGED:
            message = "The change set changed since it was shown (the diff ran again): nothing was approved or loaded."
            if self.last_ask:
                raise ChangeSetKeptChanging(f"{message} This was the run's last approval task: trigger it again.")
            self.log.warning("%s The next approval task asks again with the new figures.", message)
            return outcome
        if outcome["decision"] in (REJECTED, TIMED_OUT):
            self.log.warning(
                "%s: nothing is loaded; the report emails the district",
                "Rejected" if outcome["decision"] == REJECTED else "Nobody answered in time",
            )
            following = [task for task in context["task"].get_direct_relatives(upstream=False) if not task.is_teardown]
            self.skip(ti=context["ti"], tasks=following)  # raises: what follows is skipped, this task succeeded
        self.log.info("Approved by %s: the load sends exactly the change set that was shown", responded_by)
        return outcome
