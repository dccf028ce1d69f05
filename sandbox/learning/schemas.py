"""The Learning API's request and answer bodies (the contract of docs/architecture.md, "The Learning API").

The import row models follow the source document's mapping tables column for column
(users: external_id, first_name, last_name, login, password, email, user_type,
organization_id, enabled, sso_email_address; user levels; classes; rosters; parent-child
links; organizations). Rows forbid unknown fields and enforce the limits of
``limits.py``: a bad row fails on its own, it is never applied in part.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.learning import limits

AuthenticationType = Literal["password", "google", "office365", "sso"]
# Once a user is on one of these, only an admin can change it (the source document's "fail safe").
SSO_AUTHENTICATION_TYPES = frozenset({"google", "office365", "sso"})
UserType = Literal["S", "T", "P"]
RosterRole = Literal["teacher", "co-teacher", "student"]
# The gradable types the source document lists for grade push ("Dropbox", "Assignment",
# "LTI_SCORM", "Discussion", "Wiki", "Assessment"). Learning knows other types too, so the
# server takes any type name; grade push decides which it sends (docs/grade-push.md).
DOCUMENTED_GRADABLE_TYPES = ("Assignment", "Assessment", "Dropbox", "Discussion", "Wiki", "LTI_SCORM")
GradableType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=limits.GRADABLE_TYPE_LENGTH,
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="The gradable's type: one of "
        + ", ".join(DOCUMENTED_GRADABLE_TYPES)
        + " (the source document's list) or another Learning type name.",
    ),
]
GradebookEvent = Literal[
    "score_set",
    "score_cleared",
    "gradable_created",
    "gradable_edited",
    "gradable_deleted",
    "class_linked",
    "class_unlinked",
]


def _text(max_length: int, min_length: int = 1) -> Any:
    return Field(min_length=min_length, max_length=max_length)


ExternalId = Annotated[str, _text(limits.EXTERNAL_ID_LENGTH)]
Name = Annotated[str, _text(limits.NAME_LENGTH)]
Email = Annotated[str, Field(max_length=limits.EMAIL_LENGTH, pattern=r"^[^@\s]+@[^@\s]+$")]


class StrictModel(BaseModel):
    # DCIDs often travel as JSON numbers; they are identifiers, so they become strings.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def _blank_to_none(value: Any) -> Any:
    """An empty optional text means "not given" (SIS exports send "" for a missing email)."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


# --- import rows -------------------------------------------------------------------------


class OrganizationRow(StrictModel):
    organization_id: ExternalId
    name: Name


class UserRow(StrictModel):
    external_id: ExternalId
    first_name: Name
    last_name: Name
    login: Annotated[str | None, Field(max_length=limits.LOGIN_LENGTH)] = None
    email: Email | None = None
    user_type: UserType
    organization_id: ExternalId
    enabled: bool = True
    sso_email_address: Email | None = None
    authentication_type: AuthenticationType | None = Field(
        default=None,
        description="Applied only while the user has neither an admin-set nor an SSO authentication type.",
    )
    password: Annotated[str | None, Field(max_length=limits.PASSWORD_LENGTH)] = Field(
        default=None, description="Plain text over TLS, stored hashed; applied when the user is created, never after."
    )
    password_temporary: bool | None = Field(
        default=None, description="Default: the domain setting imported_passwords_temporary."
    )

    _blank_optional = field_validator("login", "email", "sso_email_address", "password", mode="before")(_blank_to_none)


class UserLevelRow(StrictModel):
    external_id: ExternalId
    level_id: Annotated[str, _text(limits.LEVEL_LENGTH)]


class ClassRow(StrictModel):
    class_id: ExternalId
    name: Annotated[str, _text(limits.CLASS_NAME_LENGTH)]
    code: Annotated[str | None, Field(max_length=limits.CODE_LENGTH)] = None
    year: Annotated[str | None, Field(max_length=limits.EXTERNAL_ID_LENGTH)] = None
    teacher_id: ExternalId
    organization_id: ExternalId


