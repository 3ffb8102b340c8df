"""The HTTP side of a service: /health, /ready and /metrics beside the FastStream app, a
readiness answer shared by every probe, and the exit of a process whose consumer died."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, make_asgi_app

from ptsp_gate.observability.logging import get_logger

log = get_logger(__name__)

# How long one readiness answer is served to every probe.
READINESS_CACHE_S = 1.5

Problems = dict[str, str]
Hook = Callable[[], Awaitable[None]]


class SharedReadiness:
    """Probes may come by the hundred (every replica's kubelet, load balancers, people): one
    answer is shared for ``READINESS_CACHE_S`` and by callers that arrive while a check runs, so
    probes cannot take the connections decisions need."""

    def __init__(self, check: Callable[[], Awaitable[Problems]]) -> None:
        self._check = check
        self._answer: asyncio.Future[Problems] | None = None
        self._answered_at = 0.0

    async def __call__(self) -> Problems:
        loop = asyncio.get_running_loop()
        if self._answer is not None and (
            not self._answer.done() or loop.time() - self._answered_at < READINESS_CACHE_S
        ):
            return dict(await asyncio.shield(self._answer))
        self._answered_at = loop.time()
        self._answer = asyncio.ensure_future(self._check())
        return dict(await asyncio.shield(self._answer))


class Supervised(Protocol):
    """What the exit watch needs of a service."""

    name: str
    failed: bool

    async def stop(self) -> None: ...


def http_app(
    broker: KafkaBroker,
    *,
    service: Supervised,
    registry: CollectorRegistry,
    readiness: Callable[[], Awaitable[Problems]],
    on_startup: Sequence[Hook],
    after_startup: Sequence[Hook],
    on_shutdown: Sequence[Hook],
) -> AsgiFastStream:
    @get
    async def health(scope: Any) -> AsgiResponse:
        return _json_response({"status": "alive", "service": service.name}, 200)

    @get
    async def ready(scope: Any) -> AsgiResponse:
        problems = await readiness()
        if problems:
            return _json_response({"status": "not ready", "problems": problems}, 503)
        return _json_response({"status": "ready"}, 200)

    # FastStream runs on_startup before it starts the broker and after_startup once it has; on
    # shutdown, the service's stop() drains the consumer before the relay and pool close.
    app = AsgiFastStream(
        broker,
        asgi_routes=[
            ("/metrics", make_asgi_app(registry)),
            ("/health", health),
            ("/ready", ready),
        ],
        on_startup=list(on_startup),
        after_startup=list(after_startup),
        on_shutdown=list(on_shutdown),
        logger=logging.getLogger("ptsp_gate.app"),
    )
    return _ExitWhenBrokerDies(app, service)  # type: ignore[return-value]


def _json_response(body: dict[str, Any], status: int) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(), status, headers={"content-type": "application/json"}
    )


class _ExitWhenBrokerDies:
    """FastStream starts the broker after the server reports startup complete; if that start
    fails (a consumer that cannot join its group, say), the HTTP side would keep answering while
    nothing consumes. A process in that state exits instead, non-zero, so whatever supervises it
    (Kubernetes, compose, the worker supervisor) starts a fresh one."""

    def __init__(self, app: AsgiFastStream, service: Supervised) -> None:
        self._app = app
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        stopping = False

        async def watched_receive() -> Any:
            nonlocal stopping
            message = await receive()
            stopping = stopping or message.get("type") == "lifespan.shutdown"
            return message

        async def watched_send(message: Any) -> None:
            if message.get("type") == "lifespan.shutdown.failed" and not stopping:
                self._service.failed = True
                log.error(
                    "the Kafka consumer stopped; exiting so that a new process takes over",
                    service=self._service.name,
                    error=(str(message.get("message", "")).strip().splitlines() or [""])[-1],
                )
                with contextlib.suppress(Exception):
                    await self._service.stop()
                signal.raise_signal(signal.SIGTERM)  # the server's own graceful exit
            await send(message)

        await self._app(scope, watched_receive, watched_send)
