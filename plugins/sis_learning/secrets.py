"""Resolve a district's secret references (the default password) at load time only.

The source document: "Passwords are not passed via the PowerSchool SIS Integration.
PowerSchool Learning can set default passwords for you." The district YAML therefore
names the default password by reference, never by value:

- ``env:NAME``: the environment variable NAME;
- ``variable:NAME``: the Airflow Variable NAME;
- ``connection:CONN_ID``: the password of the Airflow connection CONN_ID.

The value is resolved only when the load sends new users, is registered with Airflow's
secrets masker so it can never appear in a task log, and is never stored in a staged
table. Errors name the reference and the fix, never the value.
"""

from __future__ import annotations

import os

from sis_learning.config import SECRET_REFERENCE_PATTERN
from sis_learning.exceptions import SecretReferenceError


def _mask(value: str) -> None:
    # Airflow's masker replaces the value with *** in every log line of this process
    # (and the supervisor's, inside a task). Outside Airflow it is still harmless.
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow is always installed with the pipeline
        return
    # No name: with a name, Airflow masks only when the name looks sensitive.
    mask_secret(value)


def resolve_secret(reference: str) -> str:
    """Return the secret a reference points at (``env:``, ``variable:``, ``connection:``).

    Raises SecretReferenceError with the reference and the fix when it cannot be found.
    """
    if not isinstance(reference, str) or not SECRET_REFERENCE_PATTERN.match(reference):
        raise SecretReferenceError(
            f"{reference!r} is not a secret reference: use env:NAME, variable:NAME or connection:CONN_ID"
        )
    kind, name = reference.split(":", 1)
    value: str | None
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise SecretReferenceError(f"secret {reference}: environment variable {name} is not set (or empty)")
    elif kind == "variable":
        from airflow.sdk import Variable

        try:
            value = Variable.get(name)
        except Exception as error:  # Airflow raises different types per context
            raise SecretReferenceError(
                f"secret {reference}: Airflow Variable {name!r} not found ({type(error).__name__}); create it"
            ) from None
        if not value:
            raise SecretReferenceError(f"secret {reference}: Airflow Variable {name!r} is empty")
    else:
        from airflow.sdk import BaseHook

        try:
            connection = BaseHook.get_connection(name)
        except Exception as error:
            raise SecretReferenceError(
                f"secret {reference}: Airflow connection {name!r} not found ({type(error).__name__}); create it"
            ) from None
        value = connection.password
        if not value:
            raise SecretReferenceError(f"secret {reference}: Airflow connection {name!r} has no password set")
    _mask(value)
    return value
