"""Passwords for the broker: generated with ``secrets``, stored only as Mosquitto's PBKDF2 hash.

Mosquitto's dynamic-security plugin stores a client's password as
``PBKDF2-HMAC-SHA512(password, salt, iterations)``, both hash and salt base64-encoded, next to
the iteration count (checked against ``mosquitto_ctrl dynsec init`` output: the salt is used as
its decoded bytes). Writing the initial JSON ourselves in this form means no plaintext password
ever sits on the broker's side; the plaintext lives only in the client's credential file.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

__all__ = [
    "PASSWORD_BITS",
    "PBKDF2_ITERATIONS",
    "PasswordHash",
    "generate_password",
    "hash_password",
]

# 192 random bits (>= 128 asked for), URL-safe so it survives shells, env files and JSON.
PASSWORD_BITS = 192
# Mosquitto 2.0 hashes passwords set at run time (createClient, setClientPassword) with 101
# iterations; we use the same. Our passwords are random, so stretching adds nothing against
# guessing, while a large count would let anyone burn broker CPU with each CONNECT attempt.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A password as the dynamic-security JSON stores it: ``password``, ``salt``, ``iterations``."""

    hash_b64: str
    salt_b64: str
    iterations: int

    def matches(self, password: str) -> bool:
        """Whether ``password`` hashes to this (as the broker checks at CONNECT)."""
        candidate = _pbkdf2(password, base64.b64decode(self.salt_b64), self.iterations)
        return secrets.compare_digest(candidate, self.hash_b64)


def generate_password() -> str:
    """A fresh random password with ``PASSWORD_BITS`` bits of entropy."""
    return secrets.token_urlsafe(PASSWORD_BITS // 8)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> PasswordHash:
    """Hash ``password`` the way Mosquitto's dynamic-security plugin does."""
    if not password:
        raise ValueError(
            "an empty password cannot be hashed; generate one with generate_password()"
        )
    salt_bytes = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    return PasswordHash(
        hash_b64=_pbkdf2(password, salt_bytes, iterations),
        salt_b64=base64.b64encode(salt_bytes).decode("ascii"),
        iterations=iterations,
    )


def _pbkdf2(password: str, salt: bytes, iterations: int) -> str:
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return base64.b64encode(digest).decode("ascii")
