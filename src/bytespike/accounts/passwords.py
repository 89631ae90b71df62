"""Console passwords: argon2id hashes, the rules a new password must meet.

Keys use SHA-256 instead: they are 256 random bits already, a slow hash would only add latency.
Hashes made before argon2 (``scrypt$...``) still verify and are replaced at the next sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 256
_COMMON = frozenset({
    "password", "password1", "password123", "12345678", "123456789", "1234567890", "qwertyui", "qwerty123",
    "iloveyou", "sunshine", "princess", "football", "baseball", "welcome1", "letmein1", "admin123",
    "abc12345", "11111111", "00000000", "passw0rd", "trustno1", "changeme",
})
_hasher = PasswordHasher()


def password_problem(password: str, email: str = "") -> str | None:
    """Why ``password`` may not be used, or None: long enough, not too long, not the email, not a
    common password, not one character repeated."""
    if not isinstance(password, str):
        return "the password must be text"
    if len(password) < MIN_LENGTH:
        return f"the password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"the password must have at most {MAX_LENGTH} characters"
    if email and password.strip().lower() in (email.lower(), email.split("@")[0].lower()):
        return "the password must not be the email address"
    if password.lower() in _COMMON or len(set(password)) == 1:
        return "this password is too common; choose another"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return stored.startswith("scrypt$") or _hasher.check_needs_rehash(stored)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, dk = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(dk)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(dk))
