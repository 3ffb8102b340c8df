"""/api/v1: the JSON API, for the licensing office's systems (with a token) and for scripts. The
same questions and scope rules as the pages (workspace.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ptsp_gate.contract.events import ReasonCode
from ptsp_gate.policy.overrides import Scope
from ptsp_gate_officer_console import workspace
from ptsp_gate_officer_console.security import CSRF_HEADER, authenticate, same_token

router = APIRouter(prefix="/api/v1", tags=["v1"])

Region = Annotated[str, Query(pattern=r"^[0-9]{4}$", description="a 4-digit region code")]
Cursor = Annotated[str, Query(max_length=200, description="the `next` of the page before")]
Limit = Annotated[int, Query(ge=1, le=workspace.MAX_PAGE)]


async def connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with request.app.state.console.connection() as conn:
        yield conn


Connection = Annotated[asyncpg.Connection, Depends(connection)]


async def caller(request: Request, conn: Connection) -> workspace.Caller:
    console = request.app.state.console
    found = await authenticate(request, conn, console.settings, console.cookies)
    if found is None:
        raise HTTPException(
            401,
            "authentication required: `Authorization: Bearer TOKEN` (an unexpired token of an"
            " enabled account) or a signed-in session",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if (
        found.csrf_token is not None
        and request.method not in ("GET", "HEAD", "OPTIONS")
        and not same_token(request.headers.get(CSRF_HEADER), found.csrf_token)
    ):
        raise HTTPException(403, f"a session's API call must carry its {CSRF_HEADER} header")
    return workspace.Caller(found.officer, "api", request.client.host if request.client else None)


Caller = Annotated[workspace.Caller, Depends(caller)]


class Problem(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a parameter that cannot be used"},
    401: {"model": Problem, "description": "no valid token or session"},
    403: {"model": Problem, "description": "another region, or a right the role lacks"},
}


class FlaggedEmployer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    nib: str
    employer_name: str | None
    region_code: str | None
    reason_codes: list[str]
    blocked_applications: int
    open_applications: int
    first_flagged_at: datetime | None
    flagged_since: datetime | None
    last_flagged_at: datetime
    enrolment_as_of: datetime | None
    policy_version: str


class FlaggedPage(BaseModel):
    items: list[FlaggedEmployer]
    next: str | None


@router.get("/flagged", responses=ERRORS)
async def flagged(
    conn: Connection,
    who: Caller,
    region: Region | None = None,
    reason: ReasonCode | None = None,
    limit: Limit = 100,
    after: Cursor | None = None,
) -> FlaggedPage:
    """Employers whose latest decision is BLOCKED, in the caller's regions (or the one asked),
    by region then by when they were first flagged. `next` continues the list."""
    rows, following = await workspace.flagged(
        conn,
        who,
        region=region,
        reason=reason.value if reason else None,
        after=after,
        limit=limit,
    )
    return FlaggedPage(items=[FlaggedEmployer(**r) for r in rows], next=following)


class EmployerReport(BaseModel):
    nib: str
    enrolment: dict[str, Any] | None
    standing: dict[str, Any] | None
    episodes: list[dict[str, Any]]
    decisions: list[dict[str, Any]]


@router.get(
    "/employers/{nib}",
    responses={**ERRORS, 404: {"model": Problem, "description": "none in your regions"}},
)
async def employer(
    conn: Connection,
    who: Caller,
    nib: Annotated[str, Path(pattern=r"^[0-9]{13}$", description="a 13-digit NIB")],
) -> EmployerReport:
    """One employer: its enrolment state and as-of date, its standing, its flagged episodes and
    its decisions in the caller's regions. An employer known only in other regions answers 404,
    as one never seen does. The NPWP is masked unless the role reads it."""
    async with conn.transaction():
        report = await workspace.employer(conn, who, nib)
    return EmployerReport(**report)


class CoverageRows(BaseModel):
    items: list[dict[str, Any]]
    as_of: datetime = Field(
        description="when the figures were computed: those of the last twelve months (no `from`"
        " or `to`) are computed ahead, every PTSP_GATE_CONSOLE_FIGURES_REFRESH_S"
    )


# Periods are calendar months in Western Indonesia Time, as `ptsp-gate coverage` counts them.
TIMEZONE = "Asia/Jakarta"


def _start(day: date | None) -> datetime | None:
    return datetime.combine(day, time(), tzinfo=ZoneInfo(TIMEZONE)) if day else None


@router.get("/coverage", responses=ERRORS)
async def coverage(
    request: Request,
    conn: Connection,
    who: Caller,
    region: Region | None = None,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query(description="exclusive")] = None,
) -> CoverageRows:
    """Monthly figures (calendar months in Asia/Jakarta time) per region: applications by
    outcome, employers flagged, how many were cleared and how fast. `from` and `to` are
    dates; the last twelve months by default."""
    console = request.app.state.console
    rows, as_of = await workspace.coverage_figures(
        conn,
        who,
        region=region,
        since=_start(from_),
        until=_start(to),
        timezone=TIMEZONE,
        window_days=console.settings.redecide_window_days,
        ahead=console.figures,
    )
    return CoverageRows(items=rows, as_of=as_of)


class AuditEvent(BaseModel):
    event_id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    regions: list[str]
    channel: str
    source_address: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEvent]
    next: str | None


@router.get("/audit", responses=ERRORS)
async def audit_log(
    conn: Connection,
    who: Caller,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 100,
    before: Cursor | None = None,
) -> AuditPage:
    """The audit record, newest first, for auditors (their regions) and admins (all)."""
    items, following = await workspace.audit_log(
        conn, who, actor=actor, action=action, subject=subject, before=before, limit=limit
    )
    return AuditPage(items=[AuditEvent(**i) for i in items], next=following)


# Free text an officer writes: trimmed, on one line or several (a form sends CR LF), without
# other control characters.
_ALLOWED = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
Text = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        # At least one character that is not white space, as the document says to clients.
        pattern=rf"^{_ALLOWED}*[^\s\x00-\x1f\x7f]{_ALLOWED}*$",
    ),
]


class OverrideRequest(BaseModel):
    """An officer asks for an override of one application (`application_id`) or of every
    application of an employer in one region (`nib`, and `region_code` when the employer has
    applied in several of the caller's regions)."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope
    application_id: (
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")] | None
    ) = None
    nib: Annotated[str, Field(pattern=r"^[0-9]{13}$")] | None = None
    region_code: Annotated[str, Field(pattern=r"^[0-9]{4}$")] | None = None
    legal_basis: Annotated[Text, Field(min_length=1, max_length=500)]
    document_ref: Annotated[Text, Field(min_length=1, max_length=200)]
    reason: Annotated[Text, Field(min_length=1, max_length=2000)]
    expires_at: AwareDatetime

    def asked(self) -> workspace.OverrideAsked:
        return workspace.OverrideAsked(
            scope=self.scope,
            application_id=self.application_id,
            nib=self.nib,
            region_code=self.region_code,
            legal_basis=self.legal_basis,
            document_ref=self.document_ref,
            reason=self.reason,
            expires_at=self.expires_at,
        )


class OverrideAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[Text, Field(min_length=1, max_length=2000)] | None = None


class OverrideDecision(BaseModel):
    decision_id: UUID
    application_id: str
    outcome: str
    reason_codes: list[str]
    decided_at: datetime
    supersedes: UUID | None


class Override(BaseModel):
    model_config = ConfigDict(extra="ignore")

    override_id: UUID
    scope: Scope
    application_id: str | None
    nib: str
    employer_name: str | None
    region_code: str
    legal_basis: str
    document_ref: str
    reason: str
    expires_at: datetime
    asked_by: str
    asked_at: datetime
    state: Literal["ASKED", "GRANTED", "REFUSED", "REVOKED", "EXPIRED"]
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    revoked_by: str | None
    revoked_at: datetime | None
    applied_at: datetime | None = Field(
        description="when the gate decided the applications again under it"
    )
    ended_at: datetime | None = Field(
        description="when the gate decided them again after it expired or was revoked"
    )
    decisions: list[OverrideDecision] = Field(
        default_factory=list, description="the decisions issued under it (on one override only)"
    )


class OverridePage(BaseModel):
    items: list[Override]
    next: str | None


OVERRIDE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": Problem, "description": "none in your regions"},
    409: {"model": Problem, "description": "not possible in its present state"},
}


