"""Password hashing for imported users (the source document: "Passwords are not passed via the
PowerSchool SIS integration. PowerSchool Learning can set default passwords for you").

Only a scrypt hash is ever stored (``scrypt$n$r$p$salt$hash``, standard library only).
An import sends the district's default password for every created user, and one scrypt
hash takes 50-90 ms (it is meant to be slow), so the server keeps one ``PasswordHasher``
per domain that hashes each distinct password once, with a fresh salt, and reuses that
hash for the domain's later users with the same password while the server runs. (Hashing
per user would take longer than the import itself: a 200,000-student district would
spend hours in scrypt.) The cache is bounded and keyed by an HMAC of the password under
a key that exists only in this process: the plain text is never kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections import OrderedDict

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
    """Hashes each distinct password once, then reuses the hash (one hasher per domain).

    Holds at most ``max_passwords`` hashes (least recently used dropped first), keyed by
    HMAC-SHA256 under a random per-process key, never by the password itself.
    """

    def __init__(self, max_passwords: int = 16) -> None:
        self._key = os.urandom(32)
        self._max_passwords = max_passwords
        self._hashes: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, password: str) -> str:
        fingerprint = hmac.new(self._key, password.encode("utf-8"), hashlib.sha256).digest()
        with self._lock:
            stored = self._hashes.get(fingerprint)
            if stored is not None:
                self._hashes.move_to_end(fingerprint)
                return stored
        stored = hash_password(password)
        with self._lock:
            self._hashes[fingerprint] = stored
            while len(self._hashes) > self._max_passwords:
                self._hashes.popitem(last=False)
        return stored
