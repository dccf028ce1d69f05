"""A small staged history with figures known in advance, for the Districts page tests.

Written through the staging models (the same tables the pipeline writes), on SQLite or
PostgreSQL: three import runs of ``north``, one run of ``south`` waiting for approval,
and nothing for ``east`` (configured, never run).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sis_learning.staging.changes import ChangeSet, LearningSnapshot
from sis_learning.staging.ledger import GradePushScore
from sis_learning.staging.quality import RejectedRow, ValidationResult, ValidationWarning
from sis_learning.staging.reviews import MassChangeReview
from sis_learning.staging.runs import SyncRun

NOW = datetime(2026, 12, 5, 12, 0, 0)  # the unit tests' clock; a live page passes the real one


def counts(n_users: int, n_classes: int, n_rosters: int, **load: dict[str, int]) -> dict:
    values = {
        "students": {"extracted": n_users, "rejected": 1},
        "learning_users": {"transformed": n_users},
        "learning_classes": {"transformed": n_classes},
        "learning_rosters": {"transformed": n_rosters},
        "learning_parent_links": {"transformed": 1},
    }
    for entity, changes in load.items():
        values.setdefault(f"learning_{entity}", {}).update(changes)
    return values


def running_run(district_id: str, run_id: str, stage: str, now: datetime, counts: dict | None = None) -> dict:
    """A sync_runs row of an import still going (in ``stage``), as the pipeline writes it."""
    return dict(
        district_id=district_id,
        run_id=run_id,
        dag_id=f"sis_import__{district_id}",
        kind="import",
        status="running",
        stage=stage,
        started_at=now,
        counts=counts or {},
        durations={},
    )


def write_history(engine, now: datetime = NOW) -> None:
    """The history as of ``now``: the dashboard in a browser reads it against the real clock."""
    runs = [
        dict(
            district_id="north",
            run_id="r1",
            dag_id="sis_import__north",
            kind="import",
            status="success",
            stage="finished",
            started_at=now - timedelta(days=2),
            finished_at=now - timedelta(days=2, seconds=-90),
            counts=counts(10, 2, 8, users={"created": 10}, classes={"created": 2}, rosters={"created": 8}),
            durations={},
            error=None,
            validation_docs=None,
        ),
        dict(
            district_id="north",
            run_id="r2",
            dag_id="sis_import__north",
            kind="import",
            status="failed",
            stage="safety_guard",
            started_at=now - timedelta(days=1),
            finished_at=now - timedelta(days=1, seconds=-30),
            counts=counts(11, 2, 9),
            durations={},
            error="Safety stop for district north",
            validation_docs=None,
        ),
        dict(
            district_id="north",
            run_id="r3",
            dag_id="sis_import__north",
            kind="import",
            status="success",
            stage="finished",
            started_at=now - timedelta(hours=3),
            finished_at=now - timedelta(hours=3, seconds=-75),
            counts=counts(
                12,
                2,
                9,
                users={"created": 2, "updated": 1, "deactivated": 1, "unchanged": 8},
                rosters={"removed": 3, "created": 1},
                parent_links={"refused": 1},
            ),
            durations={},
            error=None,
            validation_docs="/nonexistent/north/r3",
        ),
        dict(
            district_id="north",
            run_id="g1",
            dag_id="grade_push__north",
            kind="grade_push",
            status="success",
            stage="finished",
            started_at=now - timedelta(hours=1),
            finished_at=now - timedelta(minutes=59),
            counts={},
            durations={},
            error=None,
            validation_docs=None,
        ),
        dict(
            district_id="south",
            run_id="s1",
            dag_id="sis_import__south",
            kind="import",
            status="running",
            stage="safety_guard",
            started_at=now - timedelta(minutes=20),
            finished_at=None,
            counts=counts(40, 4, 30),
            durations={},
            error=None,
            validation_docs=None,
        ),
    ]
    snapshot = []
    for index, (school, active) in enumerate(
        [("100", True), ("100", True), ("100", True), ("200", True), ("200", True), ("200", False)]
    ):
        snapshot.append(
            dict(
                district_id="north",
                entity="users",
                key=f"S:{index}",
                organization_id=school,
                content_hash="h",
                payload="{}",
                active=active,
                run_id="r3",
                updated_at=now,
            )
        )
    snapshot += [
        dict(
            district_id="north",
            entity="classes",
            key=f"c{i}",
            organization_id="100",
            content_hash="h",
            payload="{}",
            active=True,
            run_id="r3",
            updated_at=now,
        )
        for i in range(2)
    ]
    snapshot += [
        dict(
            district_id="north",
            entity="rosters",
            key=f"c0:S:{i}",
            organization_id="100",
            content_hash="h",
            payload="{}",
            active=i < 4,
            run_id="r3",
            updated_at=now,
        )
        for i in range(6)
    ]
    snapshot += [
        dict(
            district_id="north",
            entity="parent_links",
            key="P:1:S:1",
            organization_id=None,
            content_hash="h",
            payload="{}",
            active=True,
            run_id="r3",
            updated_at=now,
        )
    ]
    snapshot += [
        dict(
            district_id="north",
            entity="organizations",
            key=school,
            organization_id=school,
            content_hash="h",
            payload=json.dumps({"organization_id": school, "name": name}),
            active=True,
            run_id="r3",
            updated_at=now,
        )
        for school, name in (("100", "Lincoln High"), ("200", "Adams Elementary"))
    ]
    snapshot += [
        dict(
            district_id="south",
            entity="users",
            key=f"T:{i}",
            organization_id="9",
            content_hash="h",
            payload="{}",
            active=True,
            run_id="s0",
            updated_at=now,
        )
        for i in range(3)
    ]
    changes = []
    for school, action, rows in (
        ("100", "create", 2),
        ("100", "deactivate", 1),
        ("200", "update", 1),
        ("200", "unchanged", 5),
        ("100", "remove", 3),
    ):
        for row in range(rows):
            changes.append(
                dict(
                    district_id="north",
                    run_id="r3",
                    entity="rosters" if action == "remove" else "users",
                    key=f"{action}{row}",
                    organization_id=school,
                    action=action,
                    status="accepted",
                    content_hash="h",
                    payload="{}",
                    learning_result=None,
                    reason=None,
                )
            )
    changes += [
        dict(
            district_id="north",
            run_id="r2",
            entity="users",
            key=f"x{i}",
            organization_id="100",
            action="deactivate",
            status="pending",
            content_hash="h",
            payload="{}",
            learning_result=None,
            reason=None,
        )
        for i in range(9)
    ]
    rejected = [
        dict(
            district_id="north",
            run_id="r3",
            stage="validate",
            entity="students",
            source_id=str(4000 + i),
            rule="login_present",
            reason=f"student {4000 + i} has no username",
            blocks=None,
            caused_by=None,
            created_at=now,
        )
        for i in range(3)
    ]
    rejected += [
        dict(
            district_id="north",
            run_id="r3",
            stage="validate",
            entity="sections",
            source_id="77",
            rule="teacher_reference",
            reason="section 77's teacher was rejected",
            blocks=None,
            caused_by="staff:5",
            created_at=now,
        )
    ]
    rejected += [
        dict(
            district_id="north",
            run_id="r2",
            stage="validate",
            entity="students",
            source_id=str(i),
            rule="login_present",
            reason="no username",
            blocks=None,
            caused_by=None,
            created_at=now,
        )
        for i in range(7)
    ]
    warnings = [
        dict(
            district_id="north",
            run_id="r3",
            stage="validate",
            entity="students",
            source_id=str(5000 + i),
            rule="email_format",
            field="email",
            value="not-an-address",
            reason="not an email address",
            action="cleared",
            created_at=now,
        )
        for i in range(2)
    ]
    results = [
        dict(
            district_id="north",
            run_id="r3",
            entity="students",
            suite="students",
            success=True,
            evaluated=12,
            failed=0,
            results_path=None,
            data_docs_path="/nonexistent/index.html",
            created_at=now,
        )
    ]

    def score(
        student: str,
        pushed_ago: timedelta | None,
        latency: float,
        status: str = "pushed",
        updated_ago: timedelta | None = None,
    ) -> dict:
        pushed_at = now - pushed_ago if pushed_ago is not None else None
        return dict(
            district_id="north",
            gradable_id="g1",
            student_id=student,
            assignment_section_id="a",
            score="9",
            version=1,
            cursor=1,
            status=status,
            refused_version=2 if status == "refused" else None,
            message="refused" if status == "refused" else None,
            run_id="g1",
            pushed_at=pushed_at,
            changed_at=pushed_at - timedelta(seconds=latency) if pushed_at else None,
            updated_at=now - (updated_ago if updated_ago is not None else pushed_ago),
        )

    scores = [score(f"s{i}", timedelta(hours=1 + i), latency) for i, latency in enumerate((1.0, 2.0, 3.0, 4.0, 10.0))]
    scores.append(score("old", timedelta(days=2), 100.0))  # outside the 24 hours
    scores += [score(f"r{i}", None, 0, status="refused", updated_ago=timedelta(hours=2)) for i in range(2)]
    scores.append(score("r-old", None, 0, status="refused", updated_ago=timedelta(days=3)))
    reviews = [
        dict(
            district_id="south",
            run_id="s1",
            status="waiting",
            fingerprint="f" * 64,
            rows=3,
            findings=[{"kind": "mass_removal", "entity": "users", "organization_id": "9", "rows": 3}],
            message="Safety stop",
            created_at=now - timedelta(minutes=10),
            decided_at=None,
            decided_by=None,
            task_id="load.approve_mass_changes_2",  # asked again: the change set changed after the first ask
        ),
        dict(
            district_id="north",
            run_id="r2",
            status="rejected",
            fingerprint="e" * 64,
            rows=9,
            findings=[],
            message="Safety stop",
            created_at=now - timedelta(days=1),
            decided_at=now - timedelta(hours=20),
            decided_by="admin",
            task_id="load.approve_mass_changes",
        ),
    ]
    with engine.begin() as connection:
        for model, rows in (
            (SyncRun, runs),
            (LearningSnapshot, snapshot),
            (ChangeSet, changes),
            (RejectedRow, rejected),
            (ValidationWarning, warnings),
            (ValidationResult, results),
            (GradePushScore, scores),
            (MassChangeReview, reviews),
        ):
            connection.execute(model.__table__.insert(), rows)
