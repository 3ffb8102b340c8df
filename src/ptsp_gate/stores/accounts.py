"""Officer accounts, API tokens and console sessions in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ptsp_gate.accounts import credentials
from ptsp_gate.accounts.roles import Officer, Role

# Failed sign-ins in a row that lock an account, and for how long.
LOCKOUT_AFTER = 5
LOCKOUT_FOR = timedelta(minutes=15)


class AccountError(ValueError):
    """An account command that cannot be carried out, in one line."""


@dataclass(frozen=True, slots=True)
class Account:
    officer_id: int
    username: str
    role: Role
    regions: tuple[str, ...]
    created_at: datetime
    disabled_at: datetime | None
    locked_until: datetime | None
    last_login_at: datetime | None
    sso: bool

    def officer(self) -> Officer:
        return Officer(self.officer_id, self.username, self.role, self.regions)


_ACCOUNT = """
    SELECT o.officer_id, o.username, o.role, o.created_at, o.disabled_at, o.locked_until,
           o.last_login_at, o.oidc_subject IS NOT NULL AS sso,
           array(SELECT r.region_code FROM officer_region r
                 WHERE r.officer_id = o.officer_id ORDER BY r.region_code) AS regions
    FROM officer o
"""


def _account(row: asyncpg.Record) -> Account:
    return Account(
        officer_id=row["officer_id"],
        username=row["username"],
        role=Role(row["role"]),
        regions=tuple(row["regions"]),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        locked_until=row["locked_until"],
        last_login_at=row["last_login_at"],
        sso=row["sso"],
    )


async def add(
    conn: asyncpg.Connection,
    username: str,
    role: Role,
    regions: list[str],
    password_hash: str | None,
    *,
    oidc_subject: str | None = None,
) -> Account:
    if role is not Role.ADMIN and not regions:
        raise AccountError("an officer, supervisor or auditor needs at least one --region")
    async with conn.transaction():
        try:
            officer_id = await conn.fetchval(
                "INSERT INTO officer (username, role, password_hash, oidc_subject)"
                " VALUES ($1, $2, $3, $4) RETURNING officer_id",
                username,
                role.value,
                password_hash,
                oidc_subject,
            )
        except asyncpg.UniqueViolationError:
            raise AccountError(f"an account named {username!r} exists already") from None
        await conn.execute(
            "INSERT INTO officer_region (officer_id, region_code)"
            " SELECT $1, r FROM unnest($2::text[]) AS r ON CONFLICT DO NOTHING",
            officer_id,
            regions,
        )
    found = await by_username(conn, username)
    assert found is not None
    return found


async def by_username(conn: asyncpg.Connection, username: str) -> Account | None:
    row = await conn.fetchrow(_ACCOUNT + " WHERE o.username = $1", username)
    return _account(row) if row else None


async def listing(conn: asyncpg.Connection) -> list[Account]:
    return [_account(r) for r in await conn.fetch(_ACCOUNT + " ORDER BY o.username")]


async def disable(conn: asyncpg.Connection, username: str) -> Account:
    """Disable an account: it can no longer sign in, its sessions end and its tokens stop working
    at once."""
    async with conn.transaction():
        officer_id = await conn.fetchval(
            "UPDATE officer SET disabled_at = coalesce(disabled_at, now())"
            " WHERE username = $1 RETURNING officer_id",
            username,
        )
        if officer_id is None:
            raise AccountError(f"no account is named {username!r}")
        await conn.execute("DELETE FROM console_session WHERE officer_id = $1", officer_id)
        await conn.execute(
            "UPDATE api_token SET revoked_at = coalesce(revoked_at, now()) WHERE officer_id = $1",
            officer_id,
        )
    found = await by_username(conn, username)
    assert found is not None
    return found


async def issue_token(
    conn: asyncpg.Connection, username: str, ttl: timedelta
) -> tuple[str, datetime]:
    """A new API token for an enabled account, and its expiry. Only its digest is stored."""
    token = credentials.new_token(credentials.TOKEN_PREFIX)
    expires = await conn.fetchval(
        """
        INSERT INTO api_token (token_id, officer_id, token_hash, expires_at)
        SELECT $1, officer_id, $2, now() + $3::interval FROM officer
        WHERE username = $4 AND disabled_at IS NULL
        RETURNING expires_at
        """,
        uuid.uuid4(),
        credentials.digest(token),
        ttl,
        username,
    )
    if expires is None:
        raise AccountError(f"no enabled account is named {username!r}")
    return token, expires


# A session's last request, and a token's last use, are written at most once a minute: without
# this, every page an officer reads would also write a row. The idle expiry is that much coarser.
TOUCH_EVERY = "interval '60 seconds'"


async def by_token(conn: asyncpg.Connection, token: str) -> Officer | None:
    """The enabled officer an unexpired, unrevoked API token belongs to."""
    if not token.startswith(credentials.TOKEN_PREFIX) or len(token) > 100:
        return None
    row = await conn.fetchrow(
        f"""
        WITH used AS (
            SELECT officer_id, last_used_at FROM api_token
            WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
        ), touched AS (
            UPDATE api_token SET last_used_at = now()
            WHERE token_hash = $1
              AND coalesce((SELECT last_used_at FROM used), '-infinity') < now() - {TOUCH_EVERY}
              AND EXISTS (SELECT 1 FROM used)
        )
        {_ACCOUNT} JOIN used USING (officer_id) WHERE o.disabled_at IS NULL
        """,
        credentials.digest(token),
    )
    return _account(row).officer() if row else None


# --- signing in ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignIn:
    """The outcome of one sign-in attempt. `refusal` says why in the audit record's words; the
    person sees one message for all of them, so that an attempt learns nothing about the account."""

    officer: Officer | None
    refusal: str | None = None


async def sign_in(conn: asyncpg.Connection, username: str, password: str) -> SignIn:
    row = await conn.fetchrow(
        "SELECT officer_id, password_hash, disabled_at, locked_until > now() AS locked"
        " FROM officer WHERE username = $1",
        username,
    )
    # The password is checked in every case, so that every refusal takes the same time.
    matches = credentials.verify_password(row["password_hash"] if row else None, password)
    if row is None:
        return SignIn(None, "unknown account")
    if row["disabled_at"] is not None:
        return SignIn(None, "account disabled")
    if row["locked"]:
        return SignIn(None, "account locked")
    if not matches:
        await conn.execute(
            """
            UPDATE officer SET failed_logins = failed_logins + 1,
                locked_until = CASE WHEN failed_logins + 1 >= $2 THEN now() + $3::interval
                                    ELSE locked_until END
            WHERE officer_id = $1
            """,
            row["officer_id"],
            LOCKOUT_AFTER,
            LOCKOUT_FOR,
        )
        return SignIn(None, "wrong password")
    await conn.execute(
        "UPDATE officer SET failed_logins = 0, locked_until = NULL, last_login_at = now()"
        " WHERE officer_id = $1",
        row["officer_id"],
    )
    account = await by_username(conn, username)
    assert account is not None
    return SignIn(account.officer())


async def sign_in_sso(conn: asyncpg.Connection, subject: str) -> SignIn:
    """A sign-in the identity provider vouched for: the account linked to its `sub` claim
    (`ptsp-gate officer add --sso-subject`). Lockout is the provider's business."""
    row = await conn.fetchrow(
        "SELECT username, disabled_at FROM officer WHERE oidc_subject = $1", subject
    )
    if row is None:
        return SignIn(None, "unknown account")
    if row["disabled_at"] is not None:
        return SignIn(None, "account disabled")
    await conn.execute("UPDATE officer SET last_login_at = now() WHERE oidc_subject = $1", subject)
    account = await by_username(conn, row["username"])
    assert account is not None
    return SignIn(account.officer())