ROLE_USER_TYPE = {"student": "S", "teacher": "T", "co-teacher": "T"}


class RosterRow(StrictModel):
    class_id: ExternalId
    user_type: UserType = Field(description="The user's type: S for the role student, T for teacher and co-teacher.")
    user_id: ExternalId
    role: RosterRole = "student"


class ParentLinkRow(StrictModel):
    parent_id: ExternalId
    child_id: ExternalId


class RosterKey(StrictModel):
    class_id: ExternalId
    user_type: UserType
    user_id: ExternalId


class UserKey(StrictModel):
    """A user is identified by type and external id (a student and a teacher may share a number)."""

    user_type: UserType
    external_id: ExternalId


class ParentLinkKey(StrictModel):
    parent_id: ExternalId
    child_id: ExternalId


# --- batch envelopes -----------------------------------------------------------------------


def batch_model(name: str, row_model: type[BaseModel], description: str) -> type[BaseModel]:
    """A ``{"rows": [...]}`` body whose rows are checked one by one (a bad row fails alone).

    The envelope only asks for a non-empty list; each row is validated against
    ``row_model`` by the import so that one bad row cannot sink the other 999. The
    OpenAPI document still shows the row schema.
    """
    row_schema = row_model.model_json_schema()
    return type(
        name,
        (StrictModel,),
        {
            "__annotations__": {"rows": list[Any]},
            "__doc__": description,
            "rows": Field(
                min_length=1,
                description=f"1 to {limits.MAX_BATCH_ROWS} rows; more is refused with 413.",
                json_schema_extra={"items": row_schema, "maxItems": limits.MAX_BATCH_ROWS},
            ),
        },
    )


class DeactivateRequest(StrictModel):
    users: list[Any] = Field(
        min_length=1,
        description=f"1 to {limits.MAX_BATCH_ROWS} users, each {{user_type, external_id}}.",
        json_schema_extra={"items": UserKey.model_json_schema(), "maxItems": limits.MAX_BATCH_ROWS},
    )


RowStatus = Literal["created", "updated", "unchanged", "failed", "deactivated", "removed"]


class RowResult(BaseModel):
    index: int
    key: str | None
    status: RowStatus
    reason: str | None = None
    note: str | None = Field(
        default=None, description="What the server kept or decided, e.g. a sticky authentication type."
    )


class BatchAnswer(BaseModel):
    results: list[RowResult]
    summary: dict[str, int] = Field(description="Count per status, plus total.")


# --- read back -------------------------------------------------------------------------------


class Page(BaseModel):
    rows: list[dict[str, Any]]
    page: int
    page_size: int
    total: int
    has_more: bool


# --- domain settings -------------------------------------------------------------------------


class DomainSettingsBody(StrictModel):
    """Manage Domain -> Settings, PowerSchool Config and Grade Push Config."""

    grade_push_organizations: list[ExternalId] = Field(
        default_factory=list, description="Organizations with grade push enabled (Grade Push Config)."
    )
    autogenerate_usernames: bool = Field(
        default=False, description="A user with neither a login nor an SSO email gets a generated login."
    )
    imported_passwords_temporary: bool = Field(
        default=False, description="Default for a created user's password_temporary."
    )
    ignore_parents: bool = False
    powerschool_host: Annotated[str | None, Field(max_length=limits.POWERSCHOOL_HOST_LENGTH)] = None


class DomainSettingsUpdate(StrictModel):
    """PUT body: the fields sent replace theirs; the others keep their value."""

    grade_push_organizations: list[ExternalId] | None = None
    autogenerate_usernames: bool | None = None
    imported_passwords_temporary: bool | None = None
    ignore_parents: bool | None = None
    powerschool_host: Annotated[str | None, Field(max_length=limits.POWERSCHOOL_HOST_LENGTH)] = None


# --- admin and teacher side -------------------------------------------------------------------


class AuthenticationBody(StrictModel):
    authentication_type: AuthenticationType


