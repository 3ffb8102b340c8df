"""`ptsp-gate run SERVICE`: one service in the foreground, with its HTTP probes and metrics; as
several worker processes sharing the port with --workers."""

from __future__ import annotations

import argparse
import signal
from typing import TYPE_CHECKING

from ptsp_gate.cli.common import PORT, CommandError, bounded, policy_book, subcommands
from ptsp_gate.config import Settings
from ptsp_gate.runtime.registry import installed

if TYPE_CHECKING:
    from ptsp_gate.cli.common import Subcommands


def add_parser(sub: Subcommands) -> None:
    parser = sub.add_parser("run", help="run one service")
    parser.set_defaults(handler=run)
    services = subcommands(parser, "service")
    for name, entry in installed().items():
        service = services.add_parser(name, help=f"run the {name} service")
        service.add_argument(
            "--port",
            type=PORT,
            default=entry.default_port,
            help="HTTP port for /metrics, /health, /ready",
        )
        service.add_argument("--host", default="0.0.0.0", help="HTTP bind address")
        service.add_argument(
            "--workers",
            type=bounded(1, 64),
            default=1,
            help="worker processes sharing the port, each a consumer in the group "
            "(more than the topic's partitions leaves some idle)",
        )


async def run(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from ptsp_gate.observability.logging import configure
    from ptsp_gate.runtime.registry import entry_for
    from ptsp_gate.runtime.service import Service, StartupError
    from ptsp_gate.runtime.web import WebService

    entry = entry_for(args.service)
    # A web service reaches PostgreSQL alone; a consumer Kafka too.
    needed = {
        "KAFKA_BOOTSTRAP_SERVERS": entry.kind == "web" or bool(settings.kafka_bootstrap_servers),
        "DATABASE_URL": settings.database_url is not None,
    }
    missing = [name for name, present in needed.items() if not present]
    if missing:
        raise CommandError(f"{' and '.join(missing)} must be set (or use `ptsp-gate dev`)")
    configure(settings.log_level, settings.log_format)
    service: Service | WebService
    try:
        if entry.kind == "web":
            service = entry.web(settings, policy_book(settings))
        else:
            service = Service(entry.spec(settings, policy_book(settings)), settings)
    except ValueError as exc:  # settings that cannot work, said in one line
        raise CommandError(str(exc)) from exc
    try:
        await service.open()
    except StartupError as exc:
        raise CommandError(str(exc)) from exc
    if args.workers > 1:
        # The checks above ran once, here, so a bad setting is one line rather than N workers
        # failing; each worker then opens its own connections.
        await service.release()
        from ptsp_gate.runtime import supervisor

        try:
            return supervisor.serve(args.service, args.host, args.port, args.workers)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    server = uvicorn.Server(
        uvicorn.Config(
            service.asgi_app(),
            host=args.host,
            port=args.port,
            log_config=None,
            lifespan="on",
            access_log=False,
        )
    )
    # uvicorn re-raises the signal it caught once shutdown completes; after a clean drain that
    # must not turn into death-by-signal, so the handler it restores is a no-op.
    signal.signal(signal.SIGTERM, lambda *_: None)
    await server.serve()
    if getattr(service, "failed", False):
        raise CommandError(f"{args.service}: the Kafka consumer stopped (see the log above)")
    return 0 if server.started else 1
