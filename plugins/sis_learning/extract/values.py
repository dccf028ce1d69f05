"""Value helpers: PowerSchool's text, integer, boolean and date shapes as staged values.

Also what extract checks on a built row before handing its page to the staging writer
(``staging.writer.EntityStaging``): its own id (``source_id_problem``) and its names and
integers (``record_value_problems``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from sis_learning.hooks.powerschool import id_string
from sis_learning.staging.writer import SOURCE_KEYS

ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


# --------------------------------------------------------------------------- value helpers


def _text(value: Any) -> str | None:
    """A text column: digit-only values PowerSchool sent as numbers become strings again."""
    return id_string(value)


class NotInteger:
    """A value sent for an integer field that is not an integer (``3.5``, ``ten``).

    Never truncated or guessed: extract stages the field empty and records the
    value (``value_problems``), and validate rejects the row or warns about it, naming it.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"NotInteger({self.raw!r})"


def _integer(value: Any) -> int | NotInteger | None:
    """An integer field: None when empty, ``NotInteger`` when the value is not a whole number.

    ``"3"``, ``3``, ``3.0`` and ``"3.0"`` are 3; ``"3.5"`` and ``"ten"`` are not integers.
    """
    if type(value) is int:
        return value
    text = _text(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except (ValueError, OverflowError):
        return NotInteger(text)
    return int(number) if number.is_integer() else NotInteger(text)


def _integer_value(value: Any) -> int | None:
    """An integer the extract reads for itself (not staged): None when it is not one."""
    number = _integer(value)
    return number if type(number) is int else None


# Control characters (C0, DEL, C1) and the invisible bidirectional marks and overrides
# (U+200E/F, U+202A-U+202E, U+2066-U+2069) and the byte-order mark: never part of a name
# or a login, and PostgreSQL text cannot hold NUL.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
VALUE_QUOTE_MAX_LENGTH = 200
CONTROL_CHARACTERS_RULE = "control_characters"
NON_INTEGER_VALUE_RULE = "non_integer_value"

# Per staged entity: the name and login columns cleaned of control characters, and the
# integer columns whose non-integer values are recorded.
CHECKED_TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "staff": ("first_name", "middle_name", "last_name", "teacher_username", "admin_username"),
    "students": ("first_name", "middle_name", "last_name", "student_username"),
    "guardians": ("first_name", "last_name", "portal_username"),
}
CHECKED_INTEGER_COLUMNS: dict[str, tuple[str, ...]] = {
    "schools": ("low_grade", "high_grade"),
    "terms": ("start_year", "portion"),
    "staff": ("status",),
    "students": ("grade_level", "enroll_status_code"),
    "section_teachers": ("priority_order",),
}


def quoted(value: str) -> str:
    """A value inside a reason: at most 200 characters of it, control characters shown escaped."""
    shown = value if len(value) <= VALUE_QUOTE_MAX_LENGTH else value[:VALUE_QUOTE_MAX_LENGTH] + "..."
    return repr(shown)


def value_problems(entity: str, row: dict[str, Any]) -> list[dict[str, str]] | None:
    """Clean one built row in place; the problems found (rule, field, value, reason), or None.

    Control characters are removed from names and logins (a warning); a non-integer value
    of an integer column is staged as empty (validate warns or rejects by the field).
    """
    problems = None
    for column in CHECKED_TEXT_COLUMNS.get(entity, ()):
        text = row.get(column)
        if type(text) is str and not text.isprintable() and CONTROL_CHARACTERS.search(text):
            cleaned = CONTROL_CHARACTERS.sub("", text).strip() or None
            row[column] = cleaned
            problems = problems or []
            # The value as sent, its control characters written as escapes (staging cannot hold NUL).
            shown = CONTROL_CHARACTERS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
            problems.append(
                {
                    "rule": CONTROL_CHARACTERS_RULE,
                    "field": column,
                    "value": shown[:VALUE_QUOTE_MAX_LENGTH],
                    "reason": f"the {column} {quoted(text)} holds control or bidirectional characters; "
                    f"they were removed (imported as {quoted(cleaned) if cleaned else 'nothing'})",
                }
            )
    for column in CHECKED_INTEGER_COLUMNS.get(entity, ()):
        number = row.get(column)
        if type(number) is NotInteger:
            row[column] = None
            problems = problems or []
            problems.append(
                {
                    "rule": NON_INTEGER_VALUE_RULE,
                    "field": column,
                    "value": number.raw[:VALUE_QUOTE_MAX_LENGTH],
                    "reason": f"the {column} {quoted(number.raw)} is not an integer (PowerSchool stores a "
                    "whole number there); it is not truncated or guessed",
                }
            )
    return problems


CHECKED_ENTITIES = frozenset(CHECKED_TEXT_COLUMNS) | frozenset(CHECKED_INTEGER_COLUMNS)


def record_value_problems(entity: str, rows: list[dict[str, Any]]) -> None:
    """Clean a page's rows (control characters, non-integer numbers) and stage what was found.

    A row with problems gets ``value_problems`` (JSON: rule, field, value, reason) for
    validate to warn or reject by; then every row of the page has the column.
    """
    if entity not in CHECKED_ENTITIES:
        return
    found = False
    for row in rows:
        problems = value_problems(entity, row)
        if problems:
            row["value_problems"] = json.dumps(problems, ensure_ascii=False)
            found = True
    if found:
        for row in rows:
            row.setdefault("value_problems", None)


MISSING_SOURCE_ID = "missing_source_id"
NON_INTEGER_SOURCE_ID = "non_integer_source_id"


def source_id_problem(entity: str, row: Mapping[str, Any]) -> tuple[str, str] | None:
    """(rule, reason) when a staged row's own id is missing or not an integer, else None."""
    for column, field_name in SOURCE_KEYS[entity]:
        value = row[column]
        if value is None:
            return (
                MISSING_SOURCE_ID,
                f"the PowerSchool record has no {field_name} (the {entity} id); it cannot be identified",
            )
        if not (value.isascii() and value.isdigit()):
            return NON_INTEGER_SOURCE_ID, (
                f"the PowerSchool record's {field_name} is {quoted(value)}, not an integer "
                "(PowerSchool ids are integers)"
            )
    return None


def _boolean(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "t", "yes", "y"}


def iso_date(value: Any) -> str | None:
    """``YYYY-MM-DD`` from PowerSchool's date shapes (ISO, ISO datetime, ``MM/DD/YYYY``)."""
    text = _text(value)
    if not text:
        return None
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and "1900-01-01" < text <= "9999-12-31":
        return text  # already YYYY-MM-DD: the common case, checked cheaply
    match = ISO_DATE.match(text)
    if match:
        year, month, day = (int(part) for part in match.groups())
    else:
        match = US_DATE.match(text)
        if not match:
            return None
        month, day, year = (int(part) for part in match.groups())
    if year < 1900:  # PowerSchool writes 0/0/0 or 1900-01-01 for "no date"
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _nested(record: Mapping[str, Any], *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _first(record: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = record.get(name)
        if value not in (None, ""):
            return value
    return None


def _numeric_first(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)
