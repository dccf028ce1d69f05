"""Batch import into a Learning domain: upsert by external id, deactivate users, remove rosters and links.

This is where the reference server keeps the rules the source document states for
Learning's side of the PowerSchool SIS import:

- every object is keyed by its import id (external id), a user by user type and external
  id (a student, a teacher and a parent may carry the same number); a row creates, updates or leaves
  unchanged the object with that key, and each row gets its own result;
- a class whose teacher does not exist fails; a roster row whose class or user does not
  exist fails (and so does a user level or parent link whose user does not exist);
- logins are unique in a domain (case-insensitively); a duplicate fails that row;
- a user without a login gets their Google/Office 365 email as login, else a generated
  one when "Autogenerate usernames at time of import" is on, else fails;
- a user on SSO authentication (google, office365, sso) keeps it whatever an import
  sends, and an authentication type an admin set is never changed by an import;
- passwords are applied when the user is created and never after, stored hashed,
  flagged temporary when the row (or the domain's "Imported passwords are temporary") says so;
- users are never deleted, only deactivated; nobody is ever notified of an import.

A batch is one transaction: valid rows are applied, invalid rows are reported with a
reason, and a row is never applied in part. The work is set-based (``batch_sql.py``): the
rows are validated together, existing objects and everything the rules refer to are read
with one query per kind (by key), new ones inserted and changed ones updated with one
executemany each, and a password is hashed once per domain (``passwords.PasswordHasher``):
1,000 rows take a few milliseconds of database time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, ClassVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from sandbox.learning import limits
from sandbox.learning.batch_sql import insert_rows, rows_by_keys, update_rows_by_id
from sandbox.learning.models import LearningBase, LearningClass, Organization, ParentLink, Roster, User, UserLevel
from sandbox.learning.passwords import PasswordHasher
from sandbox.learning.schemas import (
    ROLE_USER_TYPE,
    SSO_AUTHENTICATION_TYPES,
    ClassRow,
    DomainSettingsBody,
    OrganizationRow,
    ParentLinkKey,
    ParentLinkRow,
    RosterKey,
    RosterRow,
    UserKey,
    UserLevelRow,
    UserRow,
)


@dataclass
class RowOutcome:
    index: int
    key: str | None
    status: str
    reason: str | None = None
    note: str | None = None


class RowFailed(Exception):
    """A rule refused this row; the reason is shown to the district as is."""


def describe_validation_error(error: ValidationError) -> str:
    """One plain sentence per problem: which field, and what is wrong with it."""
    problems = []
    for detail in error.errors():
        field = ".".join(str(part) for part in detail["loc"]) or "row"
        if detail["type"] == "missing":
            problems.append(f"missing required field '{field}'")
        elif detail["type"] == "extra_forbidden":
            problems.append(f"unknown field '{field}'")
        else:
            problems.append(f"{field}: {detail['msg']}")
    return "; ".join(problems)


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _existing_users(session: Session, domain: str, users: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (user_type, external_id) of ``users`` that exist in the domain.

    A user is identified by type and external id: a student, a teacher and a parent with
    the same number are three users (PowerSchool keeps one id sequence per table).
    """
    found = rows_by_keys(
        session, User.__table__, domain, ("user_type", "external_id"), set(users), columns=("user_type", "external_id")
    )
    return set(found)


def _existing_keys(session: Session, domain: str, column: Any, keys: Iterable[str]) -> set[str]:
    table = column.class_.__table__
    found = rows_by_keys(session, table, domain, (column.key,), ((key,) for key in keys), columns=(column.key,))
    return {key[0] for key in found}


def _plain_letters(text: str) -> str:
    """ "José Núñez" -> "Jose Nunez": a generated login people can type."""
    return "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))


def _same_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by their set of columns (an executemany needs the same columns in every row)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        # In the order the columns were set (one code path builds a batch's rows: one group, as a rule).
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())


USER_TYPE_NAMES = {"S": "a student", "T": "a teacher", "P": "a parent"}


def _require_user(existing: set[tuple[str, str]], external_id: str, role: str, user_type: str) -> None:
    if (user_type, external_id) not in existing:
        raise RowFailed(f"{role} {user_type}:{external_id} does not exist in this domain")


