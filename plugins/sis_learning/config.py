"""District configuration: one YAML file per district in ``include/districts/``.

Every per-district setting the source document puts in Learning's "Manage Domain"
screens (selected schools, import start year, ignore parents, autogenerate usernames,
imported passwords temporary, Google Apps / Office 365 domains, grade push per
organization) lives here, validated once into typed objects. Errors name the file,
the key and the fix. Secrets are never in the file: the PowerSchool client id/secret
and Learning's token live in Airflow connections, the default password is a reference
(``env:NAME``, ``variable:NAME`` or ``connection:CONN_ID``) resolved only at load time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sis_learning.exceptions import DistrictConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
# SIS_LEARNING_DISTRICTS_DIR points the DAG factory at another folder of district YAMLs.
DISTRICTS_DIR = Path(os.environ.get("SIS_LEARNING_DISTRICTS_DIR", REPO_ROOT / "include" / "districts"))
MAPPINGS_DIR = REPO_ROOT / "include" / "mappings"
# The column rules validate runs (one line per entity and rule; validate/suites.py reads it).
COLUMN_RULES_PATH = REPO_ROOT / "include" / "rules" / "column_rules.csv"

DISTRICT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
SECRET_REFERENCE_PATTERN = re.compile(r"^(env|variable|connection):[A-Za-z0-9_.\-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskRetrySettings(_Strict):
    """Airflow retries of the import's tasks (the guards and the report never retry)."""

    retries: int = Field(2, ge=0, le=10)
    retry_delay_seconds: float = Field(30.0, gt=0, description="first wait; doubles each retry")
    max_retry_delay_seconds: float = Field(600.0, gt=0)


class IncrementalSettings(_Strict):
    """Incremental extract: read only what changed since the last successful run (docs/extract.md).

    ``full_read`` says when a run reads everything instead (a full reconcile, which also sees
    hard deletes and changes that did not move the cursor): ``first_run_of_day`` (the first
    run of each local day, i.e. 06:00 full and 18:00 incremental), ``every_run`` (never
    incremental). The DAG param ``full_refresh`` asks for a full read on demand.
    ``overlap_minutes`` is read again before the last cursor (clock skew between servers).
    """

    full_read: Literal["first_run_of_day", "every_run"] = "first_run_of_day"
    overlap_minutes: int = Field(60, ge=0, le=7 * 24 * 60)


class RetentionSettings(_Strict):
    """How long a run's staged rows are kept (staging/retention.py, docs/staged-tables.md "Retention").

    ``days``: a run's detail rows (raw records, ``stg_*``, ``learning_*``, rejected,
    excluded and warned rows, the change set's unchanged keys); null keeps them for ever.
    ``changes_days``: the change set's rows of what the run sent to Learning (the audit).
    The newest successful import, the newest import and a run still going are always kept.
    """

    days: float | None = Field(30, gt=0)
    changes_days: float | None = Field(400, gt=0)

    @model_validator(mode="after")
    def _changes_outlive_detail(self) -> RetentionSettings:
        if self.days is not None and self.changes_days is not None and self.changes_days < self.days:
            raise ValueError(
                f"changes_days ({self.changes_days:g}) must be at least days ({self.days:g}): "
                "what was sent to Learning is kept at least as long as the rest of a run's rows"
            )
        return self


class PowerSchoolSettings(_Strict):
    connection_id: str = Field(
        description="Airflow connection: host, client id (login), secret (password), CA bundle (extra ca_bundle)"
    )
    max_concurrent_requests: int = Field(4, ge=1, le=64, description="requests in flight at once for this district")
    pool: str = Field("powerschool_api", description="Airflow pool the extract tasks run in")
    request_timeout_seconds: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0, le=20)


class LearningSettings(_Strict):
    connection_id: str = Field(
        description="Airflow connection: Learning's base URL (host) and the domain's bearer token (password)"
    )
    batch_size: int = Field(1000, ge=1, le=1000)
    max_batches_in_flight: int = Field(
        3, ge=1, le=8, description="load: batches sent before the oldest is answered (Learning applies them in turn)"
    )
    pool: str = Field("learning_api")


class SsoDomains(_Strict):
    google: tuple[str, ...] = ()
    office365: tuple[str, ...] = ()

    @field_validator("google", "office365")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(domain.strip().lower().lstrip("@") for domain in value)


class ValidationThresholds(_Strict):
    """Largest share of an entity's rows that may fail validation before the run stops."""

    default: float = Field(0.05, ge=0, le=1)
    per_entity: dict[str, float] = Field(default_factory=dict)

    def for_entity(self, entity: str) -> float:
        return self.per_entity.get(entity, self.default)


class SafetyThresholds(_Strict):
    """Mass-change guard applied per school and entity before anything is written.

    A run the guard stops waits for a person's approval in the Airflow UI (sis_learning.approval)
    for at most ``approval_timeout_hours``; unanswered by then, it loads nothing.
    """

    max_removal_ratio: float = Field(0.10, ge=0, le=1)
    min_removal_rows: int = Field(25, ge=0)
    import_id_change_ratio: float = Field(
        0.5, ge=0, le=1, description="share of vanished users that reappear under a new id with the same name or email"
    )
    approval_timeout_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 14,
        description="how long a stopped run waits for a person's answer in the Airflow UI; then it loads nothing",
    )