class HandMadeUserBody(StrictModel):
    """A user an admin creates by hand (or an earlier integration left): no Import ID, or an old one."""

    user_type: UserType
    first_name: Name
    last_name: Name
    login: Annotated[str, Field(min_length=1, max_length=limits.LOGIN_LENGTH)]
    email: Email | None = None
    sso_email_address: Email | None = None
    organization_id: ExternalId
    external_id: ExternalId | None = Field(default=None, description="An earlier integration's Import ID, if any.")
    authentication_type: AuthenticationType = "password"

    _blank_optional = field_validator("email", "sso_email_address", mode="before")(_blank_to_none)


class ImportIdBody(StrictModel):
    external_id: ExternalId = Field(description="The user's new Import ID (the SIS DCID of their record).")


class NotificationBody(StrictModel):
    kind: Literal["credentials", "message"] = "credentials"


class GradableBody(StrictModel):
    title: Annotated[str, _text(limits.GRADABLE_TITLE_LENGTH)]
    description: Annotated[str | None, Field(max_length=limits.GRADABLE_DESCRIPTION_LENGTH)] = None
    due_date: Annotated[str | None, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = Field(
        default=None, description="YYYY-MM-DD"
    )
    total_points: float = Field(gt=0, le=100000)
    type: GradableType = "Assignment"


class GradableUpdate(StrictModel):
    title: Annotated[str | None, _text(limits.GRADABLE_TITLE_LENGTH)] = None
    description: Annotated[str | None, Field(max_length=limits.GRADABLE_DESCRIPTION_LENGTH)] = None
    due_date: Annotated[str | None, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None
    total_points: float | None = Field(default=None, gt=0, le=100000)
    type: GradableType | None = None


class ScoreBody(StrictModel):
    score: Annotated[str | None, Field(max_length=limits.SCORE_LENGTH)] = Field(
        description='The score as entered ("87", "9.5"); null clears it.'
    )


class ClassLinkBody(StrictModel):
    imported_class_id: ExternalId = Field(description="The imported class (its import id) this class is linked to.")


class ClassLinkOut(BaseModel):
    class_id: str
    imported_class_id: str | None
    changed: bool


class GradableOut(BaseModel):
    id: int
    class_id: str
    title: str
    description: str | None
    due_date: str | None
    total_points: float
    type: str
    revision: int = Field(description="1 at creation, +1 per edit of the gradable's fields.")
    deleted: bool


class ScoreOut(BaseModel):
    gradable_id: int
    student_id: str
    score: str | None
    version: int
    changed_at: str
    changed: bool = Field(description="False when the score was already this value (no new change in the feed).")


class GradebookChangeOut(BaseModel):
    cursor: int
    event: GradebookEvent = Field(
        description=(
            "score_set / score_cleared (a score entered, changed or cleared: `student_id`, `score`, `version`); "
            "gradable_created / gradable_edited (`changed_fields`) / gradable_deleted (`gradable`, `revision`); "
            "class_linked / class_unlinked (`linked_class_id`: the imported class); linking re-emits the class's "
            "gradables and scores after the class_linked entry."
        )
    )
    class_id: str
    organization_id: str
    teacher_id: str
    year: str | None
    grade_push_enabled: bool = Field(description="The class's organization has grade push enabled (domain settings).")
    linked_class_id: str | None = Field(
        description=(
            "The imported class this class is linked to at read time (class_unlinked: the one it was linked to); "
            "null when not linked."
        )
    )
    gradable: GradableOut | None = Field(description="The gradable's current fields (null for link events).")
    revision: int | None = Field(description="Gradable events: the gradable's revision this entry records.")
    changed_fields: list[str] | None = Field(description="gradable_edited: the fields that changed.")
    student_id: str | None
    score: str | None
    version: int | None = Field(description="Score events: counts the changes of this (gradable, student) score.")
    changed_at: str


class GradebookChanges(BaseModel):
    changes: list[GradebookChangeOut]
    next_cursor: int = Field(description="Pass as `after` to get what follows; equals `after` when nothing is new.")
    has_more: bool


class Message(BaseModel):
    message: str
    errors: list[dict[str, Any]] | None = None
