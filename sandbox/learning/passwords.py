"""Password hashing for imported users (the source document: "Passwords are not passed via the
PowerSchool SIS integration. PowerSchool Learning can set default passwords for you").

Only a scrypt hash is ever stored (``scrypt$n$r$p$salt$hash``, standard library only).
An import sends the district's default password for every created user, so one batch
hashes each distinct password once (``PasswordHasher``), with a fresh salt per batch:
hashing 1,000 times at scrypt's cost would take far longer than the batch itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(_unb64(digest))
    )
    return hmac.compare_digest(candidate, _unb64(digest))


class PasswordHasher:
    """Hashes each distinct password of one batch once."""

    def __init__(self) -> None:
        self._hashes: dict[str, str] = {}

    def __call__(self, password: str) -> str:
        stored = self._hashes.get(password)
        if stored is None:
            stored = self._hashes[password] = hash_password(password)
        return stored
