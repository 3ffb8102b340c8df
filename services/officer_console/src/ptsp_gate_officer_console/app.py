"""Wiring of the officer-console service: its PostgreSQL pool, the FastAPI application (pages and
/api/v1), the probes and metrics every service serves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import create_pool
from ptsp_gate.config import Settings
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook
from ptsp_gate.runtime.service import StartupError
from ptsp_gate_officer_console import api, pages, workspace
from ptsp_gate_officer_console.figures import FiguresCache
from ptsp_gate_officer_console.resources import STATIC_DIR
from ptsp_gate_officer_console.security import SECURITY_HEADERS, CookieNames, Throttle
from ptsp_gate_officer_console.sso import SingleSignOn

log = get_logger(__name__)


class ConsoleService:
    """The officer console as `ptsp-gate run officer-console` serves it."""

    name = "officer-console"

    def __init__(
        self,
        settings: Settings,
        policies: PolicyBook,
        metrics: Metrics | None = None,
        sso_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not settings.database_url:
            raise StartupError("DATABASE_URL is not set")
        self.settings = settings
        self.policies = policies
        self.metrics = metrics or Metrics()
        self.metrics.set_build(str(policies.national.version))
        self.metrics.expose_console()
        self.cookies = CookieNames.for_settings(settings)
        self.throttle = Throttle()
        self.pool: asyncpg.Pool | None = None
        self.figures = FiguresCache(
            settings.console_figures_refresh_s, api.TIMEZONE, settings.redecide_window_days
        )
        self._figures_task: asyncio.Task[None] | None = None
        # `sso_transport` lets tests put an identity provider in the same process.
        self.sso = SingleSignOn(settings, sso_transport) if settings.console_oidc_issuer else None

    async def open(self) -> None:
        if self.pool is not None:
            return
        limit_ms = max(1, round(self.settings.statement_timeout_s * 1000))
        try:
            self.pool = await create_pool(
                self.settings.dsn(),
                self.settings.db_pool_size,
                server_settings={
                    "application_name": "ptsp-gate officer-console",
                    "statement_timeout": str(limit_ms),
                },
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StartupError(f"cannot connect to PostgreSQL: {exc}") from exc
        async with self.pool.acquire() as conn:
            missing = await migrations.pending(conn)
        if missing:
            await self.release()
            raise StartupError(
                f"database schema is behind ({', '.join(missing)}): run `ptsp-gate migrate`"
            )
        # Computed before the first page, so that no officer waits for a year of history.
        try:
            async with self.pool.acquire() as conn:
                await self.figures.refresh(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("coverage figures not computed", error=f"{type(exc).__name__}: {exc}")
        self._figures_task = asyncio.create_task(self.figures.keep(self.pool), name="figures")
        log.info("service started", service=self.name)

    async def release(self) -> None:
        if self._figures_task is not None:
            self._figures_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._figures_task
            self._figures_task = None
        if self.sso is not None:
            await self.sso.close()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self.pool is None:
            raise StartupError("the console is not connected to PostgreSQL")
        async with self.pool.acquire() as conn:
            yield conn

    async def problems(self) -> dict[str, str]:
        if self.pool is None:
            return {"postgresql": "not connected"}
        try:
            async with asyncio.timeout(2.0), self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception as exc:
            return {"postgresql": type(exc).__name__}
        return {}

    def asgi_app(self) -> FastAPI:
        return build_app(self)


def build_app(console: ConsoleService) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await console.open()
        try:
            yield
        finally:
            await console.release()
            log.info("service stopped", service=console.name)

    app = FastAPI(
        title="ptsp-gate officer console API",
        version="1.0.0",
        description="The compliance projection for the licensing office's systems and officers:"
        " flagged employers, one employer, coverage figures, overrides and the audit record,"
        " each limited to the caller's regions. Authenticate with `Authorization: Bearer TOKEN`"
        " (`ptsp-gate officer token USERNAME`).",
        openapi_url="/api/v1/openapi.json",
        # The interactive documentation pages load their scripts from a CDN: not inside a closed
        # network, and not under this Content-Security-Policy.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.console = console

    @app.middleware("http")
    async def headers_and_metrics(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        console.metrics.console_requests.labels(
            template, request.method, str(response.status_code)
        ).inc()
        console.metrics.console_request_duration.labels(template, request.method).observe(
            time.perf_counter() - started
        )
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if not template.startswith("/static"):
            # Lists of employers must not stay in a shared computer's browser cache.
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own answer echoes the input, which may be an NPWP; this one names the
        # parameter and the rule only.
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
            for e in exc.errors()
        ]
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "invalid request", "problems": problems}, 422)
        return pages.error_page(
            request, 400, "; ".join(p["where"] + ": " + p["problem"] for p in problems)
        )

    @app.exception_handler(pages.SignInRequired)
    async def sign_in_first(request: Request, exc: pages.SignInRequired) -> Response:
        return pages.login_redirect(request)

    def refusal(status: int) -> Any:
        async def handle(request: Request, exc: Exception) -> Response:
            if request.url.path.startswith("/api/"):
                return JSONResponse({"error": str(exc)}, status)
            return pages.error_page(request, status, str(exc))

        return handle

    app.add_exception_handler(workspace.BadRequest, refusal(400))
    app.add_exception_handler(workspace.Denied, refusal(403))
    app.add_exception_handler(workspace.NotFound, refusal(404))
    app.add_exception_handler(workspace.Conflict, refusal(409))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path served
            # by several (GET and POST /api/v1/overrides) must name them all.
            headers = {**(headers or {}), "Allow": ", ".join(_methods_of(app, request))}
        if request.url.path.startswith("/api/") or request.url.path in ("/health", "/ready"):
            return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=headers)
        return pages.error_page(request, exc.status_code, str(exc.detail))

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"status": "alive", "service": console.name})

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        problems = await console.problems()
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body = generate_latest(console.metrics.exposition_registry())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/robots.txt", include_in_schema=False)
    async def robots() -> PlainTextResponse:
        return PlainTextResponse("User-agent: *\nDisallow: /\n")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    return app


def _methods_of(app: FastAPI, request: Request) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": "GET"})
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


def create(settings: Settings, policies: PolicyBook) -> ConsoleService:
    return ConsoleService(settings, policies)