class EntityImport:
    """How one Learning entity is keyed, checked and written. Subclasses hold the entity's rules."""

    entity: ClassVar[str]
    row_model: ClassVar[type[BaseModel]]
    table: ClassVar[type[LearningBase]]
    key_fields: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        session: Session,
        domain: str,
        settings: DomainSettingsBody,
        now: datetime,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        self.session = session
        self.domain = domain
        self.settings = settings
        self.now = now
        self.password_hasher = password_hasher

    # keys
    @classmethod
    def key_parts(cls, values: dict[str, Any] | BaseModel) -> tuple[str, ...] | None:
        """The key fields' values; None when one is missing or not a scalar (a row that failed validation)."""
        if isinstance(values, BaseModel):
            return tuple(getattr(values, field) for field in cls.key_fields)
        parts = [values.get(field) for field in cls.key_fields]
        if any(part is None or isinstance(part, dict | list) for part in parts):
            return None
        return tuple(str(part) for part in parts)

    @classmethod
    def key_of(cls, values: dict[str, Any] | BaseModel) -> str | None:
        """``"<id>"`` or ``"<id>:<id>"`` as the results show it."""
        parts = cls.key_parts(values) if isinstance(values, BaseModel | dict) else None
        return ":".join(parts) if parts is not None else None

    def load_existing(self, keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], Any]:
        """The stored rows of these keys, typed by SQLAlchemy (the read back shows them as they are)."""
        table = self.table.__table__
        columns = [table.c[field] for field in self.key_fields]
        found: dict[tuple[str, ...], Any] = {}
        for chunk in _chunks(keys):
            conditions = [
                column.in_(sorted({key[position] for key in chunk})) for position, column in enumerate(columns)
            ]
            wanted = set(chunk)
            for record in self.session.execute(select(table).where(table.c.domain == self.domain, *conditions)):
                key = tuple(getattr(record, field) for field in self.key_fields)
                if key in wanted:
                    found[key] = record
        return found

    def existing_rows(self, keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], Any]:
        """The stored rows of a batch's keys, for the import: one lookup per 500 keys, the driver's values."""
        return rows_by_keys(self.session, self.table.__table__, self.domain, self.key_fields, keys)

    # rules
    def prepare(self, rows: list[tuple[int, Any]], existing: dict[tuple[str, ...], Any]) -> None:
        """Bulk-load whatever the entity's rules refer to (one query per kind, not per row)."""

    def values(self, row: Any, existing: Any | None) -> tuple[dict[str, Any], str | None]:
        """The columns this row sets (raise RowFailed to refuse it) and an optional note.

        ``existing`` is the stored row with this key (a Core row, read by attribute), or None.
        """
        return row.model_dump(), None

    def accepted(self, row: Any, existing: Any | None, values: dict[str, Any]) -> None:
        """Called once a row is accepted, so later rows of the same batch see it."""

    # the batch
    @classmethod
    def key_getter(cls) -> Callable[[Any], tuple[str, ...]]:
        """row model -> its key fields' values, as a tuple."""
        if len(cls.key_fields) == 1:
            (field,) = cls.key_fields
            return lambda row: (getattr(row, field),)
        return attrgetter(*cls.key_fields)

    @classmethod
    def rows_adapter(cls) -> TypeAdapter:
        adapter = _LIST_ADAPTERS.get(cls.row_model)
        if adapter is None:
            adapter = _LIST_ADAPTERS[cls.row_model] = TypeAdapter(list[cls.row_model])  # type: ignore[name-defined]
        return adapter

    def validated(self, raw_rows: list[Any], outcomes: dict[int, RowOutcome]) -> list[tuple[int, Any]]:
        """(index, row model) of the rows that keep the row schema; the others fail here with the reason."""
        if all(type(raw) is dict for raw in raw_rows):
            try:
                # Usually every row is valid: one call validates them all.
                return list(enumerate(self.rows_adapter().validate_python(raw_rows)))
            except ValidationError:
                pass  # row by row below, so each bad row gets its own reason
        valid: list[tuple[int, Any]] = []
        for index, raw in enumerate(raw_rows):
            if not isinstance(raw, dict):
                outcomes[index] = RowOutcome(index, None, "failed", "a row must be a JSON object")
                continue
            try:
                valid.append((index, self.row_model.model_validate(raw)))
            except ValidationError as error:
                outcomes[index] = RowOutcome(index, self.key_of(raw), "failed", describe_validation_error(error))
        return valid

    def upsert(self, raw_rows: list[Any]) -> list[RowOutcome]:
        outcomes: dict[int, RowOutcome] = {}
        parsed: list[tuple[int, tuple[str, ...], str, Any]] = []
        first_index_of_key: dict[str, int] = {}
        key_parts = self.key_getter()
        for index, row in self.validated(raw_rows, outcomes):
            parts = key_parts(row)
            key = ":".join(parts)
            if key in first_index_of_key:
                outcomes[index] = RowOutcome(
                    index,
                    key,
                    "failed",
                    f"{self.entity} key {key} appears twice in this batch "
                    f"(first at index {first_index_of_key[key]}); send each key once",
                )
                continue
            first_index_of_key[key] = index
            parsed.append((index, parts, key, row))

        existing = self.existing_rows([parts for _, parts, _, _ in parsed])
        self.prepare([(index, row) for index, _, _, row in parsed], existing)
        inserts: list[dict[str, Any]] = []
        ordered_updates: list[dict[str, Any]] = []  # must run one by one, in batch order (see UserImport)
        updates: list[dict[str, Any]] = []
        now = self.now
        for index, parts, key, row in parsed:
            current = existing.get(parts)
            try:
                values, note = self.values(row, current)
            except RowFailed as failure:
                outcomes[index] = RowOutcome(index, key, "failed", str(failure))
                continue
            self.accepted(row, current, values)
            if current is None:
                inserts.append({**values, "domain": self.domain, "created_at": now, "updated_at": now})
                outcomes[index] = RowOutcome(index, key, "created", note=note)
                continue
            stored = current._mapping
            changed = {name: value for name, value in values.items() if stored[name] != value}
            if not changed:
                outcomes[index] = RowOutcome(index, key, "unchanged", note=note)
                continue
            if self.must_update_in_order(changed):
                ordered_updates.append({"row_id": current.id, **changed, "updated_at": now})
            else:
                # the whole row, not just what changed: one UPDATE statement fits the whole batch
                updates.append({"row_id": current.id, **values, "updated_at": now})
            outcomes[index] = RowOutcome(index, key, "updated", note=note)

        # Updates before inserts: a login released by an update may be taken by a created user.
        table = self.table.__table__
        for change in ordered_updates:
            update_rows_by_id(self.session, table, [change])
        for group in _same_columns(updates):
            update_rows_by_id(self.session, table, group)
        for group in _same_columns(inserts):
            insert_rows(self.session, table, group)
        return [outcomes[index] for index in range(len(raw_rows))]

    def must_update_in_order(self, changed: dict[str, Any]) -> bool:
        return False


