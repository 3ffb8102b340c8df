"""DATABASE_URL from a mounted secret file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ptsp_gate.cli.main import main
from ptsp_gate.config import Settings


def test_the_file_wins_over_the_variable(monkeypatch, tmp_path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text("postgresql://ptsp_gate:s3cret@db:5432/ptsp_gate\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://other@elsewhere/x")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    assert Settings().dsn() == "postgresql://ptsp_gate:s3cret@db:5432/ptsp_gate"


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_a_missing_or_empty_file_is_refused(monkeypatch, tmp_path, content) -> None:
    secret = tmp_path / "database-url"
    if content is not None:
        secret.write_text(content)
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    with pytest.raises(ValidationError, match="DATABASE_URL_FILE"):
        Settings()


def test_the_command_says_so_in_one_line(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "absent"))
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "DATABASE_URL_FILE" in err[0]
