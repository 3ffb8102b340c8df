"""Services as separate processes, exactly as in production: ``ptsp-gate run NAME`` on a port of
its own, ready once ``/ready`` answers 200, stopped with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ptsp_gate.config import Settings
from ptsp_gate.embedded.ports import free_port
from ptsp_gate.embedded.processes import Process

__all__ = [
    "NotReady",
    "ServiceExited",
    "ServiceProcess",
    "running_services",
    "settings_env",
    "start_service",
    "wait_ready",
]

# How often wait_ready asks every service again.
_READY_POLL_S = 0.3


class ServiceExited(RuntimeError):
    """A service ended while it was awaited."""

    def __init__(self, service: Process) -> None:
        super().__init__(
            f"{service.name} exited with code {service.returncode}: {service.tail(1)[:300]}"
        )
        self.service = service


class NotReady(RuntimeError):
    """Services that did not answer /ready with 200 in time."""

    def __init__(self, names: Iterable[str], timeout_s: float) -> None:
        self.names = sorted(names)
        super().__init__(f"{', '.join(self.names)} not ready after {timeout_s:g} s")


class ServiceProcess(Process):
    """``ptsp-gate run NAME``: a :class:`Process` with the port its HTTP side listens on."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        port: int,
        **process: Any,
    ) -> None:
        super().__init__(name, argv, env, **process)
        self.port = port

    def ready(self) -> bool:
        """Whether /ready answers 200 now."""
        try:
            url = f"http://127.0.0.1:{self.port}/ready"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment, plus the variables under which a ``ptsp-gate`` child process
    reads ``settings``' broker, database, topics and consumer groups."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.kafka_bootstrap_servers),
        "DATABASE_URL": settings.dsn(),
        "PTSP_GATE_TOPIC_APPLICATIONS": settings.topic_applications,
        "PTSP_GATE_TOPIC_ENROLMENT": settings.topic_enrolment,
        "PTSP_GATE_TOPIC_DECISIONS": settings.topic_decisions,
        "PTSP_GATE_GROUP_PERMIT_CHECKER": settings.group_permit_checker,
        "PTSP_GATE_GROUP_ENROLMENT_SYNC": settings.group_enrolment_sync,
    }


def start_service(
    name: str,
    env: Mapping[str, str],
    *,
    port: int | None = None,
    options: Sequence[str] = (),
    log: Path | None = None,
    open_log: Callable[[Path], IO[bytes]] | None = None,
    python: Sequence[str] = (),
    label: str | None = None,
    **popen: Any,
) -> ServiceProcess:
    """``ptsp-gate run NAME --port PORT --host 127.0.0.1 OPTIONS`` (a free port unless given),
    its output in ``log`` (see :class:`Process`). ``python`` goes between the interpreter and
    ``-m ptsp_gate.cli.main`` (``-m cProfile -o FILE``, say); ``label`` names the process (by
    default ``name``)."""
    port = port or free_port()
    argv = [
        sys.executable,
        *python,
        *("-m", "ptsp_gate.cli.main", "run", name),
        *("--port", str(port), "--host", "127.0.0.1"),
        *options,
    ]
    return ServiceProcess(label or name, argv, env, port=port, log=log, open_log=open_log, **popen)


async def wait_ready(services: Iterable[ServiceProcess], timeout_s: float) -> None:
    """Until every service answers /ready with 200. Raises :class:`ServiceExited` when one ends
    meanwhile, :class:`NotReady` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    waiting = list(services)
    while waiting:
        for service in list(waiting):
            if not service.running():
                raise ServiceExited(service)
            if await asyncio.to_thread(service.ready):
                waiting.remove(service)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise NotReady((s.name for s in waiting), timeout_s)
        await asyncio.sleep(_READY_POLL_S)


@contextlib.contextmanager
def running_services(
    ports: Mapping[str, int],
    env: Mapping[str, str],
    *,
    logs: Path,
    open_log: Callable[[Path], IO[bytes]] | None = None,
) -> Iterator[dict[str, ServiceProcess]]:
    """The services named in ``ports``, each on its port and logging to ``logs/NAME.log``; any
    still running on the way out is killed (stop them first with :func:`stop_all` to shut them
    down gracefully)."""
    running: dict[str, ServiceProcess] = {}
    try:
        for name, port in ports.items():
            running[name] = start_service(
                name, env, port=port, log=logs / f"{name}.log", open_log=open_log
            )
        yield running
    finally:
        for service in running.values():
            if service.running():
                service.kill()
                service.wait()