def override_rules(request: Request) -> workspace.OverrideRules:
    settings = request.app.state.console.settings
    return workspace.OverrideRules(settings.redecide_window_days, settings.override_max_days)


@router.post("/overrides", status_code=201, responses=OVERRIDE_ERRORS)
async def ask_override(
    request: Request, conn: Connection, who: Caller, body: OverrideRequest
) -> Override:
    """Ask for an override. A supervisor of the region other than the caller grants it; the
    gate then issues a superseding CLEARED decision with the advisory reason OFFICER_OVERRIDE
    for each open application it covers, and decides them again when it ends."""
    return Override(
        **await workspace.ask_override(conn, who, body.asked(), override_rules(request))
    )


OverrideId = Annotated[UUID, Path(description="the override's id")]


async def _answer(
    request: Request,
    conn: Connection,
    who: Caller,
    override_id: UUID,
    note: str | None,
    *,
    grant: bool,
) -> Override:
    answered = await workspace.answer_override(
        conn, who, override_id, grant=grant, note=note, rules=override_rules(request)
    )
    return Override(**answered)


@router.post("/overrides/{override_id}/approve", responses=OVERRIDE_ERRORS)
async def approve_override(
    request: Request,
    conn: Connection,
    who: Caller,
    override_id: OverrideId,
    body: OverrideAnswer | None = None,
) -> Override:
    """Grant an override asked by someone else (supervisors and admins of its region)."""
    return await _answer(request, conn, who, override_id, body.note if body else None, grant=True)


