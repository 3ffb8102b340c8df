"""An embedded PostgreSQL 16 server from the ``pgserver`` wheel.

The server listens on a unix socket only (no TCP port to collide with), in the data directory,
or, when that path is too long for a socket, in a new private (0700) directory under the temporary
directory. The DSN it hands out looks like
``postgresql://postgres:@/ptsp_gate?host=/path/to/socket-dir``, which asyncpg (and libpq)
accept as is. Authentication is ``trust`` for local connections: a development server.

pgserver shares one server between every process that opens the same data directory and
stops it when the last of them exits (``atexit``). A process killed by a signal it does not
handle never runs ``atexit``; the server then keeps running and the next ``start`` on the
same directory reuses it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from ptsp_gate.embedded.engine import Engine

__all__ = ["DEFAULT_DATABASE", "EmbeddedPostgres", "EmbeddedPostgresError", "default_data_dir"]

DEFAULT_DATABASE = "ptsp_gate"
_SAFE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SOCKET_NAME = ".s.PGSQL.5432"
_SOCKET_DIR_PREFIX = "ptsp-gate-pg-"
# pgserver runs the server as this system user when it is started by root.
_ROOT_SERVER_USER = "pgserver"
# Socket directories made by _socket_dir and not yet checked by _sealed_pg_ctl.
_unsealed: list[Path] = []


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

    _install_private_socket_dir()
    return pgserver


def _install_private_socket_dir() -> None:
    """Make pgserver put the server's socket in a private directory when pgdata's path is too long.

    pgserver's own fallback is a fixed directory under its runtime path (``/tmp/runtime-<uid>``
    when XDG_RUNTIME_DIR is unset), which it makes world-writable (0777) when run by root: anyone
    could then replace the socket and pose as the server. pgserver has no setting for this, so
    its two module-level helpers are replaced (pgserver is pinned below 0.2, and a test fails if
    they move).
    """
    from pgserver import postgres_server as module

    postgres_server: Any = module
    choose = getattr(postgres_server, "find_suitable_socket_dir", None)
    pg_ctl = getattr(postgres_server, "pg_ctl", None)
    if choose is _socket_dir:
        return
    if choose is None or pg_ctl is None:
        raise EmbeddedPostgresError(
            "this pgserver version has no find_suitable_socket_dir / pg_ctl to replace: "
            "its socket directory cannot be made private"
        )
    postgres_server.find_suitable_socket_dir = _socket_dir
    postgres_server.pg_ctl = functools.partial(_sealed_pg_ctl, pg_ctl)


def _socket_dir(pgdata: Path, _runtime_path: Path) -> Path:
    """The directory for the server's socket: pgdata when the socket's path fits, else a new
    directory only the server's user can enter."""
    from pgserver.utils import socket_name_length_ok

    if socket_name_length_ok(pgdata / _SOCKET_NAME):
        return pgdata
    directory = Path(tempfile.mkdtemp(prefix=_SOCKET_DIR_PREFIX))  # 0700, an unguessable name
    if not socket_name_length_ok(directory / _SOCKET_NAME):
        directory.rmdir()
        raise EmbeddedPostgresError(
            f"no directory for PostgreSQL's socket: {pgdata} and {directory} are both too long"
        )
    uid, gid = _server_owner()
    if uid != os.geteuid():
        os.chown(directory, uid, gid)
    _unsealed.append(directory)
    return directory


def _server_owner() -> tuple[int, int]:
    """The user and group the server runs as: pgserver's own user when started by root."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    import pwd

    entry = pwd.getpwnam(_ROOT_SERVER_USER)  # pgserver creates it before choosing the directory
    return entry.pw_uid, entry.pw_gid


def _sealed_pg_ctl(pg_ctl: Callable[..., str], args: list[str], *rest: Any, **kwargs: Any) -> str:
    """pgserver's pg_ctl, with the socket directory closed again just before the server starts.

    When run by root pgserver opens the directory _socket_dir made to everyone (0777) right
    before starting the server; it is closed again here, and refused if anything was put in it
    meanwhile.
    """
    if "start" in args:
        while _unsealed:
            _seal(_unsealed.pop())
    return pg_ctl(args, *rest, **kwargs)


def _seal(directory: Path) -> None:
    os.chmod(directory, stat.S_IRWXU)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != _server_owner()[0] or os.listdir(directory):
        raise EmbeddedPostgresError(
            f"{directory}: PostgreSQL's socket directory was changed by someone else; not starting"
        )


def _forget_socket_dir(directory: Path | None) -> None:
    """Remove a socket directory of ours once the server is gone (it is empty then)."""
    if (
        directory is not None
        and directory.name.startswith(_SOCKET_DIR_PREFIX)
        and directory.parent == Path(tempfile.gettempdir())
    ):
        with contextlib.suppress(OSError):  # still in use by a server another process shares
            directory.rmdir()


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


class EmbeddedPostgres(Engine):
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
        _unsealed.clear()  # a directory left by a start that failed before pg_ctl
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
            try:
                socket_dir = server.get_postmaster_info().socket_dir
            except AssertionError:
                socket_dir = None
            server.cleanup()
            _forget_socket_dir(socket_dir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __repr__(self) -> str:
        state = self.dsn if self.running else "stopped"
        return f"EmbeddedPostgres({self.data_dir}, {state})"
