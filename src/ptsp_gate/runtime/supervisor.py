"""`ptsp-gate run SERVICE --workers N`: N worker processes behind one HTTP port.

Each worker is a whole service (consumer in the group, relay candidate, pool of its own); Kafka
spreads the partitions over them like over separate instances, and the advisory locks keep one
relay and one sweeper across all of them. Metrics go through prometheus-client's multi-process
mode, so whichever worker answers /metrics reports the sum of all of them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ptsp_gate.config import Settings
from ptsp_gate.observability.metrics import MULTIPROC_ENV, mark_process_dead, multiprocess_dir

SERVICE_ENV = "PTSP_GATE_WORKER_SERVICE"


def create_app() -> Any:
    """The ASGI app of one worker process (uvicorn imports and calls this in each child)."""
    from uvicorn.config import STARTUP_FAILURE

    from ptsp_gate.observability.logging import configure
    from ptsp_gate.policy import load_policy_book
    from ptsp_gate.runtime.registry import entry_for
    from ptsp_gate.runtime.service import Service

    try:
        settings = Settings()
        configure(settings.log_level, settings.log_format)
        entry = entry_for(os.environ[SERVICE_ENV])
        policies = load_policy_book(settings.policy_dir)
        if entry.kind == "web":
            return entry.web(settings, policies).asgi_app()
        return Service(entry.spec(settings, policies), settings).asgi_app()
    except Exception as exc:
        # The supervisor restarts a worker that dies for any other exit code, and this one would
        # fail the same way every time.
        print(f"ptsp-gate worker: cannot start: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)


def supervisor_class() -> type[Any]:
    """uvicorn's multi-process supervisor, also told which workers died.

    It overrides `Multiprocess.keep_subprocess_alive`, which is not part of uvicorn's documented
    API: uvicorn has no public hook for "a worker process exited", and both things done here
    need one (dropping a dead worker's gauges from the merged metrics; remembering a worker that
    could not start, to exit non-zero). uvicorn is therefore pinned to one minor version in
    pyproject.toml, and tests/unit/test_dependency_pins.py fails if the method, its signature or
    the attributes used here change.
    """
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        failed = False

        def keep_subprocess_alive(self) -> None:
            before = {p.pid: p for p in self.processes}
            super().keep_subprocess_alive()
            for pid, process in before.items():
                if process.exitcode is not None and pid is not None:
                    # A dead worker's gauges must not linger in the merged view; its counters do.
                    mark_process_dead(pid)
                    if process.exitcode == STARTUP_FAILURE:
                        self.failed = True

    return Supervisor


def serve(service: str, host: str, port: int, workers: int) -> int:
    """Run the workers until SIGTERM or SIGINT; non-zero when a worker could not start."""
    import uvicorn

    Supervisor = supervisor_class()
    configured = multiprocess_dir()
    try:
        directory = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="ptsp-gate-"))
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # values of an earlier run would add to this one's
            stale.unlink()
    except OSError as exc:
        raise ValueError(f"{MULTIPROC_ENV}: {exc}") from exc
    os.environ[MULTIPROC_ENV] = str(directory)
    os.environ[SERVICE_ENV] = service
    config = uvicorn.Config(
        "ptsp_gate.runtime.supervisor:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        lifespan="on",
        access_log=False,
    )
    try:
        # Inside the try: a port already in use exits here, and the directory must still go.
        supervisor = Supervisor(config, sockets=[config.bind_socket()])
        supervisor.run()
    finally:
        if not configured:
            shutil.rmtree(directory, ignore_errors=True)
    return 1 if supervisor.failed else 0
