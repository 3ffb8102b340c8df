"""`dev`'s logs and data, and the embedded PostgreSQL's socket directory, are the user's alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ptsp_gate.cli import dev_session as dev
from ptsp_gate.embedded import postgres as embedded_pg


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- dev's directories and log files -------------------------------------------------------------


def test_new_data_and_log_directories_are_0700(tmp_path: Path) -> None:
    logs = tmp_path / "data" / "logs"
    dev._private_dir(tmp_path / "data")
    dev._private_dir(logs)
    assert mode(tmp_path / "data") == 0o700
    assert mode(logs) == 0o700


def test_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        dev._private_dir(tmp_path / "open")
    finally:
        os.umask(old)
    assert mode(tmp_path / "open") == 0o700


def test_an_existing_directory_is_tightened(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    existing.chmod(0o777)
    dev._private_dir(existing)
    assert mode(existing) == 0o700


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: tightening it would break every other user
    dev._private_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


@pytest.mark.parametrize("earlier_run", [False, True], ids=["new", "of-an-earlier-run"])
def test_log_files_are_0600_and_hold_only_this_runs_lines(
    tmp_path: Path, earlier_run: bool
) -> None:
    log = tmp_path / "permit-checker.log"
    if earlier_run:  # open to everyone and longer than what this run writes
        log.write_bytes(b"an earlier run's lines\n" * 10)
        log.chmod(0o666)
    with dev._private_file(log) as handle:
        handle.write(b"new\n")
    assert mode(log) == 0o600
    assert log.read_bytes() == b"new\n"


def test_a_log_file_planted_as_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    (tmp_path / "permit-checker.log").symlink_to(target)
    with pytest.raises(OSError, match="symbolic links"):
        dev._private_file(tmp_path / "permit-checker.log")
    assert target.read_bytes() == b"keep"


# --- the embedded PostgreSQL's socket directory --------------------------------------------------


@pytest.fixture
def as_this_user(monkeypatch: pytest.MonkeyPatch) -> None:
    embedded_pg._import_pgserver()
    # Run by root, the directory goes to pgserver's own user; here it stays with the test's.
    monkeypatch.setattr(embedded_pg, "_server_owner", lambda: (os.geteuid(), os.getegid()))
    monkeypatch.setattr(embedded_pg, "_unsealed", [])


def long_pgdata(root: Path) -> Path:
    """A data directory whose socket path is longer than a Unix socket address can be."""
    pgdata = root / ("d" * 60) / ("e" * 60) / "pgdata"
    pgdata.mkdir(parents=True)
    return pgdata


def test_a_short_pgdata_holds_its_own_socket(tmp_path: Path, as_this_user: None) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    assert embedded_pg._socket_dir(pgdata, Path("/tmp/runtime-unused")) == pgdata


def test_a_long_pgdata_gets_a_private_socket_directory(tmp_path: Path, as_this_user: None) -> None:
    directory = embedded_pg._socket_dir(long_pgdata(tmp_path), Path("/tmp/runtime-unused"))
    try:
        assert directory.name.startswith("ptsp-gate-pg-")
        assert mode(directory) == 0o700
        assert directory.stat().st_uid == os.geteuid()
        assert len(str(directory / ".s.PGSQL.5432")) < 100
    finally:
        directory.rmdir()


def test_the_socket_directory_is_closed_again_before_the_server_starts(
    tmp_path: Path, as_this_user: None
) -> None:
    """Run by root, pgserver makes the directory 0777 right before pg_ctl start."""
    directory = embedded_pg._socket_dir(long_pgdata(tmp_path), Path("/tmp/runtime-unused"))
    seen: list[int] = []

    def pg_ctl(args: list[str], **kwargs: object) -> str:
        seen.append(mode(directory))
        return ""

    try:
        directory.chmod(0o777)  # what pgserver does
        embedded_pg._sealed_pg_ctl(pg_ctl, ["-w", "start"], pgdata=tmp_path)
        assert seen == [0o700]
        assert mode(directory) == 0o700
    finally:
        directory.rmdir()


def test_a_socket_directory_written_to_meanwhile_is_refused(
    tmp_path: Path, as_this_user: None
) -> None:
    directory = embedded_pg._socket_dir(long_pgdata(tmp_path), Path("/tmp/runtime-unused"))
    called: list[list[str]] = []
    try:
        directory.chmod(0o777)
        (directory / ".s.PGSQL.5432").write_text("planted by someone else")
        with pytest.raises(embedded_pg.EmbeddedPostgresError, match="changed by someone else"):
            embedded_pg._sealed_pg_ctl(lambda args, **kw: called.append(args) or "", ["start"])
        assert called == []  # the server was not started
    finally:
        (directory / ".s.PGSQL.5432").unlink()
        directory.rmdir()


def test_other_pg_ctl_actions_pass_through(as_this_user: None) -> None:
    called: list[list[str]] = []
    embedded_pg._sealed_pg_ctl(lambda args, **kw: called.append(args) or "", ["-w", "stop"])
    assert called == [["-w", "stop"]]


def test_pgserver_uses_the_private_socket_directory() -> None:
    """Fails if pgserver's internals moved: the replacement would silently not apply."""
    embedded_pg._import_pgserver()
    from pgserver import postgres_server

    assert postgres_server.find_suitable_socket_dir is embedded_pg._socket_dir
    assert postgres_server.pg_ctl.func is embedded_pg._sealed_pg_ctl
    embedded_pg._import_pgserver()  # idempotent: not wrapped twice
    assert postgres_server.pg_ctl.args[0] is not postgres_server.pg_ctl
    assert not hasattr(postgres_server.pg_ctl.args[0], "func")


def test_a_socket_directory_of_ours_is_removed_after_the_server(tmp_path: Path) -> None:
    import tempfile

    ours = Path(tempfile.mkdtemp(prefix="ptsp-gate-pg-"))
    embedded_pg._forget_socket_dir(ours)
    assert not ours.exists()
    other = tmp_path / "not-ours"
    other.mkdir()
    embedded_pg._forget_socket_dir(other)
    assert other.exists()
    embedded_pg._forget_socket_dir(None)
