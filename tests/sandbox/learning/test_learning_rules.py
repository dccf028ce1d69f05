"""Learning's rules, enforced by the server (the source document's behaviour of Learning's import).

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import create_engine, select

from sandbox.learning.models import User
from sandbox.learning.passwords import verify_password
from tests.sandbox.learning.sample_rows import learning_class, organization, seed_school, user

# --- references ----------------------------------------------------------------------------------


def test_a_class_whose_teacher_does_not_exist_fails_and_the_others_are_created(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("500", "T", login="t500"), user("600", "S")])
    answer = domain.batch(
        "classes", [learning_class("700", "500"), learning_class("701", "404"), learning_class("702", "600")]
    )
    assert [r["status"] for r in answer["results"]] == ["created", "failed", "failed"]
    assert answer["results"][1]["reason"] == "teacher T:404 does not exist in this domain"
    # a student with that number is not the teacher: users are identified by type and id
    assert answer["results"][2]["reason"] == "teacher T:600 does not exist in this domain"
    assert answer["summary"] == {"total": 3, "created": 1, "failed": 2}
    assert set(domain.classes()) == {"700"}


def test_a_class_or_user_in_an_unknown_organization_fails(domain):
    domain.batch("organizations", [organization("10")])
    answer = domain.batch("users", [user("500", "T", organization_id="99")])
    assert answer["results"][0]["status"] == "failed"
    assert "organization 99 does not exist" in answer["results"][0]["reason"]
    domain.batch("users", [user("500", "T")])
    assert domain.reasons("classes", [learning_class("700", "500", organization_id="99")])[0].startswith(
        "organization 99 does not exist"
    )


def test_a_roster_row_whose_class_or_user_does_not_exist_fails(domain):
    seed_school(domain, students=1)
    answer = domain.batch(
        "rosters",
        [
            {"class_id": "799", "user_type": "S", "user_id": "600", "role": "student"},
            {"class_id": "700", "user_type": "S", "user_id": "699", "role": "student"},
            {"class_id": "700", "user_type": "S", "user_id": "500", "role": "student"},
        ],
    )
    assert [r["status"] for r in answer["results"]] == ["failed", "failed", "failed"]
    assert answer["results"][0]["reason"] == "class 799 does not exist in this domain"
    assert answer["results"][1]["reason"] == "user S:699 does not exist in this domain"
    assert answer["results"][2]["reason"] == "user S:500 does not exist in this domain"
    assert ("700", "S:699") not in domain.rosters()
    wrong_type = {"class_id": "700", "user_type": "T", "user_id": "500", "role": "student"}
    assert "role 'student' needs a student" in domain.reasons("rosters", [wrong_type])[0]


def test_user_levels_and_parent_links_need_existing_users_of_the_right_type(domain):
    seed_school(domain, students=1)
    domain.batch("users", [user("900", "P", login="parent900")])
    assert domain.reasons("user_levels", [{"external_id": "404", "level_id": "9"}]) == [
        "user S:404 does not exist in this domain"
    ]
    assert domain.reasons("user_levels", [{"external_id": "500", "level_id": "9"}]) == [
        "user S:500 does not exist in this domain"  # 500 is a teacher's number
    ]
    reasons = domain.reasons(
        "parent_links",
        [
            {"parent_id": "404", "child_id": "600"},
            {"parent_id": "900", "child_id": "404"},
            {"parent_id": "600", "child_id": "600"},
        ],
    )
    assert reasons[0] == "parent P:404 does not exist in this domain"
    assert reasons[1] == "child S:404 does not exist in this domain"
    assert reasons[2] == "parent P:600 does not exist in this domain"  # 600 is a student's number
    assert domain.parent_links() == set()


# --- authentication type ---------------------------------------------------------------------------


def test_an_import_sets_the_authentication_type_of_a_new_user_and_of_a_password_user(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1", authentication_type="google"), user("2")])
    assert domain.user("S:1")["authentication_type"] == "google"
    assert domain.user("S:2")["authentication_type"] == "password"
    assert domain.statuses("users", [user("2", authentication_type="office365")]) == ["updated"]
    assert domain.user("S:2")["authentication_type"] == "office365"


def test_sso_authentication_is_sticky_whatever_an_import_sends(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1", authentication_type="google", sso_email_address="ana@district.org")])
    answer = domain.batch("users", [user("1", authentication_type="password", first_name="Anna")])
    result = answer["results"][0]
    assert result["status"] == "updated"  # the other fields are applied
    assert "stays 'google'" in result["note"]
    stored = domain.user("S:1")
    assert (stored["authentication_type"], stored["first_name"]) == ("google", "Anna")
    # an import that sends no type leaves it alone as well
    domain.batch("users", [user("1", first_name="Anna")])
    assert domain.user("S:1")["authentication_type"] == "google"


def test_an_authentication_type_set_by_an_admin_is_never_changed_by_an_import(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1"), user("2", authentication_type="google")])
    domain.set_authentication("S:1", "password")  # an admin chose password on purpose
    domain.set_authentication("S:2", "password")  # an admin took a user off SSO: only an admin can
    assert domain.user("S:2")["authentication_type"] == "password"
    answer = domain.batch(
        "users", [user("1", authentication_type="google"), user("2", authentication_type="office365")]
    )
    assert [r["status"] for r in answer["results"]] == ["unchanged", "unchanged"]
    assert all("an admin set it" in r["note"] for r in answer["results"])
    assert {key: row["authentication_type"] for key, row in domain.users().items()} == {
        "S:1": "password",
        "S:2": "password",
    }
    assert domain.user("S:1")["authentication_set_by"] == "admin"


def test_setting_the_authentication_type_of_an_unknown_user_or_to_an_unknown_type_is_refused(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1")])
    assert (
        domain.http.put("/api/v1/admin/users/S/404/authentication", json={"authentication_type": "google"}).status_code
        == 404
    )
    bad = domain.http.put("/api/v1/admin/users/S/1/authentication", json={"authentication_type": "facebook"})
    assert bad.status_code == 422
    assert "authentication_type" in bad.json()["message"]


# --- logins ----------------------------------------------------------------------------------------


def test_logins_are_unique_in_a_domain_and_a_duplicate_fails_its_row(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1", login="ana.lopez")])
    answer = domain.batch(
        "users",
        [user("2", login="Ana.Lopez"), user("3", login="maria"), user("4", login="MARIA")],
    )
    assert [r["status"] for r in answer["results"]] == ["failed", "created", "failed"]
    assert (
        answer["results"][0]["reason"]
        == "login 'Ana.Lopez' is already used by user S:1 in this domain (logins are unique)"
    )
    assert (
        answer["results"][2]["reason"] == "login 'MARIA' is already used by user S:3 in this domain (logins are unique)"
    )
    assert set(domain.users()) == {"S:1", "S:3"}


def test_a_login_freed_earlier_in_a_batch_can_be_taken_later_in_it(domain):
    domain.batch("organizations", [organization()])
    domain.batch("users", [user("1", login="shared"), user("2", login="other")])
    answer = domain.batch("users", [user("1", login="renamed"), user("2", login="shared"), user("3", login="other")])
    assert [r["status"] for r in answer["results"]] == ["updated", "updated", "created"]
    assert {key: row["login"] for key, row in domain.users().items()} == {
        "S:1": "renamed",
        "S:2": "shared",
        "S:3": "other",
    }


def test_a_user_without_a_login_uses_the_sso_email_else_fails_unless_autogenerate_is_on(domain):
    domain.batch("organizations", [organization()])
    answer = domain.batch(
        "users",
        [
            user("1", login=None, sso_email_address="ana@district.org"),
            user("2", login="", first_name="José", last_name="Núñez"),
        ],
    )
    assert answer["results"][0]["status"] == "created"
    assert domain.user("S:1")["login"] == "ana@district.org"
    assert answer["results"][1]["status"] == "failed"
    assert "no login" in answer["results"][1]["reason"] and "autogenerate usernames" in answer["results"][1]["reason"]

    domain.settings(autogenerate_usernames=True)
    answer = domain.batch(
        "users",
        [
            user("2", login="", first_name="José", last_name="Núñez"),
            user("3", login=None, first_name="Jose", last_name="Nunez"),
        ],
    )
    assert [r["status"] for r in answer["results"]] == ["created", "created"]
    generated = {key: (row["login"], row["login_generated"]) for key, row in domain.users().items() if key != "S:1"}
    assert generated == {"S:2": ("jose.nunez", True), "S:3": ("jose.nunez2", True)}
    # a later import without a login keeps the generated one
    assert domain.statuses("users", [user("3", login=None, first_name="Jose", last_name="Nunez")]) == ["unchanged"]


def test_generated_logins_never_collide(domain):
    domain.batch("organizations", [organization()])
    domain.settings(autogenerate_usernames=True)
    rows = [user(str(number), login=None, first_name="Sam", last_name="Lee") for number in range(3)]
    assert domain.statuses("users", rows) == ["created"] * 3
    assert sorted(row["login"] for row in domain.users().values()) == ["sam.lee", "sam.lee2", "sam.lee3"]


# --- passwords and notifications ---------------------------------------------------------------------


def _stored_users(database_url: str) -> dict[str, User]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {row.external_id: row for row in connection.execute(select(User.__table__))}
    finally:
        engine.dispose()


def test_passwords_are_stored_hashed_applied_on_create_only_and_flagged_temporary_when_asked(domain, learning_server):
    domain.batch("organizations", [organization()])
    domain.batch(
        "users",
        [
            user("1", password="Default-Pass-2025", password_temporary=True),
            user("2", password="Default-Pass-2025"),
            user("3"),
        ],
    )
    users = domain.users()
    assert (users["S:1"]["has_password"], users["S:1"]["password_temporary"]) == (True, True)
    assert (users["S:2"]["has_password"], users["S:2"]["password_temporary"]) == (True, False)
    assert (users["S:3"]["has_password"], users["S:3"]["password_temporary"]) == (False, False)

    stored = _stored_users(learning_server.sandbox.database_url)
    hashes = {key: row.password_hash for key, row in stored.items() if row.domain == domain.name}
    assert hashes["1"].startswith("scrypt$") and "Default-Pass-2025" not in hashes["1"]
    assert verify_password("Default-Pass-2025", hashes["1"]) and not verify_password("wrong", hashes["1"])

    # a later import's password is not applied to an existing user
    assert domain.statuses("users", [user("1", password="Another-Pass-1", password_temporary=False)]) == ["unchanged"]
    again = _stored_users(learning_server.sandbox.database_url)
    assert [row.password_hash for row in again.values() if row.domain == domain.name and row.external_id == "1"] == [
        hashes["1"]
    ]
    assert domain.user("S:1")["password_temporary"] is True


def test_the_domain_setting_makes_imported_passwords_temporary_by_default(domain):
    domain.batch("organizations", [organization()])
    domain.settings(imported_passwords_temporary=True)
    domain.batch(
        "users",
        [user("1", password="Default-Pass-2025"), user("2", password="Default-Pass-2025", password_temporary=False)],
    )
    users = domain.users()
    assert (users["S:1"]["password_temporary"], users["S:2"]["password_temporary"]) == (True, False)


def test_no_notification_is_ever_sent_to_imported_users(domain):
    seed_school(domain, students=3)
    domain.batch("users", [user("600", first_name="Changed"), user("900", "P", login="p900", password="Pass-word-1")])
    domain.http.post("/api/v1/users/deactivate", json={"users": [{"user_type": "S", "external_id": "601"}]})
    assert domain.notification_count() == 0
    # the counter does count: an admin informing a user later is one notification
    assert domain.notify("S:600")["count"] == 1
    assert domain.notification_count() == 1


def test_deactivated_users_are_disabled_never_deleted_and_an_import_can_enable_them_again(domain):
    domain.batch("organizations", [organization()])
    # a student and a teacher with the same number are two users
    domain.batch("users", [user("1"), user("2"), user("1", "T", login="teacher1")])

    def key(user_type, external_id):
        return {"user_type": user_type, "external_id": external_id}

    answer = domain.http.post(
        "/api/v1/users/deactivate",
        json={
            "users": [
                key("S", "1"),
                key("S", "404"),
                key("S", 2),
                key("S", "1"),
                {"external_id": "3"},
            ]
        },
    ).json()
    assert [(r["key"], r["status"]) for r in answer["results"]] == [
        ("S:1", "deactivated"),
        ("S:404", "failed"),
        ("S:2", "deactivated"),
        ("S:1", "unchanged"),
        (None, "failed"),
    ]
    assert answer["results"][1]["reason"] == "user S:404 does not exist in this domain"
    assert answer["results"][4]["reason"] == "missing required field 'user_type'"
    users = domain.users()
    assert set(users) == {"S:1", "S:2", "T:1"}
    assert users["S:1"]["enabled"] is False and users["S:1"]["deactivated_at"]
    assert users["T:1"]["enabled"] is True  # the teacher with the same number is someone else
    again = domain.http.post("/api/v1/users/deactivate", json={"users": [key("S", "1")]}).json()
    assert again["results"][0]["status"] == "unchanged"
    assert domain.statuses("users", [user("1")]) == ["updated"]
    assert (domain.user("S:1")["enabled"], domain.user("S:1")["deactivated_at"]) == (True, None)
    # an import row with enabled false disables too (the source sends enabled "1"/"0")
    assert domain.statuses("users", [user("2", enabled="0"), user("3", enabled=False)]) == ["unchanged", "created"]
    assert domain.user("S:3")["enabled"] is False and domain.user("S:3")["deactivated_at"]


def test_rosters_and_parent_links_are_removed_by_key(domain):
    seed_school(domain, students=2)
    domain.batch("users", [user("900", "P", login="p900")])
    domain.batch("parent_links", [{"parent_id": "900", "child_id": "600"}])
    answer = domain.http.post(
        "/api/v1/rosters/remove",
        json={
            "rows": [
                {"class_id": "700", "user_type": "S", "user_id": "600"},
                {"class_id": "700", "user_type": "S", "user_id": "999"},
                {"class_id": "700", "user_type": "S"},
                {"class_id": "700", "user_type": "S", "user_id": "500"},
            ]  # 500 is a teacher's number
        },
    ).json()
    assert [r["status"] for r in answer["results"]] == ["removed", "unchanged", "failed", "unchanged"]
    assert answer["results"][0]["key"] == "700:S:600"
    assert answer["results"][2]["reason"] == "missing required field 'user_id'"
    assert set(domain.rosters()) == {("700", "T:500"), ("700", "S:601")}
    links = domain.http.post(
        "/api/v1/parent_links/remove", json={"rows": [{"parent_id": "900", "child_id": "600"}]}
    ).json()
    assert links["results"][0] == {"index": 0, "key": "900:600", "status": "removed", "reason": None, "note": None}
    assert domain.parent_links() == set()
    assert set(domain.users()) >= {"S:600", "P:900"}  # removing a link or roster row never removes a user


def test_concurrent_batches_cannot_both_take_a_login_or_create_a_user_twice(domain):
    """Two imports at once (a retried task beside its first try): the rules hold, nothing answers 500."""
    from concurrent.futures import ThreadPoolExecutor

    domain.batch("organizations", [organization()])
    batches = [
        [user(str(number), login=f"shared{number % 50}") for number in range(offset, offset + 200)]
        for offset in (0, 1000)
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda rows: domain.http.post("/api/v1/users/batch", json={"rows": rows}), batches * 2))
    assert [answer.status_code for answer in answers] == [200] * 4
    users = domain.users()
    logins = [row["login"] for row in users.values()]
    assert len(logins) == len(set(logins)) == 50
    created = sum(answer.json()["summary"].get("created", 0) for answer in answers)
    assert created == len(users) == 50
