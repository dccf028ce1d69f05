"""The ``q=`` filter language of the PowerSchool API, translated to SQL for the simulator.

Implements the operators of docs/powerschool-api.md: ``==``, ``!=``, ``=gt=``, ``=ge=``,
``=lt=``, ``=le=``, ``;`` for AND, ``*`` as a wildcard in an ``==`` or ``!=`` value,
``==(A,P)`` and ``!=(A,P)`` lists, dates as ``YYYY-MM-DD``. As in PowerSchool's Oracle
database, ``!=`` never matches a NULL (empty) value. Each resource declares which API
fields it can filter on and the SQL expression behind each field; anything else is a 400
with a message naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OPERATORS = {"==": "=", "!=": "<>", "=gt=": ">", "=ge=": ">=", "=lt=": "<", "=le=": "<="}
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(==|!=|=gt=|=ge=|=lt=|=le=)\s*(.*?)\s*$", re.DOTALL)


class FilterError(ValueError):
    """A q= expression the simulator refuses (answered as HTTP 400 with this message)."""


@dataclass(frozen=True)
class FilterField:
    sql: str
    numeric: bool = False
    # Turns an API value into the stored value (e.g. enroll_status "A" -> 0).
    convert: Callable[[str], Any] | None = None


@dataclass
class SqlFilter:
    clauses: list[str] = field(default_factory=list)
    parameters: list[Any] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)


def _value(raw: str, spec: FilterField, name: str) -> Any:
    text = raw.strip().strip('"').strip("'")
    if spec.convert is not None:
        try:
            return spec.convert(text)
        except (KeyError, ValueError) as error:
            raise FilterError(f"Invalid q filter: {text!r} is not a valid value for {name}") from error
    if spec.numeric:
        try:
            return int(text)
        except ValueError as error:
            raise FilterError(f"Invalid q filter: {name} needs a number, got {text!r}") from error
    return text


def parse(expression: str | None, fields: dict[str, FilterField]) -> SqlFilter:
    """Translate a q= expression into SQL clauses over the resource's fields (all ANDed)."""
    result = SqlFilter()
    if not expression or not expression.strip():
        return result
    for part in expression.split(";"):
        if not part.strip():
            continue
        match = _CONDITION.match(part)
        if not match:
            raise FilterError(f"Invalid q filter: cannot parse {part!r} (expected field==value, field=gt=value, ...)")
        name, operator, raw = match.groups()
        spec = fields.get(name.lower())
        if spec is None:
            known = ", ".join(sorted(fields))
            raise FilterError(f"Invalid q filter: unknown field {name!r}; filterable fields: {known}")
        result.fields.add(name.lower())
        negated = operator == "!="
        if operator in ("==", "!=") and raw.startswith("(") and raw.endswith(")"):
            values = [_value(item, spec, name) for item in raw[1:-1].split(",") if item.strip()]
            if not values:
                raise FilterError(f"Invalid q filter: empty list for {name}")
            result.clauses.append(f"{spec.sql} {'NOT IN' if negated else 'IN'} ({','.join('?' * len(values))})")
            result.parameters.extend(values)
        elif operator in ("==", "!=") and "*" in raw and not spec.numeric and spec.convert is None:
            pattern = raw.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
            result.clauses.append(f"{spec.sql} {'NOT LIKE' if negated else 'LIKE'} ? ESCAPE '\\'")
            result.parameters.append(pattern)
        else:
            result.clauses.append(f"{spec.sql} {OPERATORS[operator]} ?")
            result.parameters.append(_value(raw, spec, name))
    return result
