"""What validate decides for each staged row (ok, excluded or rejected), and the helpers every rule uses.

An ``EntityOutcome`` holds one entity's rows and their state; rules in ``rules.py``,
``cascade.py`` and the suites' failures in ``suites.py`` mark rows excluded (left out by
design) or rejected (broken data, or held back by a failure they depend on). Reasons are
``ReasonText``: composed once, rendered only for the rows that fail.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sis_learning.config import DistrictConfig
from sis_learning.entities import VALIDATED_ENTITIES
from sis_learning.staging.quality import WARNING_VALUE_MAX_LENGTH

if TYPE_CHECKING:
    from sis_learning.validate.suites import ColumnRule

STAGE = "validate"

# Entities in the order the result lists them; also the entity names of the quality tables.
ENTITIES = VALIDATED_ENTITIES

# Row states as small integers: comparing a million of them is then a vector operation.
OK, EXCLUDED, REJECTED = 0, 1, 2
REASON_VALUE_MAX_LENGTH = WARNING_VALUE_MAX_LENGTH  # 200

# Extract's value problems (extract/values.py) and the integer fields whose non-integer
# value rejects the row: whether the student is active, the teacher is active, the term
# is in the import years cannot be told without them. Any other is a warning.
CONTROL_CHARACTERS = "control_characters"
NON_INTEGER_VALUE = "non_integer_value"
# The entities whose own fields the problems are about (parent links are guardian rows too).
VALUE_PROBLEM_ENTITIES = frozenset({"schools", "terms", "staff", "students", "guardians", "section_teachers"})
REJECTED_NON_INTEGER = frozenset({("students", "enroll_status_code"), ("staff", "status"), ("terms", "start_year")})


class ReasonText:
    """A reason built from literal text and column values, filled in only for the rows that fail.

    ``"the student " + value(frame["student_id"]) + " failed"`` composes without touching a
    row; ``rows(index)`` renders it for the failing rows alone, so a rule that fails no
    row of a million costs nothing.
    """

    def __init__(self, parts: list[Any]):
        self.parts = parts

    def __add__(self, other: Any) -> ReasonText:
        return ReasonText(self.parts + (other.parts if isinstance(other, ReasonText) else [other]))

    def __radd__(self, other: Any) -> ReasonText:
        return ReasonText([other, *self.parts])

    def rows(self, index: pd.Index) -> pd.Series:
        text = pd.Series("", index=index, dtype=object)
        for part in self.parts:
            if isinstance(part, str):
                text = text + part
            else:
                series, missing = part
                values = series.loc[index].astype(object)
                # A reason quotes at most 200 characters of any value.
                text = text + values.where(values.notna(), missing).astype(str).str.slice(0, REASON_VALUE_MAX_LENGTH)
        return text.astype("string")


def value(series: pd.Series, missing: str = "") -> ReasonText:
    """A column's value inside a reason (``missing`` where the row has none)."""
    return ReasonText([(series, missing)])


def reason_series(reason: str | pd.Series | ReasonText, index: pd.Index) -> pd.Series:
    if isinstance(reason, ReasonText):
        return reason.rows(index)
    if isinstance(reason, pd.Series):
        return reason.loc[index].astype("string")
    return pd.Series(reason, index=index, dtype="string")


def fill_value(template: str, values: pd.Series) -> str | ReasonText:
    """``template`` with ``{value}`` replaced by the row's value."""
    if "{value}" not in template:
        return template
    before, after = template.split("{value}", 1)
    return before + value(values) + after


