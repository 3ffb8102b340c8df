"""Passwords (argon2id, through argon2-cffi) and random tokens (API tokens, session cookies,
CSRF tokens), and the digests they are stored under."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2-cffi's defaults are RFC 9106's second recommended profile (64 MiB, 3 passes).
_HASHER = PasswordHasher()
# Verified against when the username names no account, so that a failed sign-in takes as long
# whether or not the account exists.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
TOKEN_PREFIX = "ptspg_"


class WeakPassword(ValueError):
    """A password the console refuses to store, with the reason (never the password)."""


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 5:
        raise WeakPassword("a password needs at least 5 different characters")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`; with no stored hash the same work is done and the
    answer is no."""
    if len(password) > MAX_PASSWORD_LENGTH:
        password = password[:MAX_PASSWORD_LENGTH]  # never hash an attacker's megabyte
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)


def new_token(prefix: str = "") -> str:
    """A random token of 256 bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    """What a token is stored and looked up by. Tokens are random, so SHA-256 needs no salt."""
    return hashlib.sha256(token.encode()).digest()
