"""The pages officers use in a browser: server-rendered HTML (no script), Indonesian by default.
Each handler checks the session and the form's CSRF token, then asks workspace.py."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator, ValidationError
from starlette.background import BackgroundTask

from ptsp_gate.accounts import credentials
from ptsp_gate.accounts.roles import Officer
from ptsp_gate.contract.events import ReasonCode
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.policy.codes import BLOCK_TYPE_CODES
from ptsp_gate.reports.labels import headings
from ptsp_gate.reports.render import FLAGGED_COLUMNS
from ptsp_gate.stores import accounts, audit, overrides
from ptsp_gate.stores.audit import Action
from ptsp_gate_officer_console import api, charts, i18n, sso, workspace
from ptsp_gate_officer_console.api import Connection
from ptsp_gate_officer_console.resources import TEMPLATES_DIR
from ptsp_gate_officer_console.security import (
    CSRF_FIELD,
    Authenticated,
    authenticate,
    same_token,
)

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
LANGUAGE_COOKIE = "ptsp_lang"
PAGE_SIZE = 50


class SignInRequired(Exception):
    """The page needs a session; the handler in app.py sends the browser to /login."""


def language(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    return chosen if chosen in i18n.LANGUAGES else i18n.DEFAULT


def source(request: Request) -> str | None:
    return request.client.host if request.client else None


def render(
    request: Request,
    template: str,
    status: int = 200,
    who: Authenticated | None = None,
    **context: Any,
) -> HTMLResponse:
    lang = language(request)
    response: HTMLResponse = templates.TemplateResponse(
        request,
        template,
        {
            "t": i18n.translator(lang),
            "lang": lang,
            "who": who,
            "csrf": who.csrf_token if who else None,
            "csrf_field": CSRF_FIELD,
            "path": request.url.path,
            "query": lambda **q: _query(request, **q),
            **context,
        },
        status_code=status,
    )
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE,
            lang,
            max_age=365 * 86400,
            httponly=True,
            samesite="lax",
            secure=request.app.state.console.settings.console_secure_cookies,
        )
    return response


def _query(request: Request, **changes: Any) -> str:
    """The current page's query string with `changes` (None removes a key)."""
    params = dict(request.query_params)
    params.pop("lang", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    title = {404: "not_found", 403: "forbidden"}.get(status, "error")
    return render(request, "error.html", status, title=title, message=message)


async def signed_in(request: Request, conn: Connection) -> Authenticated:
    console = request.app.state.console
    found = await authenticate(request, conn, console.settings, console.cookies)
    if found is None or found.csrf_token is None:
        raise SignInRequired
    return found


Session = Annotated[Authenticated, Depends(signed_in)]


def caller(who: Authenticated, request: Request) -> workspace.Caller:
    return workspace.Caller(who.officer, "console", source(request))


def check_csrf(who: Authenticated, given: str | None) -> None:
    if not same_token(given, who.csrf_token):
        raise workspace.Denied("the form has expired: reload the page and try again")


# --- signing in ----------------------------------------------------------------------------------


def _local(target: str | None) -> str:
    """Where to go after signing in: a path of this console only, never another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def login_page(
    request: Request, next: str | None, failed: str | None = None, status: int = 200
) -> HTMLResponse:
    """The sign-in form, with a new token for its CSRF cookie (double submit: no session yet)."""
    console = request.app.state.console
    token = credentials.new_token()
    response = render(
        request,
        "login.html",
        status,
        login_csrf=token,
        next=_local(next),
        failed=failed,
        sso=console.sso is not None,
    )
    response.set_cookie(
        console.cookies.login_csrf,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=console.settings.console_secure_cookies,
        path="/",
    )
    return response


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return login_page(request, next)


@router.post("/login")
async def login(
    request: Request,
    conn: Connection,
    username: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    console = request.app.state.console
    address = source(request) or "unknown"
    metrics = console.metrics.console_failed_logins

    def refused(key: str, status: int) -> HTMLResponse:
        return login_page(request, next, key, status)

    if not same_token(csrf_token, request.cookies.get(console.cookies.login_csrf)):
        return refused("sign_in_failed", 403)
    event = audit.Event(
        actor=username.strip().lower()[:100] or "-",
        action=Action.LOGIN_FAILED,
        channel="console",
        source_address=address,
    )
    if not console.throttle.allowed(address):
        metrics.labels("throttled").inc()
        await audit.record(conn, replace(event, detail={"why": "throttled"}))
        return refused("throttled", 429)
    outcome = await accounts.sign_in(conn, username.strip().lower(), password)
    if outcome.officer is None:
        console.throttle.failed(address)
        reason = (outcome.refusal or "wrong password").replace(" ", "_")
        metrics.labels(reason.replace("account_", "")).inc()
        await audit.record(conn, replace(event, detail={"why": outcome.refusal}))
        return refused("sign_in_failed", 401)
    return await _session_for(request, conn, outcome.officer, next, via="password")


async def _session_for(
    request: Request, conn: Connection, officer: Officer, next: str, *, via: str
) -> Response:
    """A new session for an officer who signed in, recorded, and the browser sent on."""
    console = request.app.state.console
    cookie, _csrf = await accounts.start_session(
        conn, officer, timedelta(hours=console.settings.console_session_hours)
    )
    await audit.record(
        conn,
        audit.Event(
            actor=officer.username,
            officer_id=officer.officer_id,
            action=Action.LOGIN,
            channel="console",
            source_address=source(request),
            regions=officer.regions,
            detail={"via": via},
        ),
    )
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        console.cookies.session,
        cookie,
        httponly=True,
        samesite="strict",
        secure=console.settings.console_secure_cookies,
        path="/",
        max_age=int(console.settings.console_session_hours * 3600),
    )
    response.delete_cookie(console.cookies.login_csrf, path="/")
    response.delete_cookie(console.cookies.sso, path="/")
    return response


@router.get("/login/oidc")
async def sign_on(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """Off to the province's identity provider."""
    console = request.app.state.console
    if console.sso is None:
        raise workspace.NotFound("single sign-on is not set up here")
    try:
        target, pending = await console.sso.begin(_local(next))
    except sso.SignOnFailed as exc:
        log.warning("single sign-on unavailable", why=str(exc))
        return login_page(request, next, "sso_unavailable", 503)
    response = RedirectResponse(target, status_code=303)
    # SameSite=Lax: the provider's redirect back is a cross-site top-level navigation, which a
    # Strict cookie would not accompany. Ten minutes to sign in at the provider.
    response.set_cookie(
        console.cookies.sso,
        pending.encode(),
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=console.settings.console_secure_cookies,
        path="/",
    )
    return response


@router.get("/login/oidc/callback")
async def signed_on(
    request: Request,
    conn: Connection,
    state: Annotated[str, Query(max_length=200)] = "",
    code: Annotated[str, Query(max_length=4000)] = "",
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Back from the identity provider: the person it vouches for, if an account is linked."""
    console = request.app.state.console
    if console.sso is None:
        raise workspace.NotFound("single sign-on is not set up here")
    pending = sso.Pending.decode(request.cookies.get(console.cookies.sso))
    next_path = pending.next if pending else "/"
    failed = audit.Event(
        actor="-", action=Action.LOGIN_FAILED, channel="console", source_address=source(request)
    )
    metrics = console.metrics.console_failed_logins
    address = source(request) or "unknown"
    if not console.throttle.allowed(address):
        metrics.labels("throttled").inc()
        await audit.record(conn, replace(failed, detail={"via": "sso", "why": "throttled"}))
        return login_page(request, next_path, "throttled", 429)
    try:
        if error is not None or not code:
            # The parameter is the provider's word, but anyone can write it in a URL: only the
            # codes the standards define are recorded as they are.
            said = error if error in sso.PROVIDER_ERRORS else "an unlisted error"
            raise sso.SignOnFailed(f"the provider refused: {said if error else 'no code'}")
        subject = await console.sso.finish(pending, state, code)
    except sso.SignOnFailed as exc:
        console.throttle.failed(address)
        metrics.labels("sso_refused").inc()
        await audit.record(conn, replace(failed, detail={"via": "sso", "why": str(exc)[:300]}))
        response = login_page(request, next_path, "sso_failed", 401)
        response.delete_cookie(console.cookies.sso, path="/")
        return response
    outcome = await accounts.sign_in_sso(conn, subject)
    if outcome.officer is None:
        console.throttle.failed(address)
        reason = (outcome.refusal or "unknown account").replace(" ", "_")
        metrics.labels(reason.replace("account_", "")).inc()
        # Some providers use a person's NIK as `sub`, and a digest of sixteen digits is no
        # secret: the record keeps neither. The provider's own log has who it was, at this time
        # and address.
        await audit.record(
            conn, replace(failed, actor="sso", detail={"via": "sso", "why": outcome.refusal})
        )
        response = login_page(request, next_path, "sso_no_account", 403)
        response.delete_cookie(console.cookies.sso, path="/")
        return response
    return await _session_for(request, conn, outcome.officer, next_path, via="sso")


@router.post("/logout")
async def logout(
    request: Request,
    conn: Connection,
    who: Session,
    csrf_token: Annotated[str, Form(max_length=100)],
) -> Response:
    console = request.app.state.console
    check_csrf(who, csrf_token)
    await accounts.end_session(conn, request.cookies.get(console.cookies.session, ""))
    await audit.record(conn, caller(who, request).event(Action.LOGOUT))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(console.cookies.session, path="/")
    return response


# --- the pages -----------------------------------------------------------------------------------


def _blank_is_none(value: object) -> object:
    # A form's "any" option sends the parameter empty.
    return value or None


RegionParam = Annotated[str | None, BeforeValidator(_blank_is_none), Query(pattern=r"^[0-9]{4}$")]
ReasonParam = Annotated[ReasonCode | None, BeforeValidator(_blank_is_none), Query()]
# The codes a flagged employer can carry: those that can block.
FLAGGING_CODES = [c.value for c in ReasonCode if c in BLOCK_TYPE_CODES]


@router.get("/")
async def dashboard(
    request: Request, conn: Connection, who: Session, region: RegionParam = None
) -> HTMLResponse:
    officer = who.officer
    region = region or (officer.regions[0] if len(officer.regions) == 1 else None)
    console = request.app.state.console
    rows, as_of = await workspace.coverage_figures(
        conn,
        caller(who, request),
        region=region,
        since=None,
        until=None,
        timezone=api.TIMEZONE,
        window_days=console.settings.redecide_window_days,
        ahead=console.figures,
    )
    regions = workspace.regions_asked(officer, region)
    flagged_now = await workspace.flagged_count(conn, regions)
    totals = charts.totals(rows)
    return render(
        request,
        "dashboard.html",
        who=who,
        region=region,
        regions=officer.regions,
        flagged_now=flagged_now,
        totals=totals,
        chart=charts.by_month(rows, language(request)),
        figures_as_of=as_of,
        months=charts.monthly(rows),
    )


@router.get("/flagged")
async def flagged(
    request: Request,
    conn: Connection,
    who: Session,
    region: RegionParam = None,
    reason: ReasonParam = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    ask = caller(who, request)
    found = None
    if q and q.strip():
        async with conn.transaction():
            found = await workspace.search(conn, ask, text=q)
    rows, following = await workspace.flagged(
        conn,
        ask,
        region=region,
        reason=reason.value if reason else None,
        after=after,
        limit=PAGE_SIZE,
    )
    return render(
        request,
        "flagged.html",
        who=who,
        rows=rows,
        following=following,
        region=region,
        reason=reason.value if reason else None,
        reasons=FLAGGING_CODES,
        regions=who.officer.regions,
        q=q or "",
        found=found,
        headings=dict(
            zip(
                FLAGGED_COLUMNS,
                headings(list(FLAGGED_COLUMNS), language(request)),
                strict=True,
            )
        ),
    )


@router.get("/flagged/export")
async def export(
    request: Request,
    conn: Connection,
    who: Session,
    format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv",
    region: RegionParam = None,
    reason: ReasonParam = None,
) -> FileResponse:
    lang = language(request)
    # Read in a snapshot of its own (a repeatable-read transaction), then recorded.
    path, _rows = await workspace.export(
        conn,
        caller(who, request),
        fmt=format,
        language=lang,
        region=region,
        reason=reason.value if reason else None,
    )
    name = (
        f"ditandai-{region or 'semua'}.{format}"
        if lang == "id"
        else (f"flagged-{region or 'all'}.{format}")
    )
    media = (
        "text/csv; charset=utf-8"
        if format == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    return FileResponse(
        path,
        media_type=media,
        filename=name,
        background=BackgroundTask(shutil.rmtree, path.parent, ignore_errors=True),
    )


@router.get("/employers/{nib}")
async def employer(
    request: Request,
    conn: Connection,
    who: Session,
    nib: str,
) -> HTMLResponse:
    if not (nib.isdigit() and len(nib) == 13):
        raise workspace.NotFound("an NIB has 13 digits")
    ask = caller(who, request)
    async with conn.transaction():
        report = await workspace.employer(conn, ask, nib)
    asked, _ = await workspace.override_list(
        conn, ask, region=None, state=None, nib=nib, before=None, limit=PAGE_SIZE
    )
    return render(
        request,
        "employer.html",
        who=who,
        report=report,
        overrides=asked,
        open_applications=_open_applications(report["decisions"]),
        override_regions=sorted(
            {d["region_code"] for d in report["decisions"] if d["region_code"]}
        ),
        default_until=(
            datetime.now(ZoneInfo(api.TIMEZONE)).date() + timedelta(days=30)
        ).isoformat(),
    )


def _open_applications(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The applications (newest decisions first) whose latest decision blocks or defers."""
    latest: dict[str, dict[str, Any]] = {}
    for d in decisions:
        if d["outcome"] != "REJECTED":
            latest.setdefault(d["application_id"], d)
    return [d for d in latest.values() if d["outcome"] in workspace.OPEN_OUTCOMES]


# --- overrides -----------------------------------------------------------------------------------

OverrideState = Annotated[str | None, Query(pattern="^(ASKED|GRANTED|REFUSED|REVOKED|EXPIRED)?$")]


@router.get("/overrides")
async def override_list(
    request: Request,
    conn: Connection,
    who: Session,
    region: RegionParam = None,
    state: OverrideState = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    items, following = await workspace.override_list(
        conn,
        caller(who, request),
        region=region,
        state=state or None,
        nib=None,
        before=before,
        limit=PAGE_SIZE,
    )
    return render(
        request,
        "overrides.html",
        who=who,
        items=items,
        following=following,
        region=region,
        regions=who.officer.regions,
        state=state or "",
        states=list(overrides.STATES),
    )


@router.get("/overrides/{override_id}")
async def override(
    request: Request, conn: Connection, who: Session, override_id: UUID
) -> HTMLResponse:
    item = await workspace.override(conn, caller(who, request), override_id)
    return render(request, "override.html", who=who, item=item)


Line = Annotated[str, Form(min_length=1, max_length=500)]


@router.post("/overrides")
async def ask_override(
    request: Request,
    conn: Connection,
    who: Session,
    csrf_token: Annotated[str, Form(max_length=100)],
    nib: Annotated[str, Form(pattern=r"^[0-9]{13}$")],
    target: Annotated[str, Form(max_length=140)],
    legal_basis: Line,
    document_ref: Annotated[str, Form(min_length=1, max_length=200)],
    reason: Annotated[str, Form(min_length=1, max_length=2000)],
    valid_until: Annotated[date, Form()],
) -> RedirectResponse:
    check_csrf(who, csrf_token)
    scope, _, value = target.partition(":")
    end = datetime.combine(valid_until + timedelta(days=1), time(), ZoneInfo(api.TIMEZONE))
    try:
        body = api.OverrideRequest(
            scope=scope,
            application_id=value if scope == "APPLICATION" else None,
            nib=nib,
            region_code=value if scope == "EMPLOYER" else None,
            legal_basis=legal_basis,
            document_ref=document_ref,
            reason=reason,
            expires_at=end,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise workspace.BadRequest(problems) from None
    rules = api.override_rules(request)
    asked = await workspace.ask_override(conn, caller(who, request), body.asked(), rules)
    return RedirectResponse(f"/overrides/{asked['override_id']}", status_code=303)


@router.post("/overrides/{override_id}/answer")
async def answer_override(
    request: Request,
    conn: Connection,
    who: Session,
    override_id: UUID,
    csrf_token: Annotated[str, Form(max_length=100)],
    answer: Annotated[str, Form(pattern="^(approve|refuse)$")],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    check_csrf(who, csrf_token)
    await workspace.answer_override(
        conn,
        caller(who, request),
        override_id,
        grant=answer == "approve",
        note=note.strip() or None,
        rules=api.override_rules(request),
    )
    return RedirectResponse(f"/overrides/{override_id}", status_code=303)


@router.post("/overrides/{override_id}/revoke")
async def revoke_override(
    request: Request,
    conn: Connection,
    who: Session,
    override_id: UUID,
    csrf_token: Annotated[str, Form(max_length=100)],
) -> RedirectResponse:
    check_csrf(who, csrf_token)
    await workspace.revoke_override(conn, caller(who, request), override_id)
    return RedirectResponse(f"/overrides/{override_id}", status_code=303)


@router.get("/audit")
async def audit_log(
    request: Request,
    conn: Connection,
    who: Session,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    subject: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    items, following = await workspace.audit_log(
        conn,
        caller(who, request),
        actor=actor or None,
        action=action or None,
        subject=subject or None,
        before=before,
        limit=PAGE_SIZE,
    )
    return render(
        request,
        "audit.html",
        who=who,
        items=items,
        following=following,
        actor=actor or "",
        action=action or "",
        subject=subject or "",
        actions=[a.value for a in Action],
    )


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