class GradePushSettings(_Strict):
    enabled: bool = False
    organizations: tuple[str, ...] | Literal["all"] = "all"
    classwork_category: str = "Classwork"
    standardcalcdirection: Literal["NONE", "RollupAsmtScoreToStandard"] = "NONE"
    poll_interval_seconds: float = Field(2.0, gt=0)

    def enabled_for(self, organization_id: str) -> bool:
        if not self.enabled:
            return False
        return self.organizations == "all" or str(organization_id) in self.organizations


class NotificationSettings(_Strict):
    failure_emails: tuple[str, ...] = ()
    smtp_connection_id: str = "smtp_default"
    # The Airflow UI's address for links in emails; unset: Airflow's [api] base_url (report.airflow_base_url).
    airflow_base_url: str | None = None


class DistrictConfig(_Strict):
    district_id: str
    name: str
    timezone: str = "America/Chicago"
    schedule: str = Field("0 6,18 * * *", description="cron in the district's time zone")
    owner: str = "data-engineering"
    powerschool: PowerSchoolSettings
    learning: LearningSettings
    schools: tuple[str, ...] | Literal["all"] = Field("all", description="school ids (Schools.DCID) or school numbers")
    import_start_year: int = Field(ge=1990, le=2100)
    ignore_parents: bool = False
    autogenerate_usernames: bool = True
    default_password: str | None = Field(
        None, description="secret reference: env:NAME, variable:NAME or connection:CONN_ID"
    )
    imported_passwords_temporary: bool = True
    sso_domains: SsoDomains = SsoDomains()
    co_teacher_class_limit: int = Field(25, ge=1)
    grade_push: GradePushSettings = GradePushSettings()
    notifications: NotificationSettings = NotificationSettings()
    validation_thresholds: ValidationThresholds = ValidationThresholds()
    safety: SafetyThresholds = SafetyThresholds()
    task_retries: TaskRetrySettings = TaskRetrySettings()
    incremental: IncrementalSettings = IncrementalSettings()
    retention: RetentionSettings = RetentionSettings()
    source_file: str | None = Field(None, exclude=True)

    @field_validator("district_id")
    @classmethod
    def _district_id(cls, value: str) -> str:
        if not DISTRICT_ID_PATTERN.match(value):
            raise ValueError(
                "must be lower-case letters, digits and underscores, starting with a letter "
                "(it becomes part of the DAG id)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown IANA time zone {value!r} (for example America/Chicago)") from error
        return value

    @field_validator("default_password")
    @classmethod
    def _password_reference(cls, value: str | None) -> str | None:
        if value is not None and not SECRET_REFERENCE_PATTERN.match(value):
            raise ValueError(
                "must be a reference to a secret (env:NAME, variable:NAME or connection:CONN_ID), "
                "never the password itself"
            )
        return value

    @field_validator("schools", mode="before")
    @classmethod
    def _schools(cls, value: object) -> object:
        if isinstance(value, list):
            return tuple(str(item) for item in value)
        return value

    def select_schools(self, schools: Iterable[tuple[str, str | None]]) -> tuple[list[str], list[str]]:
        """The one rule for "Select the School(s) that you want to import data from".

        ``schools`` are the district's schools as (Schools.DCID, school number) pairs. Returns the
        selected DCIDs in the order given ("all": every school; otherwise each entry of the
        ``schools`` setting matches a DCID, or else a school number) and the entries that match
        no school. The extract (against PowerSchool) and validate (against the staged schools)
        both decide through this.
        """
        pairs = [(school_id, number) for school_id, number in schools if school_id is not None]
        if self.schools == "all":
            return [school_id for school_id, _ in pairs], []
        by_id = {school_id for school_id, _ in pairs}
        id_by_number = {number: school_id for school_id, number in pairs if number is not None}
        chosen: list[str] = []
        unknown: list[str] = []
        for entry in self.schools:
            key = str(entry).strip()
            school_id = key if key in by_id else id_by_number.get(key)
            if school_id is None:
                unknown.append(key)
            elif school_id not in chosen:
                chosen.append(school_id)
        return chosen, unknown

    @model_validator(mode="after")
    def _grade_push_organizations(self) -> DistrictConfig:
        if self.grade_push.enabled and self.grade_push.organizations != "all" and self.schools != "all":
            unknown = set(self.grade_push.organizations) - set(self.schools)
            if unknown:
                raise ValueError(f"grade_push.organizations lists schools that are not imported: {sorted(unknown)}")
        return self

    @property
    def import_dag_id(self) -> str:
        return f"sis_import__{self.district_id}"

    @property
    def grade_push_dag_id(self) -> str:
        return f"grade_push__{self.district_id}"

    def is_sso_email(self, email: str | None) -> bool:
        if not email or "@" not in email:
            return False
        domain = email.rsplit("@", 1)[1].strip().lower()
        return domain in self.sso_domains.google or domain in self.sso_domains.office365


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid district configuration"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "missing":
            message = "is required: add it to the file"
        elif item["type"] == "extra_forbidden":
            message = "is not a known setting: check its spelling (see include/districts/README.md)"
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)


