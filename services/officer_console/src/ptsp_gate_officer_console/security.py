"""Who is asking: a browser session (cookie, with a CSRF token for every form) or an API token
(`Authorization: Bearer`); sign-in throttling by source address; the headers every answer
carries."""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from fastapi import Request

from ptsp_gate.accounts.roles import Officer
from ptsp_gate.config import Settings
from ptsp_gate.stores import accounts

# No script, no style attribute, no frame, nothing from elsewhere: the pages are plain HTML and
# one stylesheet served by the console itself (it runs inside closed government networks).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class CookieNames:
    session: str
    login_csrf: str
    sso: str

    @classmethod
    def for_settings(cls, settings: Settings) -> CookieNames:
        # `__Host-` binds a cookie to this host and path /, and browsers accept it only with
        # Secure: used whenever cookies are Secure.
        prefix = "__Host-" if settings.console_secure_cookies else ""
        return cls(f"{prefix}ptsp_session", f"{prefix}ptsp_login", f"{prefix}ptsp_sso")


@dataclass(frozen=True, slots=True)
class Authenticated:
    officer: Officer
    # Set for a browser session; None for an API token, which a browser never sends by itself.
    csrf_token: str | None
    via: str  # "console" or "api"


def same_token(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and hmac.compare_digest(
        str(given).encode(), str(expected).encode()
    )


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(
    request: Request, conn: asyncpg.Connection, settings: Settings, cookies: CookieNames
) -> Authenticated | None:
    token = bearer(request)
    if token is not None:
        officer = await accounts.by_token(conn, token)
        return Authenticated(officer, None, "api") if officer else None
    cookie = request.cookies.get(cookies.session)
    if not cookie:
        return None
    found = await accounts.session(conn, cookie, timedelta(minutes=settings.console_idle_minutes))
    if found is None:
        return None
    officer, csrf = found
    return Authenticated(officer, csrf, "console")


class Throttle:
    """At most `limit` failed sign-ins per source address in `window_s`: slows guessing across
    many accounts, which the per-account lockout alone does not. Per process; with several
    workers each counts its own share."""

    def __init__(
        self, limit: int = 20, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, source: str) -> deque[float]:
        now = self.clock()
        failures = self._failures.setdefault(source, deque())
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        if not failures:
            self._failures.pop(source, None)
        return failures

    def allowed(self, source: str) -> bool:
        return len(self._recent(source)) < self.limit

    def failed(self, source: str) -> None:
        self._recent(source)
        self._failures.setdefault(source, deque()).append(self.clock())
        if len(self._failures) > 100_000:  # a flood of addresses cannot exhaust memory
            self._failures.clear()