class EntityOutcome:
    """The rows of one entity and what happened to each: ok, excluded or rejected.

    ``root`` is ``entity:source_id`` of the failure that keeps a rejected row out (its
    own, or the one that cascaded to it); ``why`` is the first reason, for the rows that
    depend on it.
    """

    def __init__(self, entity: str, frame: pd.DataFrame, source_id: pd.Series):
        self.entity = entity
        self.frame = frame.reset_index(drop=True)
        self.source_id = source_id.reset_index(drop=True).astype("string")
        self.status = pd.Series(OK, index=self.frame.index, dtype="int8")
        self.why = pd.Series(pd.NA, index=self.frame.index, dtype="string")
        self.root = pd.Series(pd.NA, index=self.frame.index, dtype="string")
        self.rejected_parts: list[pd.DataFrame] = []
        self.warning_parts: list[pd.DataFrame] = []
        self.excluded_parts: list[pd.DataFrame] = []
        self._key_indexes: dict[str, pd.Index] = {}
        self._reject_source_problems()
        self._apply_value_problems()

    def _reject_source_problems(self) -> None:
        """Rows extract staged with a bad id (missing_source_id, non_integer_source_id,
        duplicate_source_id, see extract.SOURCE_KEYS): rejected first, under that rule, with
        extract's reason (it names the field and the value)."""
        if "source_problem" not in self.frame:
            return
        problems = self.frame["source_problem"]
        for rule in problems.dropna().unique():
            mask = problems.eq(rule)
            self.reject(mask, str(rule), self.frame["source_problem_reason"].fillna(str(rule)).astype("string"))

    def _apply_value_problems(self) -> None:
        """What extract cleaned in a field (``value_problems``): control characters removed
        from a name or login (a warning, action ``cleaned``), a non-integer value of an
        integer field (rejected where the field decides whether the row is imported at all,
        see ``REJECTED_NON_INTEGER``; else a warning, the field imported empty)."""
        if "value_problems" not in self.frame or self.entity not in VALUE_PROBLEM_ENTITIES:
            return
        staged = self.frame["value_problems"].dropna()
        if staged.empty:
            return
        found = [(row, problem) for row, text in staged.items() for problem in json.loads(text)]
        for (rule, field), group in pd.DataFrame(
            [
                {"row": row, "rule": p["rule"], "field": p["field"], "value": p["value"], "reason": p["reason"]}
                for row, p in found
            ]
        ).groupby(["rule", "field"], sort=True):
            mask = pd.Series(False, index=self.frame.index)
            mask[group["row"].to_numpy()] = True
            reasons = pd.Series(group["reason"].to_numpy(), index=group["row"].to_numpy(), dtype="string")
            values = pd.Series(group["value"].to_numpy(), index=group["row"].to_numpy(), dtype="string")
            if rule == NON_INTEGER_VALUE and (self.entity, field) in REJECTED_NON_INTEGER:
                self.reject(mask, rule, reasons.reindex(self.frame.index))
            else:
                self.warn(
                    mask,
                    rule,
                    field,
                    reasons.reindex(self.frame.index),
                    action="cleaned" if rule == CONTROL_CHARACTERS else "cleared",
                    values=values.reindex(self.frame.index),
                )

    def key_index(self, column: str) -> pd.Index:
        """The rows' values of ``column`` as an index (built once: lookups into it reuse its hash table)."""
        if column not in self._key_indexes:
            self._key_indexes[column] = pd.Index(self.frame[column].astype("string"))
        return self._key_indexes[column]

    @property
    def ok(self) -> pd.Series:
        return self.status.eq(OK)

    def exclude(self, mask: pd.Series, rule: str, reason: str | pd.Series | ReasonText) -> None:
        mask = mask.fillna(False).astype(bool) & self.ok
        if not mask.any():
            return
        index = mask[mask].index
        reasons = reason_series(reason, index)
        self.status[index] = EXCLUDED
        self.why[index] = reasons
        self.excluded_parts.append(
            pd.DataFrame(
                {
                    "entity": self.entity,
                    "source_id": self.source_id[index],
                    "rule": rule,
                    "reason": reasons,
                }
            )
        )

    def reject(
        self, mask: pd.Series, rule: str, reason: str | pd.Series | ReasonText, caused_by: pd.Series | None = None
    ) -> None:
        mask = mask.fillna(False).astype(bool) & self.status.ne(EXCLUDED)
        if not mask.any():
            return
        index = mask[mask].index
        reasons = reason_series(reason, index)
        own_root = (self.entity + ":" + self.source_id[index].fillna("(no id)")).astype("string")
        root = caused_by.loc[index].astype("string") if caused_by is not None else own_root
        first_failure = self.root[index].isna()
        self.root[index] = self.root[index].where(~first_failure, root)
        self.why[index] = self.why[index].where(~first_failure, reasons)
        self.status[index] = REJECTED
        self.rejected_parts.append(
            pd.DataFrame(
                {
                    "entity": self.entity,
                    "source_id": self.source_id[index],
                    "rule": rule,
                    "reason": reasons,
                    "caused_by": (
                        caused_by.loc[index].astype("string")
                        if caused_by is not None
                        else pd.Series(pd.NA, index=index, dtype="string")
                    ),
                }
            )
        )

    def warn(
        self,
        mask: pd.Series,
        rule: str,
        field: str,
        reason: str | pd.Series | ReasonText,
        action: str = "cleared",
        values: pd.Series | None = None,
    ) -> None:
        """The rows pass, imported without ``field`` (action ``cleared``) or with it cleaned up
        (``cleaned``): a staged warning, not a rejection. ``values``: the value as PowerSchool
        sent it, when the frame holds the cleaned one."""
        mask = mask.fillna(False).astype(bool) & self.ok
        if not mask.any():
            return
        index = mask[mask].index
        source = self.frame.loc[index, field] if values is None else values.loc[index]
        values = source.astype("string").str.slice(0, WARNING_VALUE_MAX_LENGTH)
        self.warning_parts.append(
            pd.DataFrame(
                {
                    "entity": self.entity,
                    "source_id": self.source_id[index],
                    "rule": rule,
                    "field": field,
                    "value": values,
                    "reason": reason_series(reason, index),
                    "action": action,
                }
            )
        )

    def apply_suite(self, failures: list[tuple[ColumnRule, list]]) -> None:
        for rule, labels in failures:
            mask = pd.Series(False, index=self.frame.index)
            mask[labels] = True
            reason = fill_value(
                rule.reason, self.frame[rule.column].astype("string").str.slice(0, WARNING_VALUE_MAX_LENGTH)
            )
            if rule.warn:
                self.warn(mask, rule.rule, rule.column, reason)
            else:
                self.reject(mask, rule.rule, reason)

    def counts(self) -> dict[str, int]:
        evaluated = len(self.frame)
        rejected = int(self.status.eq(REJECTED).sum())
        excluded = int(self.status.eq(EXCLUDED).sum())
        # One warning per row and field (as staged: the first found).
        warned = (
            len(pd.concat(self.warning_parts, ignore_index=True).drop_duplicates(["source_id", "field"]))
            if self.warning_parts
            else 0
        )
        return {
            "evaluated": evaluated,
            "passed": evaluated - rejected - excluded,
            "rejected": rejected,
            "excluded": excluded,
            "warned": warned,
        }


