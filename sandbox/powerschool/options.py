"""The simulator's runtime options: paging limits, token lifetime, throttle, faults, grants.

Everything a test may want to turn on is here, off by default, and can be set three ways:
CLI flags (``python -m sandbox.powerschool --throttle-ms 200``), the environment
(``POWERSCHOOL_SANDBOX_OPTIONS='{"error_rate": 0.1}'``) or at runtime through the admin API
(``PowerSchoolSandbox.configure(error_rate=0.1)``). Unknown names and bad values are refused
with a message naming the option, so a typo never silently leaves a fault off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Per-resource maximum page sizes, as the plugin's Data Configuration sets them (the
# integration requires at least 100).
DEFAULT_MAX_PAGE_SIZES = {
    "school": 100,
    "student": 100,
    "staff": 100,
    "section": 100,
    "section_enrollment": 100,
    "term": 100,
    "course": 100,
    "schema_table_query": 1000,
}
EMPTY_PAGE_STYLES = ("rotate", "missing", "null", "empty_string", "empty_list", "empty_object")


class OptionsError(ValueError):
    """An option name or value the simulator refuses; the message names the option."""


@dataclass
class ServerOptions:
    token_lifetime_seconds: int = 1_814_654
    max_page_sizes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MAX_PAGE_SIZES))
    oversize_page: str = "clamp"  # or "refuse": HTTP 400 when pagesize exceeds the maximum
    empty_page_style: str = "rotate"  # quirk 4: which shape an empty page takes; rotate = each in turn
    throttle_ms: int = 0  # minimum interval between two API requests of one client (0 = off)
    # The API doc is unsure of the throttle's status and whether it sends Retry-After: both variants.
    throttle_status: int = 429
    throttle_retry_after: bool = True
    # expires_in is a string in captured answers; clients must accept a number too.
    expires_in_type: str = "string"
    latency_ms: int = 0  # added to every API response
    latency_jitter_ms: int = 0  # plus a uniform random 0..jitter
    error_rate: float = 0.0  # share of API requests answered with one of error_statuses
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    reset_rate: float = 0.0  # share of API requests whose connection is reset (TCP RST, no answer)
    slow_rate: float = 0.0  # share of API requests answered only after slow_ms
    slow_ms: int = 30_000
    truncate_rate: float = 0.0  # share of API requests whose answer stops half-way (connection reset)
    resubmit_rate: float = 0.0  # share of PUT /ws/xte/score answered 412 "Resubmit"
    count_offset: int = 0  # added to every /ws/v1 .../count: a count that disagrees with the rows served
    fault_seed: int = 0  # the fault dice are seeded, so a failing test replays the same faults
    field_grants: dict[str, list[str]] | None = None  # table -> readable columns; absent table = all
    fault_paths: list[str] = field(default_factory=lambda: ["/ws/"])  # path prefixes faults apply to

    def update(self, changes: dict[str, Any]) -> ServerOptions:
        """A copy with ``changes`` applied, validated."""
        known = {item.name for item in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise OptionsError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dataclasses.asdict(self)
        for name, value in changes.items():
            if name == "max_page_sizes":
                if not isinstance(value, dict):
                    raise OptionsError('max_page_sizes must be an object like {"student": 500}')
                bad = sorted(set(value) - set(DEFAULT_MAX_PAGE_SIZES))
                if bad:
                    raise OptionsError(
                        f"max_page_sizes: unknown resource(s) {', '.join(bad)}; "
                        f"known: {', '.join(DEFAULT_MAX_PAGE_SIZES)}"
                    )
                value = {**values["max_page_sizes"], **value}
            values[name] = value
        result = ServerOptions(**values)
        result.validate()
        return result

    def validate(self) -> None:
        if not isinstance(self.token_lifetime_seconds, int) or self.token_lifetime_seconds < 1:
            raise OptionsError("token_lifetime_seconds must be a positive integer")
        for resource, size in self.max_page_sizes.items():
            if not isinstance(size, int) or size < 1:
                raise OptionsError(f"max_page_sizes.{resource} must be a positive integer, got {size!r}")
        if self.expires_in_type not in ("string", "number"):
            raise OptionsError("expires_in_type must be 'string' or 'number'")
        if not isinstance(self.throttle_status, int) or not 400 <= self.throttle_status <= 599:
            raise OptionsError("throttle_status must be an HTTP error code, e.g. 429 or 503")
        if not isinstance(self.throttle_retry_after, bool):
            raise OptionsError("throttle_retry_after must be true or false")
        if self.oversize_page not in ("clamp", "refuse"):
            raise OptionsError("oversize_page must be 'clamp' or 'refuse'")
        if self.empty_page_style not in EMPTY_PAGE_STYLES:
            raise OptionsError(f"empty_page_style must be one of {', '.join(EMPTY_PAGE_STYLES)}")
        for name in ("throttle_ms", "latency_ms", "latency_jitter_ms", "slow_ms", "fault_seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise OptionsError(f"{name} must be a non-negative integer")
        if not isinstance(self.count_offset, int) or isinstance(self.count_offset, bool):
            raise OptionsError("count_offset must be an integer")
        for name in ("error_rate", "reset_rate", "slow_rate", "truncate_rate", "resubmit_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise OptionsError(f"{name} must be a number between 0 and 1")
        if not self.error_statuses or any(
            not isinstance(code, int) or not 400 <= code <= 599 for code in self.error_statuses
        ):
            raise OptionsError("error_statuses must be a non-empty list of HTTP error codes")
        if self.field_grants is not None:
            from sandbox.powerschool.store import TABLE_COLUMNS

            if not isinstance(self.field_grants, dict) or any(
                not isinstance(columns, list) for columns in self.field_grants.values()
            ):
                raise OptionsError("field_grants must map a table name to a list of column names")
            for table, columns in self.field_grants.items():
                if table not in TABLE_COLUMNS:
                    raise OptionsError(
                        f"field_grants: unknown table {table!r} (use lower-case SIS table names: "
                        f"{', '.join(TABLE_COLUMNS)})"
                    )
                unknown = sorted({str(column).lower() for column in columns} - set(TABLE_COLUMNS[table]))
                if unknown:
                    raise OptionsError(f"field_grants.{table}: unknown column(s) {', '.join(unknown)}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
