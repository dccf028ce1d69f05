"""The teacher's side and the gradebook change feed that grade push reads (source document: Grade Mappings).

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import pytest

from sandbox.learning.testing import LearningError
from tests.sandbox.learning.sample_rows import seed_school


def test_a_score_change_carries_everything_grade_push_needs(domain):
    school = seed_school(domain, students=1)
    domain.settings(grade_push_organizations=["10"])
    gradable = domain.create_gradable(
        "700", "Quiz 1", 20, description="Fractions", due_date="2025-10-03", type="Assessment"
    )
    assert gradable == {
        "id": gradable["id"],
        "class_id": "700",
        "title": "Quiz 1",
        "description": "Fractions",
        "due_date": "2025-10-03",
        "total_points": 20.0,
        "type": "Assessment",
        "revision": 1,
        "deleted": False,
    }
    score = domain.set_score(gradable["id"], "600", "17.5")
    assert (score["score"], score["version"], score["changed"]) == ("17.5", 1, True)

    feed = domain.changes()
    assert feed["has_more"] is False
    created, change = feed["changes"]
    assert (created["event"], created["gradable"], created["revision"], created["student_id"]) == (
        "gradable_created",
        gradable,
        1,
        None,
    )
    assert change["event"] == "score_set" and change["linked_class_id"] is None
    assert feed["next_cursor"] == change["cursor"] > created["cursor"]
    assert change["class_id"] == school["class_id"]
    assert change["organization_id"] == "10"
    assert change["teacher_id"] == "500"
    assert change["year"] == "3500"
    assert change["grade_push_enabled"] is True
    assert change["gradable"] == gradable
    assert (change["student_id"], change["score"], change["version"]) == ("600", "17.5", 1)
    assert change["changed_at"].endswith("Z")


def test_versions_grow_per_gradable_and_student_and_an_unchanged_score_adds_nothing(domain):
    seed_school(domain, students=2)
    quiz = domain.create_gradable("700", "Quiz", 10)
    test = domain.create_gradable("700", "Test", 100)
    domain.set_score(quiz["id"], "600", "8")
    domain.set_score(quiz["id"], "600", "9")
    unchanged = domain.set_score(quiz["id"], "600", "9")
    assert (unchanged["version"], unchanged["changed"]) == (2, False)
    domain.set_score(quiz["id"], "601", "7")
    domain.set_score(test["id"], "600", "88")
    domain.set_score(quiz["id"], "600", None)  # cleared
    domain.set_score(quiz["id"], "601", None)
    assert domain.set_score(quiz["id"], "601", None)["changed"] is False  # already cleared: nothing new
    assert domain.set_score(test["id"], "601", None)["changed"] is False  # never entered: nothing to clear
    changes = [c for c in domain.changes()["changes"] if c["event"].startswith("score_")]
    assert [(c["event"], c["gradable"]["title"], c["student_id"], c["score"], c["version"]) for c in changes] == [
        ("score_set", "Quiz", "600", "8", 1),
        ("score_set", "Quiz", "600", "9", 2),
        ("score_set", "Quiz", "601", "7", 1),
        ("score_set", "Test", "600", "88", 1),
        ("score_cleared", "Quiz", "600", None, 3),
        ("score_cleared", "Quiz", "601", None, 2),
    ]
    cursors = [c["cursor"] for c in changes]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)


def test_the_feed_pages_by_cursor_without_missing_or_repeating_a_change(domain):
    seed_school(domain, students=3)
    gradable = domain.create_gradable("700", "Homework", 10)
    for round_number in range(3):
        for student in ("600", "601", "602"):
            domain.set_score(gradable["id"], student, str(round_number + 1))
    read, after, pages = [], 0, 0
    while True:
        page = domain.changes(after=after, limit=4)
        pages += 1
        read += page["changes"]
        assert len(page["changes"]) <= 4
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    assert pages == 3
    assert len(read) == 10 and len({c["cursor"] for c in read}) == 10  # the gradable_created entry and 9 scores
    # nothing new: the same cursor comes back, and an empty page
    assert domain.changes(after=page["next_cursor"]) == {
        "changes": [],
        "next_cursor": page["next_cursor"],
        "has_more": False,
    }
    domain.set_score(gradable["id"], "600", "10")
    [latest] = domain.changes(after=page["next_cursor"])["changes"]
    assert latest["cursor"] > page["next_cursor"] and latest["version"] == 4


def test_editing_a_gradable_adds_one_entry_naming_the_changed_fields(domain):
    seed_school(domain, students=2)
    gradable = domain.create_gradable("700", "Essay", 50)
    domain.set_score(gradable["id"], "600", "40")
    cursor = domain.changes()["next_cursor"]
    edited = domain.update_gradable(gradable["id"], title="Essay (revised)", total_points=60)
    assert edited["revision"] == 2
    [change] = domain.changes(after=cursor)["changes"]
    assert (change["event"], change["revision"], change["changed_fields"], change["student_id"]) == (
        "gradable_edited",
        2,
        ["title", "total_points"],
        None,
    )
    assert (change["gradable"]["title"], change["gradable"]["total_points"]) == ("Essay (revised)", 60.0)
    domain.update_gradable(gradable["id"], title="Essay (revised)")  # no real change: nothing new
    assert domain.changes(after=change["cursor"])["changes"] == []


def test_a_deleted_gradable_is_announced_once_and_takes_no_more_scores_or_edits(domain):
    seed_school(domain, students=1)
    gradable = domain.create_gradable("700", "Poster", 10)
    domain.set_score(gradable["id"], "600", "7")
    cursor = domain.changes()["next_cursor"]
    deleted = domain.delete_gradable(gradable["id"])
    assert deleted["deleted"] is True
    [change] = domain.changes(after=cursor)["changes"]
    assert (change["event"], change["gradable"]["id"], change["gradable"]["deleted"]) == (
        "gradable_deleted",
        gradable["id"],
        True,
    )
    with pytest.raises(LearningError, match=r"404.*was deleted"):
        domain.set_score(gradable["id"], "600", "8")
    with pytest.raises(LearningError, match=r"404.*was deleted"):
        domain.update_gradable(gradable["id"], title="Poster 2")
    assert domain.http.delete(f"/api/v1/gradables/{gradable['id']}").status_code == 404
    assert domain.http.get("/api/v1/classes/700/gradables").json() == []


def test_a_linked_class_announces_the_link_and_re_emits_its_gradables_and_scores(domain):
    seed_school(domain, students=1)
    domain.upsert(
        "classes", [{"class_id": "T-1", "name": "Teacher's own class", "teacher_id": "500", "organization_id": "10"}]
    )
    domain.upsert("rosters", [{"class_id": "T-1", "user_type": "S", "user_id": "600", "role": "student"}])
    own = domain.create_gradable("T-1", "Warm-up", 5)
    domain.set_score(own["id"], "600", "4")
    cursor = domain.changes()["next_cursor"]
    assert domain.link_class("T-1", "700") == {"class_id": "T-1", "imported_class_id": "700", "changed": True}
    assert domain.link_class("T-1", "700")["changed"] is False
    changes = domain.changes(after=cursor)["changes"]
    assert [(c["event"], c["class_id"], c["linked_class_id"], c["student_id"], c["score"]) for c in changes] == [
        ("class_linked", "T-1", "700", None, None),
        ("gradable_created", "T-1", "700", None, None),
        ("score_set", "T-1", "700", "600", "4"),
    ]
    with pytest.raises(LearningError, match=r"422.*itself linked"):
        domain.link_class("700", "T-1")
    with pytest.raises(LearningError, match=r"422.*linked to itself"):
        domain.link_class("T-1", "T-1")
    with pytest.raises(LearningError, match=r"404.*class 799"):
        domain.link_class("T-1", "799")
    cursor = changes[-1]["cursor"]
    domain.link_class("T-1", None)
    [unlinked] = domain.changes(after=cursor)["changes"]
    assert (unlinked["event"], unlinked["linked_class_id"]) == ("class_unlinked", "700")


def test_a_gradable_may_have_a_type_the_source_document_does_not_list(domain):
    seed_school(domain, students=1)
    poll = domain.create_gradable("700", "Opinion poll", 1, type="Poll")
    assert poll["type"] == "Poll"
    assert (
        domain.http.post(
            "/api/v1/classes/700/gradables", json={"title": "x", "total_points": 1, "type": "no spaces!"}
        ).status_code
        == 422
    )


def test_grade_push_enabled_follows_the_domain_settings(domain):
    seed_school(domain, students=1)
    gradable = domain.create_gradable("700", "Quiz", 10)
    domain.set_score(gradable["id"], "600", "5")
    assert domain.changes()["changes"][-1]["grade_push_enabled"] is False
    domain.settings(grade_push_organizations=["10"])
    assert domain.changes()["changes"][-1]["grade_push_enabled"] is True


def test_gradables_and_scores_are_refused_where_they_cannot_exist(domain):
    seed_school(domain, students=1)
    with pytest.raises(LearningError, match=r"404.*class 799 does not exist"):
        domain.create_gradable("799", "Quiz", 10)
    gradable = domain.create_gradable("700", "Quiz", 10)
    with pytest.raises(LearningError, match=r"404.*gradable 999999 does not exist"):
        domain.set_score(999999, "600", "5")
    with pytest.raises(LearningError, match=r"422.*student 500 is not a student on the roster of class 700"):
        domain.set_score(gradable["id"], "500", "5")
    with pytest.raises(LearningError, match=r"422.*student 404 is not a student on the roster"):
        domain.set_score(gradable["id"], "404", "5")
    bad = domain.http.post("/api/v1/classes/700/gradables", json={"title": "", "total_points": -1, "due_date": "3 Oct"})
    assert bad.status_code == 422
    message = bad.json()["message"]
    assert "title" in message and "total_points" in message and "due_date" in message
    too_long = domain.http.put(f"/api/v1/gradables/{gradable['id']}/scores/600", json={"score": "9" * 33})
    assert too_long.status_code == 422 and "score" in too_long.json()["message"]
    assert [c["event"] for c in domain.changes()["changes"]] == ["gradable_created"]  # no score entry


def test_a_domain_sees_only_its_own_gradebook(domain, other_domain):
    seed_school(domain, students=1)
    seed_school(other_domain, students=1)
    gradable = domain.create_gradable("700", "Quiz", 10)
    domain.set_score(gradable["id"], "600", "5")
    assert other_domain.changes()["changes"] == []
    response = other_domain.http.put(f"/api/v1/gradables/{gradable['id']}/scores/600", json={"score": "0"})
    assert response.status_code == 404
    assert other_domain.http.get(f"/api/v1/gradables/{gradable['id']}").status_code == 404
    assert domain.changes()["changes"][-1]["score"] == "5"


def test_a_student_who_shares_the_teachers_number_gets_a_score_in_that_class(domain):
    """Students.DCID and Teachers.DCID are separate sequences: student 500 and teacher 500 are
    two users, both on class 700's roster. A score is for the student, whatever order the
    roster rows come in, and the teacher 500 never gets one."""
    from tests.sandbox.learning.sample_rows import user

    seed_school(domain, students=1)
    assert domain.statuses("users", [user("500", login="student500")]) == ["created"]
    assert domain.statuses("rosters", [{"class_id": "700", "user_type": "S", "user_id": "500", "role": "student"}]) == [
        "created"
    ]
    gradable = domain.create_gradable("700", "Quiz", 10)
    score = domain.set_score(gradable["id"], "500", "7")
    assert (score["student_id"], score["score"]) == ("500", "7")
    assert domain.changes()["changes"][-1]["student_id"] == "500"