async def start_session(
    conn: asyncpg.Connection, officer: Officer, lifetime: timedelta
) -> tuple[str, str]:
    """A new session for `officer`: the cookie's value and the session's CSRF token."""
    cookie = credentials.new_token()
    csrf = credentials.new_token()
    await conn.execute(
        "INSERT INTO console_session (session_hash, officer_id, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + $4::interval)",
        credentials.digest(cookie),
        officer.officer_id,
        csrf,
        lifetime,
    )
    return cookie, csrf


async def session(
    conn: asyncpg.Connection, cookie: str, idle: timedelta
) -> tuple[Officer, str] | None:
    """The officer and CSRF token of a live session, touched; None when it has ended."""
    if len(cookie) > 100:
        return None
    row = await conn.fetchrow(
        f"""
        WITH live AS (
            SELECT officer_id, csrf_token, last_seen_at FROM console_session
            WHERE session_hash = $1 AND expires_at > now() AND last_seen_at > now() - $2::interval
        ), touched AS (
            UPDATE console_session SET last_seen_at = now()
            WHERE session_hash = $1
              AND (SELECT last_seen_at FROM live) < now() - {TOUCH_EVERY}
        )
        {_ACCOUNT.replace("FROM officer o", ", live.csrf_token FROM officer o")}
        JOIN live USING (officer_id) WHERE o.disabled_at IS NULL
        """,
        credentials.digest(cookie),
        idle,
    )
    if row is None:
        return None
    return _account(row).officer(), row["csrf_token"]


async def end_session(conn: asyncpg.Connection, cookie: str) -> None:
    await conn.execute(
        "DELETE FROM console_session WHERE session_hash = $1", credentials.digest(cookie)
    )


async def prune_sessions(conn: asyncpg.Connection) -> int:
    """Remove ended sessions; returns how many."""
    status = await conn.execute("DELETE FROM console_session WHERE expires_at < now()")
    return int(status.split()[-1])


def public(account: Account) -> dict[str, Any]:
    """An account as `officer list` and the console show it: no secret."""
    return {
        "username": account.username,
        "role": account.role.value,
        "regions": list(account.regions),
        "created_at": account.created_at,
        "disabled_at": account.disabled_at,
        "locked_until": account.locked_until,
        "last_login_at": account.last_login_at,
        "sso": account.sso,
    }
