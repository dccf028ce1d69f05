"""Exactly once across crashes and reruns, 412 retried, 409 recorded and emailed, bursts batched."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from sis_learning.hooks.powerteacher import PowerTeacherClient
from sis_learning.staging import ledger
from sis_learning.staging.ledger import GradePushAssignment, GradePushScore


class Crash(RuntimeError):
    """The worker died here (the process is gone before the next line runs)."""


class CrashAfterCreate(PowerTeacherClient):
    """The real client; the process dies right after PowerTeacher created the assignment."""

    def create_assignment(self, users_dcid, assignment):
        super().create_assignment(users_dcid, assignment)
        raise Crash("killed between the POST and the ledger update")


class CrashAfterPut(PowerTeacherClient):
    """The real client; the process dies right after PowerTeacher accepted the scores."""

    def put_scores(self, users_dcid, scores):
        super().put_scores(users_dcid, scores)
        raise Crash("killed between the PUT and the ledger update")


def test_a_crash_between_create_and_ledger_never_makes_a_second_assignment(world_on_both):
    world = world_on_both  # SQLite, then PostgreSQL
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradable = world.gradable(section, "Unit test: crash safety", 10)
    world.score(gradable, section.students[0], "8")
    world.score(gradable, section.students[1], "9")

    with pytest.raises(Crash):
        world.push("run_1", powerteacher=CrashAfterCreate(world.powerschool_hook()))
    assert len(world.assignments(section)) == 1  # PowerTeacher has it
    with world.engine.connect() as connection:
        [row] = connection.execute(select(GradePushAssignment.__table__)).mappings().all()
    assert row["status"] == "creating" and row["assignment_id"] is None  # the intent, recorded before the POST
    assert ledger.read_cursor(world.engine, world.config.district_id) == 0

    summary = world.push("run_1")  # the retry of the same run
    [entry] = world.assignments(section)  # still exactly one
    assert summary.counts["assignments_adopted"] == 1 and summary.counts["assignments_created"] == 0
    assert world.scores_by_name(section) == {
        (entry["name"], section.students[0]): "8",
        (entry["name"], section.students[1]): "9",
    }
    with world.engine.connect() as connection:
        [row] = connection.execute(select(GradePushAssignment.__table__)).mappings().all()
    assert row["status"] == "created" and row["adopted"] is True
    assert row["assignment_section_id"] == str(entry["assignmentsectionid"])


def test_a_crash_between_put_and_ledger_rewrites_the_same_scores_once_more(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradable = world.gradable(section, "Quiz: crash after put", 10)
    world.score(gradable, section.students[0], "4")
    with pytest.raises(Crash):
        world.push("run_1", powerteacher=CrashAfterPut(world.powerschool_hook()))
    with world.engine.connect() as connection:
        assert connection.execute(select(GradePushScore.__table__)).first() is None
    assert ledger.read_cursor(world.engine, world.config.district_id) == 0

    summary = world.push("run_1")
    [entry] = world.assignments(section)
    assert summary.counts["assignments_created"] == 0 and len(world.assignments(section)) == 1
    assert [(score["actualscoreentered"], score["writes"]) for score in entry["_assignmentscores"]] == [("4", 2)]

    # A rerun with nothing new sends nothing to PowerTeacher.
    client = world.powerteacher()
    again = world.push("run_2", powerteacher=client)
    assert again.counts["changes_read"] == 0 and client.stats.total_requests == 0


def test_412_resubmit_is_retried_with_backoff_until_every_score_is_written(world, powerschool):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradables = [world.gradable(section, f"Resubmit {index}", 10) for index in range(4)]
    for index, gradable in enumerate(gradables):
        for student in section.students:
            world.score(gradable, student, str(index + 1))
    client = world.powerteacher()
    powerschool.configure(resubmit_rate=0.5, fault_seed=7)
    try:
        summary = world.push(powerteacher=client, scores_per_put=2)
    finally:
        powerschool.configure(resubmit_rate=0.0)
    stats = client.stats.as_dict()
    assert stats["retries"].get("PUT /ws/xte/score", 0) >= 1, stats
    assert summary.counts["scores_pushed"] == 4 * len(section.students) and summary.counts["scores_refused"] == 0
    written = world.scores_by_name(section)
    assert written == {
        (f"Resubmit {index}", student): str(index + 1) for index in range(4) for student in section.students
    }


def test_409_is_recorded_with_powerteachers_message_emailed_once_and_holds_nothing_back(world, monkeypatch):
    from sandbox.smtp import running_smtp

    section, other = world.pool.take(2)
    stranger = next(student for student in other.students if student not in section.students)
    world.import_sections([section], extra_students={section.section_dcid: [stranger]})
    gradable = world.gradable(section, "Test with refusals", 10)
    good, bad_value = section.students[0], section.students[1]
    world.score(gradable, good, "10")
    world.score(gradable, bad_value, "A+")  # not a score PowerTeacher accepts for a POINTS assignment
    world.score(gradable, stranger, "7")  # on the Learning roster, not enrolled in the PowerSchool section

    with running_smtp() as smtp:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{world.config.notifications.smtp_connection_id.upper()}", smtp.airflow_connection_uri()
        )
        summary = world.push("run_1", notify=True)
        [message] = smtp.mailbox.wait_for(1)
    assert world.scores_by_name(section) == {("Test with refusals", good): "10"}
    assert summary.counts["scores_pushed"] == 1 and summary.counts["scores_refused"] == 2
    with world.engine.connect() as connection:
        refused = {
            row["student_id"]: row
            for row in connection.execute(
                select(GradePushScore.__table__).where(GradePushScore.status == "refused")
            ).mappings()
        }
    assert set(refused) == {bad_value, stranger}
    assert "not a score" in refused[bad_value]["message"]
    assert "not enrolled" in refused[stranger]["message"]
    assert refused[stranger]["refused_version"] == 1 and refused[stranger]["version"] == 0
    assert message["To"] == "grades@district.example.org"
    assert "refused 2 score(s)" in message["Subject"]
    body = message.get_body(("html",)).get_content()
    assert "not enrolled" in body and "A+" in body and world.learning.tokens[world.domain] not in body

    # The teacher fixes the score: the next change is pushed and clears the refusal.
    world.score(gradable, bad_value, "6")
    world.push("run_2")
    assert world.scores_by_name(section)[("Test with refusals", bad_value)] == "6"
    with world.engine.connect() as connection:
        status = connection.scalar(select(GradePushScore.status).where(GradePushScore.student_id == bad_value))
    assert status == "pushed"


def test_a_burst_is_batched_per_teacher_in_few_requests(world):
    sections = world.pool.take(3)
    world.import_sections(sections)
    changes = 0
    for section in sections:
        for index in range(6):
            gradable = world.gradable(section, f"Burst {section.section_dcid}-{index}", 10)
            for student in section.students:
                world.score(gradable, student, str(index))
                changes += 1
    client = world.powerteacher()
    summary = world.push(powerteacher=client, page_size=1000)
    assert summary.counts["scores_pushed"] == changes
    requests = client.stats.as_dict()["requests"]
    teachers = {section.users_dcid for section in sections}
    assert requests["PUT /ws/xte/score"] == len(teachers)  # one PUT per teacher for the whole page
    assert requests["POST /ws/xte/section/assignment"] == 6 * len(sections)
    # Categories are read once per teacher and school year (Terms.ID // 100): two of a
    # teacher's sections in different years are two reads.
    teacher_years = {(section.users_dcid, int(section.term_local_id) // 100) for section in sections}
    assert requests["GET /ws/xte/teacher_category"] == len(teacher_years)


# --------------------------------------------------------------------------- the new kinds of change


class CrashAfterUpdate(PowerTeacherClient):
    def update_assignment(self, users_dcid, assignment_id, assignment, *, update_scores):
        super().update_assignment(users_dcid, assignment_id, assignment, update_scores=update_scores)
        raise Crash("killed between the assignment PUT and the ledger update")


class CrashAfterDelete(PowerTeacherClient):
    def delete_assignment(self, users_dcid, assignment_id):
        super().delete_assignment(users_dcid, assignment_id)
        raise Crash("killed between the DELETE and the ledger update")


class CrashAfterLegacyCreate(PowerTeacherClient):
    def ptg_create_assignment(self, section_dcid, assignment):
        super().ptg_create_assignment(section_dcid, assignment)
        raise Crash("killed between the legacy POST and the ledger update")


class CrashAfterLegacyPut(PowerTeacherClient):
    def ptg_put_scores(self, assignment_id, scores):
        super().ptg_put_scores(assignment_id, scores)
        raise Crash("killed between the legacy score PUT and the ledger update")


def _assignment(world):
    with world.engine.connect() as connection:
        return connection.execute(select(GradePushAssignment.__table__)).mappings().one()


def test_a_crash_after_an_assignment_update_puts_the_same_assignment_once_more(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradable = world.gradable(section, "Poem", 10)
    world.score(gradable, section.students[0], "8")
    world.push("run_1")
    world.learning.update_gradable(world.domain, gradable["id"], title="Poem (recited)", total_points=12)
    with pytest.raises(Crash):
        world.push("run_2", powerteacher=CrashAfterUpdate(world.powerschool_hook()))
    assert _assignment(world)["revision"] == 1  # not recorded
    summary = world.push("run_2")  # the retry: PUTs the whole assignment again (idempotent), records it
    [entry] = world.assignments(section)
    assert (entry["name"], entry["totalpointvalue"]) == ("Poem (recited)", 12)
    assert summary.counts["assignments_updated"] == 1 and summary.counts["assignments_update_refused"] == 0
    assert (_assignment(world)["revision"], _assignment(world)["total_points"]) == (2, "12")
    assert world.scores_by_name(section) == {("Poem (recited)", section.students[0]): "8"}
    assert world.push("run_3").counts["assignments_updated"] == 0


def test_a_crash_after_a_delete_finds_the_assignment_gone_and_records_it(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradable = world.gradable(section, "Draft gradable", 10)
    world.push("run_1")
    world.learning.delete_gradable(world.domain, gradable["id"])
    with pytest.raises(Crash):
        world.push("run_2", powerteacher=CrashAfterDelete(world.powerschool_hook()))
    assert world.assignments(section) == [] and _assignment(world)["status"] == "created"
    summary = world.push("run_2")  # DELETE again: 404, already gone
    assert summary.counts["assignments_deleted"] == 1 and not summary.refusals
    assert _assignment(world)["status"] == "deleted"


def test_a_crash_after_clearing_clears_once_more_and_never_resurrects_the_score(world):
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    gradable = world.gradable(section, "Cleared after crash", 10)
    world.score(gradable, student, "3")
    world.push("run_1")
    world.score(gradable, student, None)
    with pytest.raises(Crash):
        world.push("run_2", powerteacher=CrashAfterPut(world.powerschool_hook()))
    summary = world.push("run_2")
    [entry] = world.assignments(section)
    assert [(score["actualscoreentered"], score["writes"]) for score in entry["_assignmentscores"]] == [(None, 3)]
    assert summary.counts["scores_cleared"] == 1
    with world.engine.connect() as connection:
        row = connection.execute(select(GradePushScore.__table__)).mappings().one()
    assert (row["score"], row["version"]) == (None, 2)
    assert world.push("run_3").counts["put_requests"] == 0


def test_a_crash_between_a_legacy_create_and_the_ledger_never_makes_a_second_assignment(world):
    section = world.pool.take(1)[0]
    world.import_sections([section], legacy=True)
    gradable = world.gradable(section, "Legacy crash quiz", 10)
    world.score(gradable, section.students[0], "9")
    with pytest.raises(Crash):
        world.push("run_1", powerteacher=CrashAfterLegacyCreate(world.powerschool_hook()))
    assert len(world.ptg_assignments(section)) == 1 and _assignment(world)["status"] == "creating"
    summary = world.push("run_1")
    [assignment] = world.ptg_assignments(section)  # adopted by name in the section, not made twice
    assert summary.counts["assignments_adopted"] == 1 and summary.counts["assignments_created"] == 0
    assert _assignment(world)["assignment_id"] == str(assignment["id"])
    assert world.ptg_scores_by_name(section) == {("Legacy crash quiz", section.students[0]): "9"}


def test_a_crash_after_a_legacy_score_put_writes_the_same_score_once_more(world):
    section = world.pool.take(1)[0]
    world.import_sections([section], legacy=True)
    gradable = world.gradable(section, "Legacy put crash", 10)
    world.score(gradable, section.students[0], "5")
    with pytest.raises(Crash):
        world.push("run_1", powerteacher=CrashAfterLegacyPut(world.powerschool_hook()))
    world.push("run_1")
    [assignment] = world.ptg_assignments(section)
    assert [(score["score_entered"], score["writes"]) for score in assignment["_assignment_scores"]] == [("5", 2)]
    assert world.push("run_2").counts["put_requests"] == 0


def test_overlapping_push_runs_write_each_change_once_and_in_order(world):
    """Airflow may start a second run while one pushes (no max_active_runs=1): the ledger lease serialises them."""
    import threading

    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradables = [world.gradable(section, f"Overlap {index}", 10) for index in range(5)]
    for gradable in gradables:
        for student in section.students:
            world.score(gradable, student, "1")
            world.score(gradable, student, "2")  # two versions: the newer must win
    results, errors = {}, []

    def run(run_id):
        try:
            results[run_id] = world.push(run_id, page_size=7)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"overlap_{index}",)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    entries = world.assignments(section)
    assert len(entries) == 5  # each gradable's assignment made once
    scores = [score for entry in entries for score in entry["_assignmentscores"]]
    assert len(scores) == 5 * len(section.students) and {score["actualscoreentered"] for score in scores} == {"2"}
    # Each version is written at most once (a page boundary between "1" and "2" writes both, in order;
    # both in one page writes only the newer), and every write PowerTeacher saw is one a run recorded.
    assert all(score["writes"] <= 2 for score in scores)
    pushed = sum(summary.counts["scores_pushed"] for summary in results.values())
    assert sum(score["writes"] for score in scores) == pushed
    assert sum(summary.counts["assignments_created"] for summary in results.values()) == 5


def test_a_run_waits_for_the_lease_and_gives_up_when_it_is_never_released(world):
    from sis_learning.grade_push import LeaseBusy

    section = world.pool.take(1)[0]
    world.import_sections([section])
    world.score(world.gradable(section, "Lease quiz", 10), section.students[0], "7")
    assert ledger.acquire_lease(world.engine, world.config.district_id, "someone_else", 60)
    with pytest.raises(LeaseBusy):
        world.push("run_waiting", lease_wait_seconds=0.5)
    assert world.assignments(section) == []  # nothing written while another run holds the lease
    ledger.release_lease(world.engine, world.config.district_id, "someone_else")
    # an expired lease (its run died) is taken over
    assert ledger.acquire_lease(world.engine, world.config.district_id, "dead_run", 0.01)
    import time

    time.sleep(0.05)
    summary = world.push("run_after")
    assert summary.counts["scores_pushed"] == 1


class SlowCreate(PowerTeacherClient):
    """The real client; PowerTeacher takes ``seconds`` per assignment POST (a long page)."""

    def __init__(self, hook, seconds, on_create=None):
        super().__init__(hook)
        self.seconds = seconds
        self.on_create = on_create
        self.creates = 0

    def create_assignment(self, users_dcid, assignment):
        created = super().create_assignment(users_dcid, assignment)
        self.creates += 1
        time.sleep(self.seconds)
        if self.on_create is not None:
            self.on_create(self.creates)
        return created


def test_a_long_page_renews_the_lease_so_no_other_run_takes_it_over(world):
    """A page that takes longer than the lease (slow POSTs) renews it before each write: another
    run trying to take the lease mid-page never gets it (without renewal it would, after 2 s)."""
    section = world.pool.take(1)[0]
    world.import_sections([section])
    for index in range(5):
        world.score(world.gradable(section, f"Long page {index}", 10), section.students[0], "6")
    attempts = []

    def intruder(_count):  # another run of the district, mid-page
        attempts.append(ledger.acquire_lease(world.engine, world.config.district_id, "intruder", 60))

    client = SlowCreate(world.powerschool_hook(), 0.8, on_create=intruder)
    summary = world.push("run_long", powerteacher=client, workers=1, lease_seconds=2.0)
    assert client.creates == 5 and attempts == [False] * 5  # 4 s of POSTs under a 2 s lease, never taken over
    assert summary.counts["lease_renewals"] >= 4 and summary.counts["scores_pushed"] == 5
    assert ledger.lease_holder(world.engine, world.config.district_id) is None  # released at the end


def test_a_run_whose_lease_was_taken_over_stops_writing_and_each_change_is_still_written_once(world_on_both):
    """Run A stalls mid-page past its lease (after PowerTeacher created an assignment, before its
    ledger row says so); run B takes the lease over and pushes everything. When A resumes it
    finds the lease gone before its next write (LeaseLost): it writes nothing more and never
    moves the cursor. Each assignment exists once and each score was written once."""
    from sis_learning.grade_push import LeaseLost

    world = world_on_both  # SQLite, then PostgreSQL
    section = world.pool.take(1)[0]
    world.import_sections([section])
    gradables = [world.gradable(section, f"Takeover {index}", 10) for index in range(4)]
    for gradable in gradables:
        for student in section.students:
            world.score(gradable, student, "3")
    runs = {}

    def stall_then_b_takes_over(count):
        if count == 2:  # the second POST is done, its ledger row still says "creating"
            time.sleep(1.2)  # A's 1 s lease runs out
            runs["B"] = world.push("run_B")

    client = SlowCreate(world.powerschool_hook(), 0, on_create=stall_then_b_takes_over)
    with pytest.raises(LeaseLost, match="lost the lease"):
        world.push("run_A", powerteacher=client, workers=1, lease_seconds=1.0)
    # A wrote nothing after its lease was gone: its two POSTs only (no score PUT, no third POST)
    assert {
        request: count
        for request, count in client.stats.requests.items()
        if not request.startswith("GET") and "oauth" not in request
    } == {"POST /ws/xte/section/assignment": 2}
    b = runs["B"].counts
    assert b["assignments_adopted"] == 1 and b["assignments_created"] == 2  # A's second POST adopted, not repeated
    entries = world.assignments(section)
    assert sorted(entry["name"] for entry in entries) == [f"Takeover {index}" for index in range(4)]
    scores = [score for entry in entries for score in entry["_assignmentscores"]]
    assert len(scores) == 4 * len(section.students)
    assert {(score["actualscoreentered"], score["writes"]) for score in scores} == {("3", 1)}
    assert b["scores_pushed"] == len(scores)
    newest = max(int(change["cursor"]) for change in world.learning_hook().gradebook_changes(0, 1000)["changes"])
    assert ledger.read_cursor(world.engine, world.config.district_id) == newest
    with world.engine.connect() as connection:
        status, error = connection.execute(text("SELECT status, error FROM sync_runs WHERE run_id = 'run_A'")).one()
    assert status == "failed" and "lost the lease" in error
    again = world.push("run_C")
    assert again.counts["put_requests"] == 0 and again.counts["assignments_created"] == 0


class CrashAfterLegacyUpdate(PowerTeacherClient):
    def ptg_update_assignment(self, assignment_id, assignment):
        super().ptg_update_assignment(assignment_id, assignment)
        raise Crash("killed between the legacy assignment PUT and the ledger update")


class CrashAfterLegacyDelete(PowerTeacherClient):
    def ptg_delete_assignment(self, assignment_id):
        super().ptg_delete_assignment(assignment_id)
        raise Crash("killed between the legacy DELETE and the ledger update")


def test_a_crash_after_a_legacy_assignment_update_puts_the_same_assignment_once_more(world):
    section = world.pool.take(1)[0]
    world.import_sections([section], legacy=True)
    gradable = world.gradable(section, "Legacy essay", 10)
    world.score(gradable, section.students[0], "8")
    world.push("run_1")
    world.learning.update_gradable(world.domain, gradable["id"], title="Legacy essay (final)", total_points=20)
    with pytest.raises(Crash):
        world.push("run_2", powerteacher=CrashAfterLegacyUpdate(world.powerschool_hook()))
    assert _assignment(world)["revision"] == 1  # not recorded
    summary = world.push("run_2")  # the retry PUTs the whole assignment again (idempotent) and records it
    [assignment] = world.ptg_assignments(section)
    assert (assignment["name"], assignment["points_possible"], assignment["updates"]) == ("Legacy essay (final)", 20, 2)
    assert summary.counts["assignments_updated"] == 1 and _assignment(world)["revision"] == 2
    assert world.ptg_scores_by_name(section) == {("Legacy essay (final)", section.students[0]): "8"}
    assert world.push("run_3").counts["assignments_updated"] == 0


def test_a_crash_after_a_legacy_delete_finds_the_assignment_gone_and_records_it(world):
    section = world.pool.take(1)[0]
    world.import_sections([section], legacy=True)
    gradable = world.gradable(section, "Legacy draft", 10)
    world.push("run_1")
    assert len(world.ptg_assignments(section)) == 1
    world.learning.delete_gradable(world.domain, gradable["id"])
    with pytest.raises(Crash):
        world.push("run_2", powerteacher=CrashAfterLegacyDelete(world.powerschool_hook()))
    assert world.ptg_assignments(section) == [] and _assignment(world)["status"] == "created"
    summary = world.push("run_2")  # DELETE again: 404, already gone
    assert summary.counts["assignments_deleted"] == 1 and not summary.refusals
    assert _assignment(world)["status"] == "deleted"


def test_a_crash_after_a_legacy_clear_clears_once_more_and_never_resurrects_the_score(world):
    section = world.pool.take(1)[0]
    world.import_sections([section], legacy=True)
    student = section.students[0]
    gradable = world.gradable(section, "Legacy cleared", 10)
    world.score(gradable, student, "6")
    world.push("run_1")
    world.score(gradable, student, None)
    with pytest.raises(Crash):
        world.push("run_2", powerteacher=CrashAfterLegacyPut(world.powerschool_hook()))
    summary = world.push("run_2")
    [assignment] = world.ptg_assignments(section)
    assert [(score["score_entered"], score["writes"]) for score in assignment["_assignment_scores"]] == [(None, 3)]
    assert summary.counts["scores_cleared"] == 1
    with world.engine.connect() as connection:
        row = connection.execute(select(GradePushScore.__table__)).mappings().one()
    assert (row["score"], row["version"]) == (None, 2)
    assert world.push("run_3").counts["put_requests"] == 0


def test_a_linked_class_survives_crashes_after_create_and_after_put_with_each_write_once(world):
    """The linked class's gradables and scores (re-emitted at the link, or new) follow the same ledger rules."""
    section = world.pool.take(1)[0]
    world.import_sections([section])
    student = section.students[0]
    own = f"LRN-crash-{section.section_dcid}"
    world.learning.upsert(
        world.domain, "classes", [{**world.class_row(section), "class_id": own, "name": "A teacher's own class"}]
    )
    world.learning.upsert(
        world.domain, "rosters", [{"class_id": own, "user_type": "S", "user_id": student, "role": "student"}]
    )
    early = world.gradable_in(own, "Made before the link", 10)
    world.learning.set_score(world.domain, early["id"], student, "4")
    world.learning.link_class(world.domain, own, section.section_dcid)
    later = world.gradable_in(own, "Made after the link, no score yet", 10)

    # one gradable at a time (workers=1): the process dies right after the first POST
    with pytest.raises(Crash):
        world.push("run_1", powerteacher=CrashAfterCreate(world.powerschool_hook()), workers=1)
    assert len(world.assignments(section)) == 1
    assert ledger.read_cursor(world.engine, world.config.district_id) == 0
    summary = world.push("run_1", workers=1)  # the retry adopts the first, creates the second
    assert summary.counts["assignments_adopted"] == 1 and summary.counts["assignments_created"] == 1
    assert sorted(entry["name"] for entry in world.assignments(section)) == [
        "Made after the link, no score yet",
        "Made before the link",
    ]
    with world.engine.connect() as connection:
        rows = connection.execute(select(GradePushAssignment.__table__)).mappings().all()
    assert {(row["class_id"], row["status"]) for row in rows} == {(section.section_dcid, "created")}

    # a score of the linked class: the process dies right after PowerTeacher took it
    world.learning.set_score(world.domain, later["id"], student, "9")
    with pytest.raises(Crash):
        world.push("run_2", powerteacher=CrashAfterPut(world.powerschool_hook()))
    summary = world.push("run_2")
    assert summary.counts["changes_via_linked_class"] == 1 and summary.counts["scores_pushed"] == 1
    written = {
        (entry["name"], str(score["studentsdcid"])): (score["actualscoreentered"], score["writes"])
        for entry in world.assignments(section)
        for score in entry["_assignmentscores"]
    }
    assert written == {
        ("Made before the link", student): ("4", 1),
        ("Made after the link, no score yet", student): ("9", 2),
    }  # the same value once more
    again = world.push("run_3")
    assert again.counts["changes_read"] == 0 and again.counts["put_requests"] == 0
