"""Domains (one per district) and their bearer tokens, from the command line or the environment.

``--domain demo:TOKEN`` (repeatable) or ``SANDBOX_LEARNING_DOMAINS="demo:TOKEN,other:TOKEN2"``.
Tokens live only in the server's memory: never in its database, never in a log line.
"""

from __future__ import annotations

import hmac
import re
import secrets

DOMAINS_ENV = "SANDBOX_LEARNING_DOMAINS"
DOMAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_TOKEN_LENGTH = 16


class DomainSpecError(ValueError):
    pass


def parse_domain_specs(specs: list[str]) -> dict[str, str]:
    """``["demo:TOKEN", ...]`` -> ``{"demo": "TOKEN"}`` with a clear error for each mistake."""
    domains: dict[str, str] = {}
    for spec in specs:
        name, separator, token = spec.partition(":")
        if not separator or not name or not token:
            raise DomainSpecError(
                f"domain spec {spec.split(':')[0]!r}...: expected NAME:TOKEN, e.g. demo:$(openssl rand -hex 16)"
            )
        if not DOMAIN_NAME.match(name):
            raise DomainSpecError(f"domain name {name!r}: use lower-case letters, digits, '-' or '_' (at most 64)")
        if len(token) < MIN_TOKEN_LENGTH:
            raise DomainSpecError(f"domain {name}: the token must have at least {MIN_TOKEN_LENGTH} characters")
        if name in domains:
            raise DomainSpecError(f"domain {name} is given twice")
        if token in domains.values():
            raise DomainSpecError(f"domain {name}: every domain needs its own token")
        domains[name] = token
    return domains


def parse_domains_env(value: str) -> dict[str, str]:
    return parse_domain_specs([part.strip() for part in value.split(",") if part.strip()])


def new_token() -> str:
    return secrets.token_urlsafe(24)


class TokenBook:
    """Maps a presented bearer token to its domain, comparing in constant time."""

    def __init__(self, domains: dict[str, str]) -> None:
        if not domains:
            raise DomainSpecError("at least one domain is needed")
        self._domains = dict(domains)

    @property
    def names(self) -> list[str]:
        return sorted(self._domains)

    def domain_for(self, token: str) -> str | None:
        found = None
        for name, expected in self._domains.items():
            # compare against every token so the time taken does not tell which one nearly matched
            if hmac.compare_digest(token.encode(), expected.encode()):
                found = name
        return found
