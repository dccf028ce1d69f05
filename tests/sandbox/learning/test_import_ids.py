"""Users from before the integration, and giving them their Import IDs (admin_users.py).

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from tests.sandbox.learning.sample_rows import learning_class, organization, user


def test_a_hand_made_user_gets_an_import_id_and_the_import_then_updates_them(domain):
    domain.batch("organizations", [organization()])
    made = domain.create_user_by_hand(
        user_type="T",
        first_name="Mia",
        last_name="Chen",
        login="mchen",
        email="mchen@district.org",
        organization_id="10",
        authentication_type="google",
    )
    assert made["external_id"] is None and made["learning_id"] > 0
    assert [row["login"] for row in domain.admin_users(without_import_id=True)] == ["mchen"]
    # Before the transition an import of the same teacher cannot have the login: a duplicate is refused.
    assert domain.reasons("users", [user("3004", "T", login="mchen")])[0].startswith("login 'mchen' is already used")

    answer = domain.http.put(f"/api/v1/admin/users/{made['learning_id']}/import-id", json={"external_id": "3004"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == "updated" and answer.json()["external_id"] == "3004"
    assert domain.admin_users(without_import_id=True) == []
    # The import now updates the same user: login and authentication type stay.
    assert domain.statuses(
        "users",
        [user("3004", "T", login="mchen", first_name="Mia", last_name="Chen-Lee", authentication_type="password")],
    ) == ["updated"]
    [teacher] = domain.admin_users()
    assert (teacher["learning_id"], teacher["login"], teacher["authentication_type"], teacher["last_name"]) == (
        made["learning_id"],
        "mchen",
        "google",
        "Chen-Lee",
    )
    # Setting the same Import ID again is harmless.
    again = domain.http.put(f"/api/v1/admin/users/{made['learning_id']}/import-id", json={"external_id": "3004"})
    assert again.json()["result"] == "unchanged"


def test_an_earlier_integrations_user_keeps_their_classes_rosters_links_and_scores(domain):
    domain.batch("organizations", [organization()])
    domain.batch(
        "users",
        [
            user("old-t1", "T", login="teacher1"),
            user("old-s1", "S", login="student1"),
            user("old-p1", "P", login="parent1"),
        ],
    )
    domain.batch("classes", [learning_class("c1", "old-t1")])
    domain.batch(
        "rosters",
        [
            {"class_id": "c1", "user_type": "T", "user_id": "old-t1", "role": "teacher"},
            {"class_id": "c1", "user_type": "S", "user_id": "old-s1", "role": "student"},
        ],
    )
    domain.batch("parent_links", [{"parent_id": "old-p1", "child_id": "old-s1"}])
    domain.batch("user_levels", [{"external_id": "old-s1", "level_id": "9"}])
    gradable = domain.create_gradable("c1", "Quiz", 10)
    domain.set_score(gradable["id"], "old-s1", "8")
    ids = {row["external_id"]: row["learning_id"] for row in domain.admin_users()}
    for old, new in (("old-t1", "3001"), ("old-s1", "1000001"), ("old-p1", "5001")):
        response = domain.http.put(f"/api/v1/admin/users/{ids[old]}/import-id", json={"external_id": new})
        assert response.status_code == 200, response.text

    assert domain.classes()["c1"]["teacher_id"] == "3001"
    assert set(domain.rosters()) == {("c1", "T:3001"), ("c1", "S:1000001")}
    assert domain.parent_links() == {("5001", "1000001")}
    assert set(domain.user_levels()) == {"1000001"}
    # The student's score moved with them: the next change of it is its second version.
    assert domain.set_score(gradable["id"], "1000001", "9")["version"] == 2
    assert {row["login"] for row in domain.admin_users()} == {"teacher1", "student1", "parent1"}


def test_an_import_id_another_user_holds_is_refused(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("3001", "T", login="t3001")])
    made = domain.create_user_by_hand(user_type="T", first_name="A", last_name="B", login="ab", organization_id="10")
    answer = domain.http.put(f"/api/v1/admin/users/{made['learning_id']}/import-id", json={"external_id": "3001"})
    assert answer.status_code == 409 and "already belongs" in answer.json()["message"]
    # The same number for another type is another user: allowed.
    student = domain.create_user_by_hand(user_type="S", first_name="C", last_name="D", login="cd", organization_id="10")
    assert (
        domain.http.put(
            f"/api/v1/admin/users/{student['learning_id']}/import-id", json={"external_id": "3001"}
        ).status_code
        == 200
    )
    assert domain.http.put("/api/v1/admin/users/999999/import-id", json={"external_id": "1"}).status_code == 404
    duplicate = domain.http.post(
        "/api/v1/admin/users",
        json={"user_type": "S", "first_name": "E", "last_name": "F", "login": "AB", "organization_id": "10"},
    )
    assert duplicate.status_code == 409
