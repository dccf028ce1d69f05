"""A domain's settings: the source document's "Manage Domain" screens, as one document per domain.

- Grade Push Config: "click to Enable each Organization" -> ``grade_push_organizations``.
  Like Learning, only an organization that exists (has been imported) can be enabled.
- Settings > General: "Autogenerate usernames at time of import" -> ``autogenerate_usernames``.
- Settings > Users: "Imported passwords are temporary" -> ``imported_passwords_temporary``.
- PowerSchool Config: "Ignore Parents from SIS" -> ``ignore_parents``; Settings: the
  "PowerSchool SIS host" -> ``powerschool_host``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.learning.models import DomainSettings, Organization
from sandbox.learning.schemas import DomainSettingsBody, DomainSettingsUpdate


class UnknownOrganizations(ValueError):
    """Grade push can only be enabled for organizations the domain has."""


def read_settings(session: Session, domain: str) -> DomainSettingsBody:
    stored = session.get(DomainSettings, domain)
    return DomainSettingsBody.model_validate(stored.settings if stored else {})


def update_settings(session: Session, domain: str, changes: DomainSettingsUpdate) -> DomainSettingsBody:
    current = read_settings(session, domain)
    merged = current.model_copy(update=changes.model_dump(exclude_unset=True))
    merged = DomainSettingsBody.model_validate(merged.model_dump())
    organizations = sorted(set(merged.grade_push_organizations))
    if organizations:
        known = set(
            session.scalars(
                select(Organization.organization_id).where(
                    Organization.domain == domain, Organization.organization_id.in_(organizations)
                )
            )
        )
        unknown = [organization for organization in organizations if organization not in known]
        if unknown:
            raise UnknownOrganizations(
                f"grade push cannot be enabled for organizations that do not exist in this domain: "
                f"{', '.join(unknown)} (run an import first)"
            )
    merged = merged.model_copy(update={"grade_push_organizations": organizations})
    stored = session.get(DomainSettings, domain)
    now = datetime.now(UTC)
    if stored is None:
        session.add(DomainSettings(domain=domain, settings=merged.model_dump(), updated_at=now))
    else:
        stored.settings = merged.model_dump()
        stored.updated_at = now
    return merged