# row model -> TypeAdapter(list[row model]), built once
_LIST_ADAPTERS: dict[type[BaseModel], TypeAdapter] = {}


class OrganizationImport(EntityImport):
    entity = "organizations"
    row_model = OrganizationRow
    table = Organization
    key_fields = ("organization_id",)


class UserImport(EntityImport):
    entity = "users"
    row_model = UserRow
    table = User
    key_fields = ("user_type", "external_id")

    def prepare(self, rows: list[tuple[int, UserRow]], existing: dict[tuple[str, ...], Any]) -> None:
        self.hash_password = self.password_hasher or PasswordHasher()
        self.batch_password_hashes: dict[str, str] = {}
        self.organizations = _existing_keys(
            self.session, self.domain, Organization.organization_id, (row.organization_id for _, row in rows)
        )
        wanted_logins = {
            ((row.login or row.sso_email_address).lower(),) for _, row in rows if row.login or row.sso_email_address
        }
        # login_key -> "<user_type>:<external_id>" of its holder, as the batch goes (a row may free a
        # login for a later row).
        owners = rows_by_keys(
            self.session,
            User.__table__,
            self.domain,
            ("login_key",),
            wanted_logins,
            columns=("login_key", "user_type", "external_id"),
        )
        self.login_owners: dict[str, str] = {
            key[0]: f"{record.user_type}:{record.external_id}" for key, record in owners.items()
        }
        self.released_logins: set[str] = set()

    def _password_hash(self, password: str) -> str:
        # The batch's users share the district default: the domain's hasher is asked once per batch.
        stored = self.batch_password_hashes.get(password)
        if stored is None:
            stored = self.batch_password_hashes[password] = self.hash_password(password)
        return stored

    def _generate_login(self, row: UserRow) -> str:
        """first.last (letters and digits), then first.last2, 3, ...: the first free one, deterministically."""
        parts = (re.sub(r"[^a-z0-9]", "", _plain_letters(name).lower()) for name in (row.first_name, row.last_name))
        base = ".".join(part for part in parts if part)
        base = (base or "user")[: limits.LOGIN_LENGTH - 6]
        taken_in_database = set(
            self.session.scalars(
                select(User.login_key).where(User.domain == self.domain, User.login_key.like(f"{base}%"))
            )
        )
        suffix = 1
        while True:
            candidate = base if suffix == 1 else f"{base}{suffix}"
            holder = self.login_owners.get(candidate)
            if holder is None and (candidate not in taken_in_database or candidate in self.released_logins):
                return candidate
            suffix += 1

    def values(self, row: UserRow, existing: Any | None) -> tuple[dict[str, Any], str | None]:
        if row.organization_id not in self.organizations:
            raise RowFailed(
                f"organization {row.organization_id} does not exist in this domain (import the organization first)"
            )
        if row.login:
            login, generated = row.login, False
        elif existing is not None:
            login, generated = existing.login, existing.login_generated
        elif row.sso_email_address:
            login, generated = row.sso_email_address, False
        elif self.settings.autogenerate_usernames:
            login, generated = self._generate_login(row), True
        else:
            raise RowFailed(
                "no login: the row has neither a login nor a Google/Office 365 email (sso_email_address), "
                "and 'autogenerate usernames' is off in the domain settings"
            )
        login_key = login.lower()
        holder = self.login_owners.get(login_key)
        if holder is not None and holder != _identity(row):
            raise RowFailed(f"login '{login}' is already used by user {holder} in this domain (logins are unique)")

        note = None
        if existing is None:
            authentication_type = row.authentication_type or "password"
        else:
            authentication_type = existing.authentication_type
            kept_because = None
            if existing.authentication_set_by == "admin":
                kept_because = "an admin set it"
            elif existing.authentication_type in SSO_AUTHENTICATION_TYPES:
                kept_because = "SSO authentication is only changed by hand"
            elif row.authentication_type:
                authentication_type = row.authentication_type
            if kept_because and row.authentication_type and row.authentication_type != existing.authentication_type:
                note = (
                    f"authentication_type stays '{existing.authentication_type}' ({kept_because}); "
                    f"the import's '{row.authentication_type}' was not applied"
                )

        values: dict[str, Any] = {
            "external_id": row.external_id,
            "first_name": row.first_name,
            "last_name": row.last_name,
            "login": login,
            "login_key": login_key,
            "login_generated": generated,
            "email": row.email,
            "user_type": row.user_type,
            "organization_id": row.organization_id,
            "enabled": row.enabled,
            "sso_email_address": row.sso_email_address,
            "authentication_type": authentication_type,
        }
        if existing is None:
            values["authentication_set_by"] = "import"
            values["password_hash"] = self._password_hash(row.password) if row.password else None
            temporary = row.password_temporary
            if temporary is None:
                temporary = self.settings.imported_passwords_temporary
            values["password_temporary"] = bool(row.password and temporary)
            values["deactivated_at"] = None if row.enabled else self.now
        elif row.enabled != existing.enabled:
            values["deactivated_at"] = None if row.enabled else self.now
        return values, note

    def accepted(self, row: UserRow, existing: Any | None, values: dict[str, Any]) -> None:
        releases_old_login = existing is not None and existing.login_key != values["login_key"]
        identity = _identity(row)
        if releases_old_login and self.login_owners.get(existing.login_key, identity) == identity:
            self.login_owners.pop(existing.login_key, None)
            self.released_logins.add(existing.login_key)
        self.login_owners[values["login_key"]] = identity
        self.released_logins.discard(values["login_key"])

    def must_update_in_order(self, changed: dict[str, Any]) -> bool:
        # A login handed from one user to another in the same batch: the release must reach the
        # database before the claim, or the unique constraint refuses the claim.
        return "login_key" in changed


