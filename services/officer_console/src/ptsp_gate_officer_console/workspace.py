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
from uuid import UUID

import asyncpg

from ptsp_gate.accounts.roles import Officer, mask_npwp
from ptsp_gate.policy.overrides import Scope
from ptsp_gate.stores import audit, coverage, cursors, officer_queries, overrides
from ptsp_gate.stores.audit import Action
from ptsp_gate_officer_console.figures import MONTHS, FiguresCache, months_back

MAX_PAGE = 500
SEARCH_LIMIT = 50


class Denied(Exception):
    """403: the officer may not ask this (another region's list, a right the role lacks)."""


class NotFound(Exception):
    """404: nothing in the officer's scope answers to this (whether or not it exists)."""


class BadRequest(ValueError):
    """400: a parameter that cannot be used, in words a person can act on."""


class Conflict(Exception):
    """409: the request is understood but the state of things does not allow it now."""


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


async def coverage_figures(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    region: str | None,
    since: datetime | None,
    until: datetime | None,
    timezone: str,
    window_days: int,
    ahead: FiguresCache | None = None,
) -> tuple[list[dict[str, Any]], datetime]:
    """Monthly coverage figures for the region asked (or each of the officer's), and when they
    were computed: the last twelve months from the figures computed ahead when the question is
    that one and they are there, else computed now."""
    regions = await _scope_of(conn, caller, region, "coverage")
    now = datetime.now(UTC)
    ready = ahead.rows(regions) if ahead is not None and since is None and until is None else None
    if ready is not None:
        rows, as_of = ready.rows, ready.as_of
    else:
        since = since or months_back(now, MONTHS)
        until = until or now + timedelta(seconds=1)
        if until <= since:
            raise BadRequest("`to` must be after `from`")
        if until - since > timedelta(days=3700):
            raise BadRequest("ask for at most ten years at once")
        rows, as_of = [], now
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
    return rows, as_of


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


@dataclass(frozen=True, slots=True)
class OverrideAsked:
    """An officer's request for an override, as the form or the API received it (lengths and
    formats already checked there)."""

    scope: Scope
    application_id: str | None
    nib: str | None
    region_code: str | None
    legal_basis: str
    document_ref: str
    reason: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OverrideRules:
    window_days: int  # applications submitted before this are not decided again
    max_days: int  # the longest an override may last


OPEN_OUTCOMES = ("BLOCKED", "PENDING")


async def ask_override(
    conn: asyncpg.Connection, caller: Caller, asked: OverrideAsked, rules: OverrideRules
) -> dict[str, Any]:
    """Record an officer's request; a supervisor of the region grants or refuses it."""
    officer = caller.officer
    if not officer.may_ask_override:
        raise Denied("your role cannot ask for overrides")
    now = datetime.now(UTC)
    if asked.expires_at <= now:
        raise BadRequest("expires_at must be in the future")
    if asked.expires_at > now + timedelta(days=rules.max_days):
        raise BadRequest(f"an override lasts at most {rules.max_days} days")
    # Checked before the transaction: a refusal's audit record must not be rolled back with it.
    if asked.scope is Scope.APPLICATION:
        nib, region = await _application_asked(conn, caller, asked, rules, now)
    else:
        nib, region = await _employer_asked(conn, caller, asked)
    request = overrides.Request(
        scope=asked.scope,
        application_id=asked.application_id if asked.scope is Scope.APPLICATION else None,
        nib=nib,
        region_code=region,
        legal_basis=asked.legal_basis,
        document_ref=asked.document_ref,
        reason=asked.reason,
        expires_at=asked.expires_at,
    )
    async with conn.transaction():
        override_id = await overrides.ask(conn, request, officer.officer_id)
        await audit.record(
            conn,
            caller.event(
                Action.OVERRIDE_ASKED,
                subject=str(override_id),
                regions=[region],
                detail={
                    "scope": asked.scope.value,
                    "application_id": request.application_id,
                    "nib": nib,
                    "expires_at": asked.expires_at.isoformat(),
                    "document_ref": asked.document_ref,
                },
            ),
        )
        found = await overrides.one(conn, override_id)
    assert found is not None
    return found


async def _application_asked(
    conn: asyncpg.Connection,
    caller: Caller,
    asked: OverrideAsked,
    rules: OverrideRules,
    now: datetime,
) -> tuple[str, str]:
    if asked.application_id is None:
        raise BadRequest("an APPLICATION override names its application_id")
    target = await overrides.application_target(conn, asked.application_id)
    if target is None or not caller.officer.covers(target.region_code):
        if target is not None:
            await _denied(conn, caller, f"override:{asked.application_id}", [target.region_code])
        raise NotFound("no application with that id in your regions")
    if target.outcome not in OPEN_OUTCOMES:
        raise Conflict(f"the application is {target.outcome}: there is nothing to override")
    submitted = await overrides.submitted_at(conn, asked.application_id)
    if submitted is not None and submitted < now - timedelta(days=rules.window_days):
        raise Conflict(
            f"the application was submitted more than {rules.window_days} days ago and is no"
            " longer decided again; the licensing office must submit it again"
        )
    return target.nib, target.region_code