def lookup(keys: pd.Series, outcome: EntityOutcome, key_column: str) -> pd.DataFrame:
    """Status, reason and root of the referenced rows (first row per key), aligned to ``keys``."""
    index = outcome.key_index(key_column)
    if index.is_unique:
        # The usual case: one row per key. The index (and its hash table) is built once per
        # entity and column, and only the statuses, taken as they are now, are read.
        positions = index.get_indexer(keys.astype("string"))
        missing = positions < 0
        status = outcome.status.to_numpy(dtype="float64")[positions]
        status[missing] = np.nan
        found = pd.DataFrame(
            {
                "status": status,
                "why": outcome.why.array.take(positions, allow_fill=True),
                "root": outcome.root.array.take(positions, allow_fill=True),
            },
            index=keys.index,
        )
        return found
    table = pd.DataFrame(
        {
            "key": outcome.frame[key_column].astype("string"),
            "status": outcome.status,
            "why": outcome.why,
            "root": outcome.root,
        }
    )
    # A key present twice (a duplicated id) resolves to its worst outcome: rejected.
    table = table.sort_values("status", ascending=False, kind="stable").drop_duplicates("key").set_index("key")
    found = table.reindex(keys.astype("string"))
    found.index = keys.index
    return found.astype({"why": "string", "root": "string"})


def blank(series: pd.Series) -> pd.Series:
    return series.isna() | series.astype("string").str.strip().eq("")


def has_sso_email(config: DistrictConfig, emails: pd.Series) -> pd.Series:
    """True where the email's domain is one of the district's Google / Office 365 domains."""
    domains = set(config.sso_domains.google) | set(config.sso_domains.office365)
    domain = emails.astype("string").str.strip().str.rsplit("@", n=1).str[-1].str.lower()
    return (emails.astype("string").str.contains("@", regex=False) & domain.isin(domains)).fillna(False).astype(bool)


def numeric_id_order(series: pd.Series) -> pd.Series:
    """Sort key for DCID strings: numeric order (9 before 10), non-numbers after."""
    # Float, not the nullable integer pandas gives for text ids: an id that is not a number
    # ("x") must become inf, which Int64 cannot hold.
    numbers = pd.to_numeric(series, errors="coerce")
    return pd.Series(numbers.to_numpy(dtype="float64", na_value=np.inf), index=series.index)


def sorted_by_id(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Rows in id order: numerically (9 before 10), then by the id's text; stable.

    The same order as sorting on (``numeric_id_order``, text), without sorting a million
    strings: the numbers alone decide unless two rows share a number with different text
    ("7" and "07", or ids that are not numbers), which falls back to the full sort.
    """
    order = numeric_id_order(frame[column]).to_numpy()
    positions = np.argsort(order, kind="stable")
    ranked = order[positions]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])
    if len(tied):
        text = frame[column].to_numpy(dtype=object, na_value=None)[positions]
        if (text[tied] != text[tied + 1]).any():
            return frame.assign(_order=order).sort_values(["_order", column], kind="stable").drop(columns="_order")
    if np.array_equal(positions, np.arange(len(positions))):
        return frame
    return frame.iloc[positions]