def load_district(path: Path | str) -> DistrictConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DistrictConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise DistrictConfigError(f"{path}: expected a mapping of settings at the top level")
    data.setdefault("district_id", path.stem)
    if data["district_id"] != path.stem:
        raise DistrictConfigError(f"{path}: district_id {data['district_id']!r} must match the file name {path.stem!r}")
    try:
        config = DistrictConfig.model_validate(data)
    except ValidationError as error:
        raise DistrictConfigError(_format_errors(path, error)) from None
    return config.model_copy(update={"source_file": str(path)})


def district_files(directory: Path | str | None = None) -> list[Path]:
    return sorted(Path(directory or DISTRICTS_DIR).glob("*.yaml"))


def load_districts(directory: Path | str | None = None) -> list[DistrictConfig]:
    """All district configs in sorted file order; the first bad file raises (scripts, tests).

    The DAG files use :func:`scan_districts`, which keeps a bad file to its own district.
    """
    return [load_district(path) for path in district_files(directory)]


# ---- isolation: one district's bad file stays its own ------------------------------------

DEFAULT_BROKEN_SCHEDULE = "*/15 * * * *"  # a broken district's DAG fails (and notifies) within 15 minutes


@dataclass(frozen=True)
class BrokenDistrict:
    """A district file that cannot be used, with what could still be read from it.

    The DAG factory makes it a DAG whose only task fails at once with ``error`` (and
    emails ``failure_emails`` once per distinct error); every other district is unaffected.
    """

    district_id: str
    source_file: str
    error: str
    failure_emails: tuple[str, ...] = ()
    smtp_connection_id: str = "smtp_default"
    owner: str = "data-engineering"

    @property
    def import_dag_id(self) -> str:
        return f"sis_import__{self.district_id}"


def _readable(path: Path) -> dict:
    """The file's settings as far as they can be read (a broken file yields what it can)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def broken_district(path: Path, error: str) -> BrokenDistrict:
    data = _readable(path)
    notifications = data.get("notifications") if isinstance(data.get("notifications"), dict) else {}
    emails = notifications.get("failure_emails")
    emails = (
        tuple(item.strip() for item in emails if isinstance(item, str) and "@" in item)
        if isinstance(emails, list)
        else ()
    )
    smtp = notifications.get("smtp_connection_id")
    owner = data.get("owner")
    district_id = re.sub(r"[^a-z0-9_]", "_", path.stem.lower()) or "unnamed"
    return BrokenDistrict(
        district_id=district_id,
        source_file=str(path),
        error=error,
        failure_emails=emails,
        smtp_connection_id=smtp if isinstance(smtp, str) and smtp else "smtp_default",
        owner=owner if isinstance(owner, str) and owner and owner != "airflow" else "data-engineering",
    )


SHARED_TARGETS = (
    ("powerschool.connection_id", "a PowerSchool connection", lambda config: config.powerschool.connection_id),
    (
        "learning.connection_id",
        "a Learning connection (one would write into the other's Learning domain)",
        lambda config: config.learning.connection_id,
    ),
)


def shared_target_errors(configs: list[DistrictConfig]) -> dict[str, list[str]]:
    """Per source file, the districts it shares a PowerSchool or Learning connection with."""
    errors: dict[str, list[str]] = {}
    for key, what, value_of in SHARED_TARGETS:
        by_value: dict[str, list[DistrictConfig]] = {}
        for config in configs:
            by_value.setdefault(value_of(config), []).append(config)
        for value, sharing in by_value.items():
            if len(sharing) < 2:
                continue
            files = [str(config.source_file) for config in sharing]
            for config in sharing:
                others = ", ".join(f for f in files if f != config.source_file)
                errors.setdefault(str(config.source_file), []).append(
                    f"  - {key}: {value!r} is also the {key} of {others}: two districts must not share {what}; "
                    "give each district its own"
                )
    return errors


def scan_districts(directory: Path | str | None = None) -> tuple[list[DistrictConfig], list[BrokenDistrict]]:
    """Every district file, valid or not: (usable configs, broken files), both in file order."""
    configs: list[DistrictConfig] = []
    broken: list[BrokenDistrict] = []
    for path in district_files(directory):
        try:
            configs.append(load_district(path))
        except DistrictConfigError as error:
            broken.append(broken_district(path, str(error)))
    shared = shared_target_errors(configs)
    for config in [config for config in configs if str(config.source_file) in shared]:
        configs.remove(config)
        path = Path(str(config.source_file))
        broken.append(broken_district(path, f"{path}: invalid district configuration\n" + "\n".join(shared[str(path)])))
    broken.sort(key=lambda item: item.source_file)
    return configs, broken


def load_district_by_id(district_id: str, directory: Path | str | None = None) -> DistrictConfig:
    path = Path(directory or DISTRICTS_DIR) / f"{district_id}.yaml"
    if not path.exists():
        raise DistrictConfigError(f"{path}: no configuration for district {district_id!r}")
    return load_district(path)