class UserLevelImport(EntityImport):
    entity = "user_levels"
    row_model = UserLevelRow
    table = UserLevel
    key_fields = ("external_id",)

    def prepare(self, rows: list[tuple[int, UserLevelRow]], existing: dict[tuple[str, ...], Any]) -> None:
        self.users = _existing_users(self.session, self.domain, (("S", row.external_id) for _, row in rows))

    def values(self, row: UserLevelRow, existing: Any | None) -> tuple[dict[str, Any], str | None]:
        # A user level belongs to a student: external_id is a student's.
        _require_user(self.users, row.external_id, "user", "S")
        return {"external_id": row.external_id, "level_id": row.level_id}, None


class ClassImport(EntityImport):
    entity = "classes"
    row_model = ClassRow
    table = LearningClass
    key_fields = ("class_id",)

    def prepare(self, rows: list[tuple[int, ClassRow]], existing: dict[tuple[str, ...], Any]) -> None:
        self.users = _existing_users(self.session, self.domain, (("T", row.teacher_id) for _, row in rows))
        self.organizations = _existing_keys(
            self.session, self.domain, Organization.organization_id, (row.organization_id for _, row in rows)
        )

    def values(self, row: ClassRow, existing: Any | None) -> tuple[dict[str, Any], str | None]:
        _require_user(self.users, row.teacher_id, "teacher", "T")
        if row.organization_id not in self.organizations:
            raise RowFailed(
                f"organization {row.organization_id} does not exist in this domain (import the organization first)"
            )
        return row.model_dump(), None


