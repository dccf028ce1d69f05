"""The rule catalogue (validate.rules.RULES), the code and docs/validation-and-mapping.md agree.

Every rule name the pipeline can write into rejected_rows, excluded_rows or
validation_warnings is in RULES; every RULES row cites a line of the source document whose
words it quotes (checked against the document itself when it is at hand); and the docs'
"Every rule, its outcome and its source line" table lists each rule with the same outcome
and the lines RULES cites.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sis_learning.config import REPO_ROOT
from sis_learning.validate.rules import RULE_NAMES, RULES
from sis_learning.validate.suites import SUITES

SOURCE_DOCUMENT = "000_6a89dbd85c7bbcf5.txt"
VALIDATE_PACKAGE = REPO_ROOT / "plugins" / "sis_learning" / "validate"
DOCS = REPO_ROOT / "docs" / "validation-and-mapping.md"
# The calls that give a row its rule, and where their rule argument is.
RULE_ARGUMENT = {"exclude": 1, "reject": 1, "warn": 1, "_unusable_login": 5}


def rules_named_in_the_code() -> set[str]:
    """Every rule name the code can write: validate's literal rule arguments, the column rules
    file, extract's and the staging writer's rules for bad ids and values, load's refusal."""
    from sis_learning.extract.values import (
        CONTROL_CHARACTERS_RULE,
        MISSING_SOURCE_ID,
        NON_INTEGER_SOURCE_ID,
        NON_INTEGER_VALUE_RULE,
    )
    from sis_learning.load import LOAD_REJECTION_RULE
    from sis_learning.staging.writer import DUPLICATE_SOURCE_ID

    names = {rule.rule for rules in SUITES.values() for rule in rules}
    names |= {MISSING_SOURCE_ID, NON_INTEGER_SOURCE_ID, DUPLICATE_SOURCE_ID}
    names |= {CONTROL_CHARACTERS_RULE, NON_INTEGER_VALUE_RULE, LOAD_REJECTION_RULE}
    for path in VALIDATE_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            position = RULE_ARGUMENT.get(called)
            if position is not None and len(node.args) > position and isinstance(node.args[position], ast.Constant):
                names.add(node.args[position].value)
    return names


def test_every_rule_the_code_can_give_is_in_the_catalogue_and_only_those():
    named = rules_named_in_the_code()
    assert {"username_missing", "login_unique", "inactive_staff", "email_format"} <= named  # the scan finds them
    assert named - RULE_NAMES == set(), "rules the code gives that RULES does not list"
    assert RULE_NAMES - named == set(), "RULES lists rules no code gives"


def test_every_rule_cites_the_source_document_except_learnings_own():
    unsourced = {rule.name for rule in RULES if rule.line is None}
    assert unsourced == {"learning_refused", "non_integer_value"}  # Learning's answer; a field no mapping names
    assert any(rule.name == "non_integer_value" and rule.line == 169 for rule in RULES)  # the rejected ones have one
    for rule in RULES:
        if rule.line is not None:
            assert rule.quote and rule.line in rule.lines, rule


def _source_document() -> Path | None:
    for folder in (REPO_ROOT, *REPO_ROOT.parents):
        path = folder / "shared" / "seed" / SOURCE_DOCUMENT
        if path.is_file():
            return path
    return None


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_every_quote_is_on_the_line_it_cites():
    path = _source_document()
    if path is None:
        pytest.skip(f"the source document (shared/seed/{SOURCE_DOCUMENT}) is not beside this checkout")
    lines = path.read_text(encoding="utf-8").splitlines()
    for rule in RULES:
        if rule.line is not None:
            assert _plain(rule.quote) in _plain(lines[rule.line - 1]), (rule.name, rule.line, lines[rule.line - 1])


def _cited_lines(cell: str) -> set[int]:
    """The line numbers a docs cell cites: "line 59", "lines 155-157, 190", "line 16 and 248"."""
    found: set[int] = set()
    for first, last in re.findall(r"\b(\d{1,3})(?:-(\d{1,3}))?\b", cell):
        found.update(range(int(first), int(last or first) + 1))
    return found


def _outcomes(cell: str) -> frozenset[str]:
    return frozenset(word for word in ("excluded", "rejected", "warning") if word in cell)


def documented_rules() -> list[tuple[set[str], frozenset[str], set[int], str]]:
    text = DOCS.read_text(encoding="utf-8")
    table = text.split("## Every rule, its outcome and its source line", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = set(re.findall(r"`([a-z_]+)`", cells[0].split(" on ")[0]))
        rows.append((names, _outcomes(cells[2]), _cited_lines(cells[3]), line))
    return rows


def test_the_docs_list_every_rule_with_its_outcome_and_lines():
    rows = documented_rules()
    documented = set().union(*(names for names, *_ in rows))
    assert documented == RULE_NAMES, (sorted(documented - RULE_NAMES), sorted(RULE_NAMES - documented))
    for rule in RULES:
        matching = [row for row in rows if rule.name in row[0] and row[1] == set(rule.outcomes)]
        assert matching, f"{rule.name}: no row of the docs' table gives it the outcome {sorted(rule.outcomes)}"
        assert any(set(rule.lines) <= cited for _names, _outcome, cited, _line in matching), (
            f"{rule.name}: the docs do not cite lines {rule.lines}: {[row[3] for row in matching]}"
        )
