"""Compare what Learning holds with the oracle, and the rows the pipeline says Learning refused.

The assertions name every difference (entity, key, field, expected, actual), so a failing
end-to-end test reads as a list of rule violations, not a dict diff.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import DISTRICT_ID, staged_rows
from tests.e2e.oracle import Oracle, user_key, user_order

USER_ENTITIES = ("staff", "students", "guardians")


def rejected_rows(staging_url: str, run_id: str) -> list[dict[str, Any]]:
    return staged_rows(
        staging_url,
        "SELECT stage, entity, source_id, rule, reason, caused_by FROM rejected_rows "
        "WHERE district_id = :district AND run_id = :run",
        district=DISTRICT_ID,
        run=run_id,
    )


def failed_users(staging_url: str, run_id: str, dataset_path) -> set[str]:
    """Users the run recorded as failing on their own (not by cascade): none, for the demo district.

    The demo district autogenerates usernames, so the source document fails no user: "an
    imported user without a username or Google Apps or Office 365 email address will not
    fail to be imported" (line 109). A user whose SIS username Learning cannot take (another
    user's, or too long) comes in with another login (a warning, not a rejection). Every
    own failure of a teacher, student or parent is a disagreement with the oracle.
    """
    failures = [
        row for row in rejected_rows(staging_url, run_id) if row["entity"] in USER_ENTITIES and row["caused_by"] is None
    ]
    problems = [
        f"{row['entity']} {user_key(row['entity'], row['source_id'])} rejected at {row['stage']} by rule "
        f"{row['rule']!r} ({row['reason']}); the source document's rules import it"
        for row in failures
    ]
    assert not problems, "rejected users disagree with the oracle:\n" + "\n".join(problems)
    return {user_key(row["entity"], row["source_id"]) for row in failures}


def differences(oracle: Oracle, state: dict[str, Any], disabled: set[str] = frozenset()) -> list[str]:
    """Every way Learning's state differs from the oracle's (empty when they agree).

    ``disabled``: users an earlier run imported that are no longer in the import; they must
    be in Learning, disabled ("never deleted"), and their user level may stay.
    """
    problems: list[str] = []
    state = dict(state)
    for key in sorted(disabled, key=user_order):
        user = state["users"].get(key)
        if user is None:
            problems.append(f"user {key}: left the import, expected disabled in Learning, but it is gone")
        elif user.get("enabled") is not False:
            problems.append(f"user {key}: left the import, expected disabled, enabled is {user.get('enabled')!r}")
    state["users"] = {key: user for key, user in state["users"].items() if key not in disabled}
    state["user_levels"] = {key: level for key, level in state["user_levels"].items() if f"S:{key}" not in disabled}

    def compare_keys(entity: str, expected: Any, actual: Any) -> None:
        for key in sorted(set(expected) - set(actual), key=str):
            problems.append(f"{entity} {key}: expected in Learning, missing")
        for key in sorted(set(actual) - set(expected), key=str):
            problems.append(f"{entity} {key}: in Learning, not expected by the rules")

    compare_keys("organization", oracle.organizations, state["organizations"])
    for key in set(oracle.organizations) & set(state["organizations"]):
        if oracle.organizations[key] != state["organizations"][key]:
            problems.append(
                f"organization {key}: name expected {oracle.organizations[key]!r}, "
                f"actual {state['organizations'][key]!r}"
            )

    users = state["users"]
    compare_keys("user", oracle.users, users)
    for key in sorted(set(oracle.users) & set(users), key=user_order):
        expected, actual = oracle.users[key], users[key]
        for name, value in expected.items():
            if name == "login" and value is None:
                if not actual.get("login"):
                    problems.append(f"user {key}: no username in the SIS, expected a generated login, got none")
                continue
            if actual.get(name) != value:
                problems.append(
                    f"user {key} ({expected['user_type']}): {name} expected {value!r}, actual {actual.get(name)!r}"
                )
        if actual.get("organization_id") not in oracle.user_school[key]:
            problems.append(
                f"user {key} ({expected['user_type']}): organization_id expected one of "
                f"{sorted(oracle.user_school[key])}, actual {actual.get('organization_id')!r}"
            )
    logins = [str(user.get("login") or "").lower() for user in users.values()]
    if len(logins) != len(set(logins)):
        problems.append("Learning holds two users with the same login")

    compare_keys("user level", oracle.user_levels, state["user_levels"])
    for key in set(oracle.user_levels) & set(state["user_levels"]):
        if str(state["user_levels"][key]) != oracle.user_levels[key]:
            problems.append(
                f"user level {key}: expected {oracle.user_levels[key]!r}, actual {state['user_levels'][key]!r}"
            )

    classes = state["classes"]
    compare_keys("class", oracle.classes, classes)
    for key in sorted(set(oracle.classes) & set(classes), key=int):
        for name, value in oracle.classes[key].items():
            if str(classes[key].get(name)) != value:
                problems.append(f"class {key}: {name} expected {value!r}, actual {classes[key].get(name)!r}")

    rosters = state["rosters"]
    compare_keys("roster", oracle.rosters, rosters)
    for key in sorted(set(oracle.rosters) & set(rosters)):
        if oracle.rosters[key] != rosters[key]:
            problems.append(f"roster {key}: role expected {oracle.rosters[key]!r}, actual {rosters[key]!r}")
    per_co_teacher: dict[str, int] = {}
    for (_, user), role in rosters.items():
        if role == "co-teacher":
            per_co_teacher[user] = per_co_teacher.get(user, 0) + 1
    for user, count in per_co_teacher.items():
        if count > 25:
            problems.append(f"co-teacher {user} is in {count} classes, more than 25")

    compare_keys("parent link", oracle.parent_links, state["parent_links"])
    return problems


def assert_learning_matches(oracle: Oracle, state: dict[str, Any], disabled: set[str] = frozenset()) -> None:
    problems = differences(oracle, state, disabled)
    assert not problems, f"Learning differs from the source document's rules in {len(problems)} way(s):\n" + "\n".join(
        problems[:60]
    )