class RosterImport(EntityImport):
    entity = "rosters"
    row_model = RosterRow
    table = Roster
    key_fields = ("class_id", "user_type", "user_id")

    def prepare(self, rows: list[tuple[int, RosterRow]], existing: dict[tuple[str, ...], Any]) -> None:
        self.users = _existing_users(self.session, self.domain, ((row.user_type, row.user_id) for _, row in rows))
        self.classes = _existing_keys(
            self.session, self.domain, LearningClass.class_id, (row.class_id for _, row in rows)
        )

    def values(self, row: RosterRow, existing: Any | None) -> tuple[dict[str, Any], str | None]:
        if row.class_id not in self.classes:
            raise RowFailed(f"class {row.class_id} does not exist in this domain")
        if row.user_type != ROLE_USER_TYPE[row.role]:
            raise RowFailed(
                f"role '{row.role}' needs {USER_TYPE_NAMES[ROLE_USER_TYPE[row.role]]} "
                f"(user_type {ROLE_USER_TYPE[row.role]}), not user_type {row.user_type}"
            )
        _require_user(self.users, row.user_id, "user", row.user_type)
        return {"class_id": row.class_id, "user_type": row.user_type, "user_id": row.user_id, "role": row.role}, None


class ParentLinkImport(EntityImport):
    entity = "parent_links"
    row_model = ParentLinkRow
    table = ParentLink
    key_fields = ("parent_id", "child_id")

    def prepare(self, rows: list[tuple[int, ParentLinkRow]], existing: dict[tuple[str, ...], Any]) -> None:
        wanted = [("P", row.parent_id) for _, row in rows] + [("S", row.child_id) for _, row in rows]
        self.users = _existing_users(self.session, self.domain, wanted)

    def values(self, row: ParentLinkRow, existing: Any | None) -> tuple[dict[str, Any], str | None]:
        # parent_id is a parent's external id, child_id a student's.
        _require_user(self.users, row.parent_id, "parent", "P")
        _require_user(self.users, row.child_id, "child", "S")
        return {"parent_id": row.parent_id, "child_id": row.child_id}, None


ENTITY_IMPORTS: dict[str, type[EntityImport]] = {
    importer.entity: importer
    for importer in (OrganizationImport, UserImport, UserLevelImport, ClassImport, RosterImport, ParentLinkImport)
}


def upsert_batch(
    session: Session,
    domain: str,
    entity: str,
    rows: list[Any],
    settings: DomainSettingsBody,
    password_hasher: PasswordHasher | None = None,
) -> list[RowOutcome]:
    """Upsert one batch of ``entity`` rows into ``domain`` inside the caller's transaction.

    ``password_hasher``: the domain's (the server keeps one per domain, so a district's
    default password is hashed once, not once per batch); default a fresh one.
    """
    importer = ENTITY_IMPORTS[entity](session, domain, settings, datetime.now(UTC), password_hasher)
    return importer.upsert(rows)


