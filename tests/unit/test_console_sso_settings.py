"""The officer console's single-sign-on settings: all of them or none, well-formed, the secret
from a file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ptsp_gate.cli.main import main
from ptsp_gate.config import Settings

WHOLE = {
    "PTSP_GATE_CONSOLE_OIDC_ISSUER": "https://sso.sulselprov.go.id/realms/ptsp",
    "PTSP_GATE_CONSOLE_OIDC_CLIENT_ID": "ptsp-console",
    "PTSP_GATE_CONSOLE_OIDC_REDIRECT_URL": "https://konsol.example.go.id/login/oidc/callback",
}


def test_whole_settings_and_a_secret_from_a_file(monkeypatch, tmp_path) -> None:
    for name, value in WHOLE.items():
        monkeypatch.setenv(name, value)
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("PTSP_GATE_CONSOLE_OIDC_CLIENT_SECRET", "from the variable")
    monkeypatch.setenv("PTSP_GATE_CONSOLE_OIDC_CLIENT_SECRET_FILE", str(secret))
    settings = Settings()
    assert settings.secret("console_oidc_client_secret") == "s3cret"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("left_out", sorted(WHOLE))
def test_part_of_them_is_refused_naming_what_is_missing(monkeypatch, left_out) -> None:
    for name, value in WHOLE.items():
        if name != left_out:
            monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=left_out):
        Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PTSP_GATE_CONSOLE_OIDC_ISSUER", "sso.example.go.id"),
        ("PTSP_GATE_CONSOLE_OIDC_ISSUER", "javascript:alert(1)"),
        ("PTSP_GATE_CONSOLE_OIDC_ISSUER", "https://sso.example.go.id/?x=1"),
        ("PTSP_GATE_CONSOLE_OIDC_REDIRECT_URL", "https://konsol example/cb"),
        ("PTSP_GATE_CONSOLE_OIDC_CLIENT_ID", ""),
        ("PTSP_GATE_CONSOLE_OIDC_CLIENT_ID", "x" * 201),
    ],
)
def test_malformed_values_are_refused(monkeypatch, name, value) -> None:
    for each, good in WHOLE.items():
        monkeypatch.setenv(each, good)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_the_command_says_so_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PTSP_GATE_CONSOLE_OIDC_ISSUER", WHOLE["PTSP_GATE_CONSOLE_OIDC_ISSUER"])
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/x")
    assert main(["run", "officer-console"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "single sign-on needs" in err[0]
