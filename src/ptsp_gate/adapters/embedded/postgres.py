"""An embedded PostgreSQL 16 server from the ``pgserver`` wheel.

The server listens on a unix socket only (no TCP port to collide with), in or next to the
data directory. The DSN it hands out looks like
``postgresql://postgres:@/ptsp_gate?host=/path/to/socket-dir``, which asyncpg (and libpq)
accept as is. Authentication is ``trust`` for local connections: a development server.

pgserver shares one server between every process that opens the same data directory and
stops it when the last of them exits (``atexit``). A process killed by a signal it does not
handle never runs ``atexit``; the server then keeps running and the next ``start`` on the
same directory reuses it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["DEFAULT_DATABASE", "EmbeddedPostgres", "EmbeddedPostgresError", "default_data_dir"]

DEFAULT_DATABASE = "ptsp_gate"
_SAFE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started or prepared."""


def default_data_dir(base: Path | None = None) -> Path:
    """Where ``ptsp-gate dev`` keeps its database: ``./.ptsp-gate/pgdata``."""
    return (base or Path.cwd()) / ".ptsp-gate" / "pgdata"


def _import_pgserver() -> Any:
    # platformdirs warns about a missing XDG_RUNTIME_DIR while pgserver's class body
    # computes its lock path; the /tmp fallback it picks is fine for us.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pgserver

    return pgserver


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget processes that died without running pgserver's atexit cleanup.

    pgserver stops the server only when the exiting process is the last one listed in
    ``.handle_pids.json``; a crashed process would otherwise keep it running forever.
    """
    pids_file = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if _pid_alive(pid)]
    if alive != pids:
        pids_file.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A PostgreSQL server for one data directory, with a named database in it.

    Usage::

        with EmbeddedPostgres(tmp_path / "pgdata") as pg:
            conn = await asyncpg.connect(pg.dsn)
    """

    def __init__(self, data_dir: Path | None = None, *, database: str = DEFAULT_DATABASE):
        if not _SAFE_IDENTIFIER.fullmatch(database):
            raise ValueError(f"database name must be a plain SQL identifier: {database!r}")
        self.data_dir = data_dir
        self.database = database
        self._server: Any = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, data_dir: Path | None = None) -> str:
        """Start (or attach to) the server, create the database if absent, return its DSN.

        Stopping happens in :meth:`stop`, or when this process exits.
        """
        if self._server is not None:
            return self.dsn
        data_dir = data_dir or self.data_dir or default_data_dir()
        data_dir = data_dir.expanduser().resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir

        pgserver = _import_pgserver()
        try:
            # pgserver's own inter-process lock guards the pid list it keeps in pgdata.
            with pgserver.PostgresServer._lock:
                _prune_dead_handles(data_dir)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
                self._server = pgserver.get_server(data_dir, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError, AssertionError) as exc:
            log = data_dir / "log"
            detail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedPostgresError(
                f"PostgreSQL in {data_dir} did not start: {exc}\n{detail}"
            ) from exc
        self._create_database()
        return self.dsn

    @property
    def dsn(self) -> str:
        """asyncpg/libpq DSN of :attr:`database`."""
        return self._uri(self.database)

    @property
    def admin_dsn(self) -> str:
        """DSN of the ``postgres`` maintenance database."""
        return self._uri("postgres")

    def _uri(self, database: str) -> str:
        if self._server is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not running")
        return str(self._server.get_uri(database))

    def _psql(self, sql: str) -> str:
        _import_pgserver()
        from pgserver._commands import POSTGRES_BIN_PATH  # not re-exported by the package

        psql = Path(POSTGRES_BIN_PATH) / "psql"
        result = subprocess.run(
            [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, self.admin_dsn],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"psql {sql!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _create_database(self) -> None:
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists:
            return
        try:
            self._psql(f'CREATE DATABASE "{self.database}"')
        except EmbeddedPostgresError as exc:
            # Another process sharing the server won the race; that is what we wanted.
            if "already exists" not in str(exc):
                raise

    def stop(self) -> None:
        """Stop the server unless another process still uses it. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.dsn if self.running else "stopped"
        return f"EmbeddedPostgres({self.data_dir}, {state})"
