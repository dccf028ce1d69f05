"""The Import ID transition's matching rules (transition.match_users): SSO email, else login, else the
district CSV; never a guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from sis_learning.transition import AMBIGUOUS, MATCHED, UNMATCHED, match_users, read_district_csv

SSO = ["students.demo.org", "demo.org"]


def sis(external_id, user_type="S", login=None, sso=None, **fields):
    return {
        "external_id": external_id,
        "user_type": user_type,
        "login": login or f"{user_type.lower()}{external_id}",
        "sso_email_address": sso,
        "first_name": "A",
        "last_name": "B",
        "email": sso,
        "organization_id": "11",
        **fields,
    }


def learning(learning_id, user_type="S", login=None, external_id=None, **fields):
    return {
        "learning_id": learning_id,
        "user_type": user_type,
        "login": login or f"hand{learning_id}",
        "external_id": external_id,
        "email": None,
        "sso_email_address": None,
        **fields,
    }


def outcome(matches, learning_id):
    item = next(match for match in matches if match.learning_user["learning_id"] == learning_id)
    return item.outcome, item.method, item.new_import_id


RECORDS = [
    sis("1001", sso="ana@students.demo.org"),
    sis("1002", login="ben.s"),
    sis("3001", "T", login="mchen"),
    sis("5001", "P", login="parent5001"),
    sis("1003", sso="cara@students.demo.org"),
    sis("1004", login="dup"),
    sis("1005", login="Dup2"),
]


def test_each_rule_in_order_and_the_rest_unmatched():
    users = [
        learning(1, email="ANA@students.demo.org"),  # SSO email: the email is on a Google domain
        learning(2, login="Ben.S"),  # login, any case
        learning(3, "P", external_id="legacy-77"),  # the district CSV, by old Import ID
        learning(4, "T", login="mchen", sso_email_address="m@demo.org"),  # SSO finds nothing: login decides
        learning(5, login="nobody"),  # nothing
        learning(6, login="hand6"),  # CSV by login (no Import ID)
    ]
    csv_lines = [
        {"user_type": "P", "old_id": "legacy-77", "new_id": "5001"},
        {"user_type": "", "old_id": "hand6", "new_id": "1003"},
    ]
    matches = match_users(users, RECORDS, SSO, csv_lines)
    assert outcome(matches, 1) == (MATCHED, "sso_email", "1001")
    assert outcome(matches, 2) == (MATCHED, "login", "1002")
    assert outcome(matches, 3) == (MATCHED, "district_csv", "5001")
    assert outcome(matches, 4) == (MATCHED, "login", "3001")
    assert outcome(matches, 5)[0] == UNMATCHED
    assert outcome(matches, 6) == (MATCHED, "district_csv", "1003")
    ana = next(match for match in matches if match.learning_user["learning_id"] == 1)
    assert "login: hand1 -> s1001" in ana.first_import_changes


def test_never_a_guess():
    users = [
        learning(1, sso_email_address="cara@students.demo.org", login="ben.s"),  # the rules disagree
        learning(2, "T", login="s1001"),  # only a student has that login
        learning(3, login="dup"),
        learning(4, external_id="old-4"),  # two users, one record
        learning(5, external_id="old-5"),  # CSV names a record not imported
        learning(6, "S", external_id="1004"),  # already on its Import ID
        learning(7, login="x7"),
    ]
    csv_lines = [
        {"user_type": "S", "old_id": "old-4", "new_id": "1004"},
        {"user_type": "S", "old_id": "old-5", "new_id": "9999"},
        {"user_type": "S", "old_id": "x7", "new_id": "1005"},
    ]
    matches = match_users(users, RECORDS, SSO, csv_lines)
    assert outcome(matches, 1)[0] == AMBIGUOUS
    assert "login says S:1002" in next(m for m in matches if m.learning_user["learning_id"] == 1).reason
    assert outcome(matches, 2)[0] == AMBIGUOUS
    # 3 (login dup) and 4 (CSV) both want S:1004, which user 6 already holds.
    assert outcome(matches, 3)[0] == AMBIGUOUS and outcome(matches, 4)[0] == AMBIGUOUS
    assert outcome(matches, 5)[0] == UNMATCHED
    assert outcome(matches, 6)[0] == "already"
    assert outcome(matches, 7) == (MATCHED, "district_csv", "1005")


def test_the_district_csv_is_checked(tmp_path: Path):
    good = tmp_path / "good.csv"
    good.write_text("user_type,old_id,new_id\nS,old-1,1001\n,jdoe,1002\n")
    assert read_district_csv(good) == [
        {"user_type": "S", "old_id": "old-1", "new_id": "1001"},
        {"user_type": "", "old_id": "jdoe", "new_id": "1002"},
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("old,new\n1,2\n")
    with pytest.raises(ValueError, match="header"):
        read_district_csv(bad)
    bad.write_text("user_type,old_id,new_id\nX,1,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        read_district_csv(bad)


def test_apply_needs_the_districts_approval(capsys):
    from scripts.transition import main

    assert main(["apply", "demo", "--plan", "20261205T000000000000"]) == 2
    assert "--approve" in capsys.readouterr().err