@router.post("/overrides/{override_id}/refuse", responses=OVERRIDE_ERRORS)
async def refuse_override(
    request: Request,
    conn: Connection,
    who: Caller,
    override_id: OverrideId,
    body: OverrideAnswer | None = None,
) -> Override:
    """Refuse an override asked by someone else (supervisors and admins of its region)."""
    return await _answer(request, conn, who, override_id, body.note if body else None, grant=False)


@router.post("/overrides/{override_id}/revoke", responses=OVERRIDE_ERRORS)
async def revoke_override(conn: Connection, who: Caller, override_id: OverrideId) -> Override:
    """End a granted override now; the applications it cleared are decided again."""
    return Override(**await workspace.revoke_override(conn, who, override_id))


@router.get("/overrides", responses=ERRORS)
async def override_list(
    conn: Connection,
    who: Caller,
    region: Region | None = None,
    state: Literal["ASKED", "GRANTED", "REFUSED", "REVOKED", "EXPIRED"] | None = None,
    nib: Annotated[str | None, Query(pattern=r"^[0-9]{13}$")] = None,
    limit: Limit = 100,
    before: Cursor | None = None,
) -> OverridePage:
    """Overrides in the caller's regions (or the one asked), newest first."""
    items, following = await workspace.override_list(
        conn, who, region=region, state=state, nib=nib, before=before, limit=limit
    )
    return OverridePage(items=[Override(**i) for i in items], next=following)


@router.get("/overrides/{override_id}", responses=OVERRIDE_ERRORS)
async def override(conn: Connection, who: Caller, override_id: OverrideId) -> Override:
    """One override, with the decisions the gate issued under it."""
    return Override(**await workspace.override(conn, who, override_id))
