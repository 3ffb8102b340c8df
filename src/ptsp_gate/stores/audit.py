"""The append-only audit record: who did what, when, from where."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg


class Action(StrEnum):
    LOGIN = "LOGIN"
    LOGIN_FAILED = "LOGIN_FAILED"
    LOGOUT = "LOGOUT"
    FLAGGED_LISTED = "FLAGGED_LISTED"
    EMPLOYER_SEARCHED = "EMPLOYER_SEARCHED"
    EMPLOYER_VIEWED = "EMPLOYER_VIEWED"
    EXPORTED = "EXPORTED"
    COVERAGE_VIEWED = "COVERAGE_VIEWED"
    ACCESS_DENIED = "ACCESS_DENIED"
    OVERRIDE_ASKED = "OVERRIDE_ASKED"
    OVERRIDE_GRANTED = "OVERRIDE_GRANTED"
    OVERRIDE_REFUSED = "OVERRIDE_REFUSED"
    OVERRIDE_REVOKED = "OVERRIDE_REVOKED"
    AUDIT_READ = "AUDIT_READ"
    OFFICER_ADDED = "OFFICER_ADDED"
    OFFICER_DISABLED = "OFFICER_DISABLED"
    TOKEN_ISSUED = "TOKEN_ISSUED"


@dataclass(frozen=True, slots=True)
class Event:
    actor: str
    action: Action
    channel: str
    officer_id: int | None = None
    subject: str | None = None
    regions: Sequence[str] = ()
    source_address: str | None = None
    detail: dict[str, Any] | None = None


async def record(conn: asyncpg.Connection, event: Event) -> int:
    return int(
        await conn.fetchval(
            """
            INSERT INTO audit_event
                (officer_id, actor, action, subject, regions, channel, source_address, detail)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING event_id
            """,
            event.officer_id,
            event.actor[:100],
            event.action.value,
            event.subject,
            list(event.regions),
            event.channel,
            event.source_address,
            # Encoded by the connection's jsonb codec (adapters.postgres); default=str for times.
            json.loads(json.dumps(event.detail or {}, default=str)),
        )
    )


class BadAuditCursor(ValueError):
    pass


def encode_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{event_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if len(text) > 40 or not raw.startswith("a"):
            raise ValueError
        return int(raw[1:])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadAuditCursor("not a cursor this service printed") from None


async def page(
    conn: asyncpg.Connection,
    *,
    regions: list[str] | None,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int | None]:
    """The newest events first, limited to those concerning `regions` (None: all), and the
    cursor of the next page."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("actor", actor), ("action", action), ("subject", subject)):
        if value is not None:
            params.append(value)
            where.append(f"{column} = ${len(params)}")
    if regions is not None:
        params.append(regions)
        where.append(f"regions && ${len(params)}::text[]")
    if before is not None:
        params.append(before)
        where.append(f"event_id < ${len(params)}")
    params.append(limit + 1)
    rows = await conn.fetch(
        f"""
        SELECT event_id, at, actor, action, subject, regions, channel, source_address, detail
        FROM audit_event {"WHERE " + " AND ".join(where) if where else ""}
        ORDER BY event_id DESC LIMIT ${len(params)}
        """,
        *params,
    )
    items = [dict(r) for r in rows[:limit]]
    return items, items[-1]["event_id"] if len(rows) > limit else None
