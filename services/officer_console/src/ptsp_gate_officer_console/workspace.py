"""What an officer may ask of the console, the same for the pages and the API: each question is
limited to the officer's regions, and each that touches an employer or a list is written to the
audit record in the transaction that answers it. The pages and the API only translate."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ptsp_gate.accounts.roles import Officer, mask_npwp
from ptsp_gate.stores import audit, coverage, officer_queries
from ptsp_gate.stores.audit import Action

MAX_PAGE = 500
SEARCH_LIMIT = 50


class Denied(Exception):
    """403: the officer may not ask this (another region's list, a right the role lacks)."""


class NotFound(Exception):
    """404: nothing in the officer's scope answers to this (whether or not it exists)."""


class BadRequest(ValueError):
    """400: a parameter that cannot be used, in words a person can act on."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, and through what: the audit record's who and from where."""

    officer: Officer
    channel: str  # "console" or "api"
    source_address: str | None

    def event(self, action: Action, **fields: Any) -> audit.Event:
        return audit.Event(
            actor=self.officer.username,
            officer_id=self.officer.officer_id,
            action=action,
            channel=self.channel,
            source_address=self.source_address,
            **fields,
        )


def regions_asked(officer: Officer, region: str | None) -> list[str] | None:
    """The regions a list is read for: the one asked, which must be the officer's (403
    otherwise), or all of the officer's (None: every region, for an admin)."""
    if region is not None:
        if not officer.covers(region):
            raise Denied(f"region {region} is not one of yours")
        return [region]
    return officer.scope


async def _scope_of(
    conn: asyncpg.Connection, caller: Caller, region: str | None, what: str
) -> list[str] | None:
    """regions_asked(), a refusal recorded in the audit record before it is raised."""
    try:
        return regions_asked(caller.officer, region)
    except Denied:
        await _denied(conn, caller, f"{what}:{region}", [region] if region else [])
        raise


async def _denied(conn: asyncpg.Connection, caller: Caller, what: str, regions: list[str]) -> None:
    await audit.record(conn, caller.event(Action.ACCESS_DENIED, subject=what, regions=regions))


async def flagged(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    region: str | None,
    reason: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    regions = await _scope_of(conn, caller, region, "flagged")
    try:
        cursor = officer_queries.FlaggedCursor.decode(after) if after else None
    except officer_queries.BadCursor as exc:
        raise BadRequest(f"after: {exc}") from None
    async with conn.transaction():
        rows, following = await officer_queries.flagged_page(
            conn, regions=regions, reason=reason, after=cursor, limit=limit
        )
        await audit.record(
            conn,
            caller.event(
                Action.FLAGGED_LISTED,
                subject=region,
                regions=regions or [],
                detail={"reason": reason, "rows": len(rows), "page": bool(after)},
            ),
        )
    return rows, following.encode() if following else None


async def search(conn: asyncpg.Connection, caller: Caller, *, text: str) -> list[dict[str, Any]]:
    """Employers in scope by NIB (13 digits), NPWP (15 or 16 digits) or name (anything else, at
    least 3 characters). The audit record keeps the employers found, never an NPWP."""
    text = " ".join(text.split())
    scope = caller.officer.scope
    if text.isdigit() and len(text) == 13:
        kind = "nib"
        visible = scope is None or await officer_queries.in_scope(conn, text, scope)
        found = await _matches_by_nib(conn, text) if visible else []
    elif text.isdigit() and len(text) in (15, 16):
        kind = "npwp"
        found = await officer_queries.by_npwp(conn, text, regions=scope)
    elif 3 <= len(text) <= 100:
        kind = "name"
        found = await officer_queries.by_name(conn, text, limit=SEARCH_LIMIT, regions=scope)
    else:
        raise BadRequest(
            "search with a 13-digit NIB, a 15- or 16-digit NPWP, or 3 to 100 characters of a name"
        )
    await audit.record(
        conn,
        caller.event(
            Action.EMPLOYER_SEARCHED,
            regions=scope or [],
            # A name is what the officer typed about a business; an NPWP may be a person's NIK.
            detail={
                "by": kind,
                "text": text if kind == "name" else None,
                "found": [r["nib"] for r in found][:SEARCH_LIMIT],
            },
        ),
    )
    return found


async def _matches_by_nib(conn: asyncpg.Connection, nib: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT nib, employer_name, region_code, outcome, reason_codes, decided_at,
               open_applications, blocked_applications
        FROM employer_compliance WHERE nib = $1
        """,
        nib,
    )
    return [dict(r) for r in rows]


async def employer(conn: asyncpg.Connection, caller: Caller, nib: str) -> dict[str, Any]:
    """One employer as the officer may see it: its decisions and episodes in the officer's
    regions, its enrolment (national data) with the NPWP masked unless the role reads it."""
    officer = caller.officer
    scope = officer.scope
    if scope is not None and not await officer_queries.in_scope(conn, nib, scope):
        await _denied(conn, caller, nib, list(scope))
        raise NotFound("no employer with that NIB in your regions")
    report = await officer_queries.employer(conn, nib)
    if report["standing"] is None and not report["decisions"] and report["enrolment"] is None:
        raise NotFound("no employer with that NIB in your regions")
    if scope is not None:
        report["decisions"] = [d for d in report["decisions"] if officer.covers(d["region_code"])]
        report["episodes"] = [e for e in report["episodes"] if officer.covers(e["region_code"])]
    enrolment = report["enrolment"]
    if enrolment is not None and not officer.sees_npwp:
        enrolment["npwp"] = mask_npwp(enrolment["npwp"])
    regions = sorted({d["region_code"] for d in report["decisions"] if d["region_code"]})
    await audit.record(
        conn,
        caller.event(
            Action.EMPLOYER_VIEWED,
            subject=nib,
            regions=regions,
            detail={"npwp_shown": officer.sees_npwp and enrolment is not None},
        ),
    )
    return report


async def export(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    fmt: str,
    language: str,
    region: str | None,
    reason: str | None,
) -> tuple[Path, int]:
    """The flagged list (in scope) written to a new temporary file; the caller sends and removes
    it. The same writer as `ptsp-gate flagged --output`."""
    from ptsp_gate.reports.flagged_export import export_flagged

    regions = await _scope_of(conn, caller, region, "export")
    directory = Path(tempfile.mkdtemp(prefix="ptsp-gate-export-"))
    target = directory / f"flagged.{fmt}"
    try:
        rows = await export_flagged(
            conn, fmt=fmt, language=language, output=target, regions=regions, reason=reason
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    await audit.record(
        conn,
        caller.event(
            Action.EXPORTED,
            subject=region,
            regions=regions or [],
            detail={"format": fmt, "reason": reason, "rows": rows},
        ),
    )
    return target, rows


def _months_back(now: datetime, months: int) -> datetime:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months - 1):
        start = (start - timedelta(days=1)).replace(day=1)
    return start


async def coverage_figures(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    region: str | None,
    since: datetime | None,
    until: datetime | None,
    timezone: str,
    window_days: int,
) -> list[dict[str, Any]]:
    """Monthly coverage figures for the region asked (or each of the officer's)."""
    regions = await _scope_of(conn, caller, region, "coverage")
    now = datetime.now(UTC)
    since = since or _months_back(now, 12)
    until = until or now + timedelta(seconds=1)
    if until <= since:
        raise BadRequest("`to` must be after `from`")
    if until - since > timedelta(days=3700):
        raise BadRequest("ask for at most ten years at once")
    rows: list[dict[str, Any]] = []
    for one in regions if regions is not None else [None]:
        question = coverage.Question(
            since=since,
            until=until,
            by="month",
            timezone=timezone,
            region=one,
            window_days=window_days,
            now=now,
        )
        rows += [f.row() for f in await coverage.report(conn, question)]
    await audit.record(
        conn,
        caller.event(Action.COVERAGE_VIEWED, subject=region, regions=regions or []),
    )
    return rows


async def flagged_count(conn: asyncpg.Connection, regions: Sequence[str] | None) -> int:
    if regions is None:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM employer_compliance WHERE outcome = 'BLOCKED'"
            )
        )
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM employer_compliance"
            " WHERE outcome = 'BLOCKED' AND region_code = ANY($1::text[])",
            list(regions),
        )
    )


async def audit_log(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    actor: str | None,
    action: str | None,
    subject: str | None,
    before: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    if not caller.officer.may_read_audit:
        raise Denied("only auditors and admins read the audit record")
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    try:
        before_id = audit.decode_cursor(before) if before else None
    except audit.BadAuditCursor as exc:
        raise BadRequest(f"before: {exc}") from None
    items, following = await audit.page(
        conn,
        regions=caller.officer.scope,
        actor=actor,
        action=action,
        subject=subject,
        before=before_id,
        limit=limit,
    )
    await audit.record(
        conn,
        caller.event(
            Action.AUDIT_READ,
            regions=caller.officer.scope or [],
            detail={"actor": actor, "action": action, "subject": subject, "rows": len(items)},
        ),
    )
    return items, audit.encode_cursor(following) if following is not None else None
