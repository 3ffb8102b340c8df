"""The embedded PostgreSQL's socket, when its data path is too long to hold it, lives in a
directory only the server's user can enter (pgserver's own fallback is world-writable when run by
root)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ptsp_gate.embedded import EmbeddedPostgres
from ptsp_gate.embedded.postgres import _server_owner

from .support import query_value

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: a pytest run starting meanwhile closes its base directory to 0700
    # again, and run by root the server (another user) could then no longer reach its data.
    path = Path(tempfile.mkdtemp(prefix="ptsp-gate-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_a_long_data_path_gets_a_private_socket_directory(workdir: Path) -> None:
    data = workdir / ("d" * 60) / ("e" * 60) / "pgdata"
    data.parent.mkdir(parents=True)
    pg = EmbeddedPostgres(data)
    dsn = pg.start()
    try:
        socket_dir = Path(parse_qs(urlsplit(dsn).query)["host"][0])
        assert socket_dir != data
        info = socket_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == _server_owner()[0]
        assert (socket_dir / ".s.PGSQL.5432").is_socket()
        assert await query_value(dsn, "SELECT 1") == 1
    finally:
        pg.stop()
    assert not socket_dir.exists()  # removed with the server


async def test_a_short_data_path_keeps_the_socket_in_pgdata(workdir: Path) -> None:
    pg = EmbeddedPostgres(workdir / "pg")
    dsn = pg.start()
    try:
        socket_dir = Path(parse_qs(urlsplit(dsn).query)["host"][0])
        assert socket_dir == (workdir / "pg").resolve()
        assert stat.S_IMODE(os.stat(socket_dir).st_mode) == 0o700  # initdb's own mode
    finally:
        pg.stop()
