"""The column rules file (include/rules/column_rules.csv): checked at load, documented as it is."""

from __future__ import annotations

import re

import pytest

from sis_learning.config import COLUMN_RULES_PATH, REPO_ROOT
from sis_learning.exceptions import ColumnRulesError, FatalError
from sis_learning.mapping import LOGIN_MAX_LENGTH
from sis_learning.validate.suites import EMAIL_MAX_LENGTH, NAME_MAX_LENGTH, SUITES, load_column_rules

HEADER = "entity,rule,column,check,limit,warn,reason\n"


def _rules(tmp_path, *lines: str):
    path = tmp_path / "column_rules.csv"
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


def test_the_shipped_rules_are_what_validate_runs_with_learnings_limits():
    assert load_column_rules() == SUITES
    limits = {rule.rule: rule.limit for rules in SUITES.values() for rule in rules if rule.check == "max_length"}
    assert limits["first_name_length"] == limits["last_name_length"] == NAME_MAX_LENGTH
    assert limits["email_length"] == EMAIL_MAX_LENGTH
    # login_length is a row rule (rules.check_logins): it checks the limit generated logins are cut to
    assert "login_length" not in limits
    from sis_learning.validate import rules

    assert rules.LOGIN_MAX_LENGTH == LOGIN_MAX_LENGTH == 100
    reasons = [rule.reason for rules in SUITES.values() for rule in rules]
    assert not any("{limit}" in reason for reason in reasons)
    assert "the first name '{value}' is longer than the 100 characters Learning accepts" in reasons


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pupils,id_present,student_id,not_null,,,the student has no id", "line 2: unknown entity 'pupils'"),
        (
            "students,id_present,student_key,not_null,,,the student has no id",
            "line 2: students has no staged column 'student_key'",
        ),
        ("students,id_present,student_id,not_empty,,,the student has no id", "line 2: unknown check 'not_empty'"),
        (
            "students,name_length,first_name,max_length,,,too long",
            "line 2: check max_length needs a positive whole 'limit'",
        ),
        ("students,name_length,first_name,max_length,ten,,too long", "found 'ten'"),
        ("students,id_present,student_id,not_null,5,,the student has no id", "only max_length takes a 'limit'"),
        ("students,id_present,student_id,not_null,,maybe,the student has no id", "'warn' is 'yes' or empty"),
        ("students,id_present,student_id,not_null,,,", "'rule', 'column' and 'reason' must not be empty"),
        ("students,id_present,student_id,not_null,,,over {limit}", "'{limit}' in a reason needs check max_length"),
        ("students,id_present,student_id,not_null,,,no id,extra", "more than 7 columns"),
    ],
)
def test_a_bad_line_fails_naming_the_file_the_line_and_the_problem(tmp_path, line, message):
    path = _rules(tmp_path, line)
    with pytest.raises(ColumnRulesError) as raised:
        load_column_rules(path)
    assert str(path) in str(raised.value) and message in str(raised.value)
    assert isinstance(raised.value, FatalError)  # no retry fixes a file


def test_a_repeated_rule_names_the_line_that_defined_it_first(tmp_path):
    path = _rules(
        tmp_path,
        "students,id_present,student_id,not_null,,,the student has no id",
        "students,id_present,student_id,not_null,,,again",
    )
    with pytest.raises(ColumnRulesError, match=r"line 3: rule 'id_present' of students is already defined on line 2"):
        load_column_rules(path)


def test_a_wrong_header_and_a_missing_file_are_named(tmp_path):
    path = tmp_path / "rules.csv"
    path.write_text("entity,rule,column\nstudents,id_present,student_id\n")
    with pytest.raises(ColumnRulesError, match="line 1: header must be entity,rule,column,check,limit,warn,reason"):
        load_column_rules(path)
    with pytest.raises(ColumnRulesError, match="cannot read the column rules"):
        load_column_rules(tmp_path / "missing.csv")


def test_a_rule_added_to_the_file_is_run_with_its_limit_and_reason(tmp_path):
    path = _rules(
        tmp_path, "courses,course_name_length,course_name,max_length,40,yes,the course name '{value}' is over {limit}"
    )
    (rule,) = load_column_rules(path)["courses"]
    assert (rule.column, rule.check, rule.limit, rule.warn) == ("course_name", "max_length", 40, True)
    assert rule.reason == "the course name '{value}' is over 40"


def test_the_documentation_lists_every_column_rule_and_only_those():
    """docs/validation-and-mapping.md's rejection and warning tables name the file's rules."""
    text = (REPO_ROOT / "docs" / "validation-and-mapping.md").read_text()
    rejections = text.split("## Rejections (broken data)", 1)[1].split("### Warnings", 1)[0]
    warnings = text.split("### Warnings", 1)[1].split("**Lengths Learning accepts**", 1)[0]

    def first_column_names(section: str) -> set[str]:
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}

    rules = {rule.rule: rule.warn for rules in SUITES.values() for rule in rules}
    assert first_column_names(rejections) == {name for name, warn in rules.items() if not warn}
    assert first_column_names(warnings) == {name for name, warn in rules.items() if warn}
    assert str(COLUMN_RULES_PATH.relative_to(REPO_ROOT)) in text
