"""Value helpers: PowerSchool's text, integer, boolean and date shapes as staged values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from sis_learning.hooks.powerschool import id_string

ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


# --------------------------------------------------------------------------- value helpers


def _text(value: Any) -> str | None:
    """A text column: digit-only values PowerSchool sent as numbers become strings again."""
    return id_string(value)


def _integer(value: Any) -> int | None:
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
        return int(float(text))
    except (ValueError, OverflowError):
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