async def _employer_asked(
    conn: asyncpg.Connection, caller: Caller, asked: OverrideAsked
) -> tuple[str, str]:
    if asked.nib is None:
        raise BadRequest("an EMPLOYER override names its nib")
    regions = [r for r in await overrides.employer_regions(conn, asked.nib)]
    mine = [r for r in regions if caller.officer.covers(r)]
    if asked.region_code is not None:
        if asked.region_code not in mine:
            if asked.region_code in regions:
                await _denied(conn, caller, f"override:{asked.nib}", [asked.region_code])
            raise NotFound("no employer with that NIB in that region of yours")
        return asked.nib, asked.region_code
    if not mine:
        raise NotFound("no employer with that NIB in your regions")
    if len(mine) > 1:
        raise BadRequest(
            "the employer has applied in several of your regions: name the region_code"
        )
    return asked.nib, mine[0]


async def _override_in_scope(
    conn: asyncpg.Connection, caller: Caller, override_id: UUID, *, lock: bool = False
) -> dict[str, Any]:
    found = await overrides.one(conn, override_id, lock=lock)
    if found is None or not caller.officer.covers(found["region_code"]):
        if found is not None:
            await _denied(conn, caller, f"override:{override_id}", [found["region_code"]])
        raise NotFound("no override with that id in your regions")
    return found


async def answer_override(
    conn: asyncpg.Connection,
    caller: Caller,
    override_id: UUID,
    *,
    grant: bool,
    note: str | None,
    rules: OverrideRules,
) -> dict[str, Any]:
    """A supervisor of the region grants or refuses an override someone else asked for."""
    officer = caller.officer
    if not officer.may_decide_override:
        raise Denied("only a supervisor or an admin grants or refuses an override")
    now = datetime.now(UTC)
    await _override_in_scope(conn, caller, override_id)  # a refusal is recorded, not rolled back
    async with conn.transaction():
        found = await _override_in_scope(conn, caller, override_id, lock=True)
        if found["asked_by_id"] == officer.officer_id:
            raise Denied("an override is granted or refused by someone other than who asked")
        if found["state"] != "ASKED":
            raise Conflict(f"the override is {found['state']} already")
        if grant and found["expires_at"] <= now:
            raise Conflict("the override expired before it was granted: ask again")
        if grant and found["application_id"] is not None:
            submitted = await overrides.submitted_at(conn, found["application_id"])
            if submitted is not None and submitted < now - timedelta(days=rules.window_days):
                raise Conflict(
                    f"the application was submitted more than {rules.window_days} days ago and"
                    " is no longer decided again; the licensing office must submit it again"
                )
        await overrides.answer(
            conn,
            override_id,
            state="GRANTED" if grant else "REFUSED",
            officer_id=officer.officer_id,
            note=note,
            now=now,
        )
        await audit.record(
            conn,
            caller.event(
                Action.OVERRIDE_GRANTED if grant else Action.OVERRIDE_REFUSED,
                subject=str(override_id),
                regions=[found["region_code"]],
                detail={
                    "scope": found["scope"],
                    "application_id": found["application_id"],
                    "nib": found["nib"],
                    "asked_by": found["asked_by"],
                    "expires_at": found["expires_at"].isoformat(),
                },
            ),
        )
        answered = await overrides.one(conn, override_id)
    assert answered is not None
    return answered


async def revoke_override(
    conn: asyncpg.Connection, caller: Caller, override_id: UUID
) -> dict[str, Any]:
    """End a granted override before it expires; the gate then decides again what it cleared."""
    officer = caller.officer
    if not officer.may_decide_override:
        raise Denied("only a supervisor or an admin revokes an override")
    await _override_in_scope(conn, caller, override_id)  # a refusal is recorded, not rolled back
    async with conn.transaction():
        found = await _override_in_scope(conn, caller, override_id, lock=True)
        if found["state"] != "GRANTED":
            raise Conflict(f"only a granted override can be revoked; this one is {found['state']}")
        await overrides.revoke(
            conn, override_id, officer_id=officer.officer_id, now=datetime.now(UTC)
        )
        await audit.record(
            conn,
            caller.event(
                Action.OVERRIDE_REVOKED,
                subject=str(override_id),
                regions=[found["region_code"]],
                detail={"application_id": found["application_id"], "nib": found["nib"]},
            ),
        )
        revoked = await overrides.one(conn, override_id)
    assert revoked is not None
    return revoked


async def override(conn: asyncpg.Connection, caller: Caller, override_id: UUID) -> dict[str, Any]:
    """One override in scope, with the decisions issued under it."""
    found = await _override_in_scope(conn, caller, override_id)
    found["decisions"] = await overrides.decisions_under(conn, override_id)
    return found


async def override_list(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    region: str | None,
    state: str | None,
    nib: str | None,
    before: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    if state is not None and state not in overrides.STATES:
        raise BadRequest(f"state is one of {', '.join(overrides.STATES)}")
    regions = await _scope_of(conn, caller, region, "overrides")
    try:
        position = overrides.decode_cursor(before) if before else None
    except cursors.BadCursor as exc:
        raise BadRequest(f"before: {exc}") from None
    items, following = await overrides.page(
        conn, regions=regions, state=state, nib=nib, before=position, limit=limit
    )
    return items, overrides.encode_cursor(following) if following else None