def _identity(row: Any) -> str:
    """``"<user_type>:<external_id>"``: how a user is named in results and reasons."""
    return f"{row.user_type}:{row.external_id}"


def deactivate_users(session: Session, domain: str, raw_users: list[Any]) -> list[RowOutcome]:
    """Disable users (never delete: their work, grades and history stay in Learning).

    Each item is ``{"user_type", "external_id"}``; its result key is ``"<user_type>:<external_id>"``.
    """
    now = datetime.now(UTC)
    outcomes: dict[int, RowOutcome] = {}
    wanted: list[tuple[int, tuple[str, str]]] = []
    for index, raw in enumerate(raw_users):
        if not isinstance(raw, dict):
            outcomes[index] = RowOutcome(index, None, "failed", "a user must be a JSON object {user_type, external_id}")
            continue
        try:
            user_key = UserKey.model_validate(raw)
        except ValidationError as error:
            outcomes[index] = RowOutcome(index, UserImport.key_of(raw), "failed", describe_validation_error(error))
            continue
        wanted.append((index, (user_key.user_type, user_key.external_id)))
    users = rows_by_keys(
        session,
        User.__table__,
        domain,
        ("user_type", "external_id"),
        (key for _, key in wanted),
        columns=("id", "user_type", "external_id", "enabled"),
    )
    to_disable: set[int] = set()
    for index, key in wanted:
        user = users.get(key)
        name = ":".join(key)
        if user is None:
            outcomes[index] = RowOutcome(index, name, "failed", f"user {name} does not exist in this domain")
        elif not user.enabled or user.id in to_disable:
            outcomes[index] = RowOutcome(index, name, "unchanged", note="already deactivated")
        else:
            to_disable.add(user.id)
            outcomes[index] = RowOutcome(index, name, "deactivated")
    if to_disable:
        session.execute(
            update(User)
            .where(User.id.in_(sorted(to_disable)))
            .values(enabled=False, deactivated_at=now, updated_at=now)
        )
    return [outcomes[index] for index in range(len(raw_users))]


REMOVABLE: dict[str, tuple[type[LearningBase], type[BaseModel], tuple[str, ...]]] = {
    "rosters": (Roster, RosterKey, ("class_id", "user_type", "user_id")),
    "parent_links": (ParentLink, ParentLinkKey, ("parent_id", "child_id")),
}


def remove_rows(session: Session, domain: str, entity: str, raw_rows: list[Any]) -> list[RowOutcome]:
    """Remove roster rows or parent links by key; a key that is not there is ``unchanged``."""
    table, key_model, fields = REMOVABLE[entity]
    outcomes: dict[int, RowOutcome] = {}
    keys: list[tuple[int, tuple[str, ...]]] = []
    for index, raw in enumerate(raw_rows):
        if not isinstance(raw, dict):
            outcomes[index] = RowOutcome(index, None, "failed", "a row must be a JSON object")
            continue
        try:
            row = key_model.model_validate(raw)
        except ValidationError as error:
            parts = [raw.get(name) for name in fields]
            key = ":".join(map(str, parts)) if all(isinstance(part, str | int) for part in parts) else None
            outcomes[index] = RowOutcome(index, key, "failed", describe_validation_error(error))
            continue
        keys.append((index, tuple(getattr(row, name) for name in fields)))
    stored = rows_by_keys(session, table.__table__, domain, fields, (pair for _, pair in keys), columns=("id",))
    found = {pair: record.id for pair, record in stored.items()}
    to_delete: set[int] = set()
    for index, pair in keys:
        key = ":".join(pair)
        row_id = found.get(pair)
        if row_id is None or row_id in to_delete:
            outcomes[index] = RowOutcome(index, key, "unchanged", note="not present")
        else:
            to_delete.add(row_id)
            outcomes[index] = RowOutcome(index, key, "removed")
    if to_delete:
        session.execute(delete(table).where(table.id.in_(sorted(to_delete))))
    return [outcomes[index] for index in range(len(raw_rows))]


def summarize(outcomes: list[RowOutcome]) -> dict[str, int]:
    summary: dict[str, int] = {"total": len(outcomes)}
    for outcome in outcomes:
        summary[outcome.status] = summary.get(outcome.status, 0) + 1
    return summary
