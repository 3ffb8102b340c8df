"""DATABASE_URL is a secret: never shown by the settings, printed only redacted, and a malformed
one is a one-line configuration error that does not quote the password."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptsp_gate.cli import dev_session as dev
from ptsp_gate.cli.main import main
from ptsp_gate.config import Settings, dsn_problem, redact_dsn

PASSWORD = "Sup3r-s3cret"  # long and odd enough to appear nowhere by chance
URL = f"postgresql://ptsp_gate:{PASSWORD}@db.example:5432/ptsp_gate?sslmode=require"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_URL_FILE", "PGPORT", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)


# --- the setting ---------------------------------------------------------------------------------


def test_settings_never_show_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    s = Settings()
    assert s.dsn() == URL  # what connections use
    for shown in (repr(s), str(s), str(s.model_dump()), s.model_dump_json(), repr(s.database_url)):
        assert PASSWORD not in shown


def test_settings_from_a_file_never_show_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "url"
    secret.write_text(URL + "\n", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    s = Settings()
    assert s.dsn() == URL
    assert PASSWORD not in repr(s)
    assert PASSWORD not in s.model_dump_json()


def test_settings_built_in_code_keep_it_secret_too() -> None:
    s = Settings(database_url=URL)
    assert s.dsn() == URL
    assert PASSWORD not in repr(s)


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_database_url_is_unset(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DATABASE_URL", value)
    s = Settings()
    assert s.database_url is None
    with pytest.raises(ValueError, match="DATABASE_URL is not set"):
        s.dsn()


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ptsp_gate:{PASSWORD}@host:notaport/db",
        f"postgresql://ptsp_gate:{PASSWORD}@host:99999/db",
        f"postgresql://ptsp_gate:{PASSWORD}@host:0/db",
        f"postgresql://ptsp_gate:{PASSWORD}@h1:5432,h2:x/db",
        f"postgresql://ptsp_gate:{PASSWORD}@h1,,h2/db",
        f"postgresql://ptsp_gate:{PASSWORD}@[::1/db",
        f"postgresql://ptsp_gate:{PASSWORD}@[::1]:port/db",
        f"postgresql://ptsp_gate:{PASSWORD}@host/db?port=abc",
        f"postgresql://ptsp_gate:{PASSWORD}@host/db?host=h:abc",
        f"postgresql://ptsp_gate:{PASSWORD}@host/db?sslmode",
        f"postgresql://ptsp_gate:{PASSWORD}@host:{'9' * 5000}/db",
        f"mysql://ptsp_gate:{PASSWORD}@host/db",
        f"host=db user=ptsp_gate password={PASSWORD}",
        "garbage",
        PASSWORD,  # a mounted secret holding only the password
        "postgresql:/ptsp_gate:" + PASSWORD + "@host/db",
    ],
)
def test_malformed_url_is_refused_without_quoting_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValueError, match="DATABASE_URL") as exc:
        Settings()
    assert PASSWORD not in str(exc.value)


def test_malformed_url_from_a_file_names_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "url"
    secret.write_text(f"postgresql://u:{PASSWORD}@host:port/db", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    with pytest.raises(ValueError, match="DATABASE_URL_FILE") as exc:
        Settings()
    assert PASSWORD not in str(exc.value)


@pytest.mark.parametrize(
    "url",
    [
        URL,
        "postgresql://localhost/ptsp_gate",
        "postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write",
        "postgresql://postgres:@/ptsp_gate?host=/tmp/sock-dir",  # the embedded server's
        "postgresql://u:p%40ss@[::1]:5432/db",
        "postgresql:///db?host=/var/run/postgresql&port=5433",
        "postgresql://u@host:/db",  # empty port: the default
    ],
)
def test_usable_urls_pass(url: str) -> None:
    assert dsn_problem(url) is None
    assert Settings(database_url=url).dsn() == url


# --- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://a:{PASSWORD}@host:notaport/db",
        "garbage",
        f"postgresql://a:{PASSWORD}@host/db?port=-1",
        f"host=db password={PASSWORD}",
    ],
)
@pytest.mark.parametrize("argv", [["run", "permit-checker"], ["flagged"], ["migrate"]])
def test_malformed_url_is_one_line_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, argv: list[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"ptsp-gate {argv[0]}: configuration")
    assert "DATABASE_URL" in err[0]
    assert PASSWORD not in captured.err + captured.out


def test_bad_pgport_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # asyncpg reads PGPORT for every URL with a host, and would fail with a traceback.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("PGPORT", "abc")
    assert main(["run", "permit-checker"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ptsp-gate run: configuration: PGPORT: a port is not a number from 1 to 65535"]


# --- what `dev` prints ---------------------------------------------------------------------------


def _dev_args() -> argparse.Namespace:
    return argparse.Namespace(
        permit_checker_port=9101, enrolment_sync_port=9102, officer_console_port=9103
    )


def test_dev_prints_the_database_without_its_password() -> None:
    line = dev._database_line(URL)
    assert PASSWORD not in line
    assert (
        line == "PostgreSQL:  postgresql://ptsp_gate:***@db.example:5432/ptsp_gate?sslmode=require"
    )


def test_dev_try_lines_never_repeat_a_configured_url(tmp_path: Path) -> None:
    s = Settings(database_url=URL, data_dir=tmp_path)
    lines = dev._try_lines(_dev_args(), s, ["127.0.0.1:9092"])
    assert not any(PASSWORD in line for line in lines)
    assert not any("postgresql://" in line for line in lines)
    assert "DATABASE_URL" in lines[0]  # the reader is told the commands need the same variable


def test_dev_try_lines_for_the_embedded_database(tmp_path: Path) -> None:
    lines = dev._try_lines(_dev_args(), Settings(data_dir=tmp_path), ["127.0.0.1:9092"])
    assert lines[0] == "Try:"
    assert any(line.endswith(" flagged") for line in lines)


# --- redact_dsn ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (URL, "postgresql://ptsp_gate:***@db.example:5432/ptsp_gate?sslmode=require"),
        ("postgresql://u@host:5432/db", "postgresql://u@host:5432/db"),
        ("postgresql://host/db", "postgresql://host/db"),
        ("postgres://u:@/db?host=/tmp/s", "postgres://u:***@/db?host=/tmp/s"),
        (
            f"postgresql://host/db?sslmode=require&password={PASSWORD}&sslpassword={PASSWORD}",
            "postgresql://host/db?sslmode=require&password=***&sslpassword=***",
        ),
        (f"postgresql://host/db?PassWord={PASSWORD}", "postgresql://host/db?PassWord=***"),
        (f"postgresql://host/db?pass%77ord={PASSWORD}", "postgresql://host/db?pass%77ord=***"),
        (f"postgresql://u:{PASSWORD}@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        (
            f"host=db user=app password={PASSWORD} dbname=x",
            "host=db user=app password=*** dbname=x",
        ),
        (f"host=db password = '{PASSWORD} x' dbname=x", "host=db password=*** dbname=x"),
        (f"host=db password='it\\'s {PASSWORD}' port=5", "host=db password=*** port=5"),
        (f"host=db password='{PASSWORD}", "host=db password=***"),
        (f"host=db sslpassword={PASSWORD}", "host=db sslpassword=***"),
        ("host=db unknown=value", "host=db ***"),
        ("", ""),
    ],
)
def test_redact_dsn(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


@pytest.mark.parametrize(
    "dsn",
    [
        # unencoded characters in the password: hidden too generously rather than leaked
        f"postgresql://u:{PASSWORD}@x@host/db",
        f"postgresql://u:{PASSWORD}/x@host/db",
        f"postgresql://u:{PASSWORD}?x@host/db",
        f"postgresql://u:{PASSWORD}#x@host/db",
        f"postgresql://u:{PASSWORD}:x@host:5432/db",
        f"postgresql://host/db?password={PASSWORD}#frag",
        f"postgresql://host/db?password={PASSWORD}@x",
        f"postgresql://host/db?password={PASSWORD}&{PASSWORD}",
        f"postgresql://host/db?{PASSWORD}",
        f"postgresql://host/db?{PASSWORD} password=x",
        # not URLs, or mangled ones
        PASSWORD,
        f"  {PASSWORD}  ",
        f"postgresql:/u:{PASSWORD}@host/db",
        f"postgresql:/u:{PASSWORD}@host/db?password={PASSWORD}",
        f"postgresql//u:{PASSWORD}@host/db",
        f"u:{PASSWORD}@host",
        f"host=db {PASSWORD}",
        "host=db password",
        f"host=db password {PASSWORD}",
        f"host=db sslrootcert=file://x password={PASSWORD}",
        f"host=db passwd={PASSWORD}",
        f"host=db x{PASSWORD}=y",
        f"={PASSWORD}",
        f"'{PASSWORD}'=x",
        f"{PASSWORD[:5]}={PASSWORD[5:]}",  # a bare password holding '='
    ],
)
def test_redact_dsn_never_leaks(dsn: str) -> None:
    assert PASSWORD not in redact_dsn(dsn)


def test_redact_dsn_is_one_bounded_line() -> None:
    hostile = f"postgresql://u:{PASSWORD}@host/db\nlevel=error forged\r\x1b[31m" + "x" * 100_000
    shown = redact_dsn(hostile)
    assert PASSWORD not in shown
    assert len(shown) <= 500
    assert shown.isprintable()
    assert redact_dsn("postgresql://host/" + "d" * 1000, limit=40).endswith("...")


def test_redact_dsn_of_anything_never_raises() -> None:
    for value in (None, 5, b"postgresql://u:p@h/db", object()):
        assert isinstance(redact_dsn(value), str)  # type: ignore[arg-type]


_SECRET_CHARS = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        # a password holding the characters around it would be cut apart by any parser
        blacklist_characters=" \t\n\r\x0b\x0c'\\",
    ),
    min_size=12,
    max_size=30,
).filter(lambda s: s.isprintable() and "***" not in s)


@given(
    secret=_SECRET_CHARS,
    prefix=st.sampled_from(
        [
            "postgresql://u:{}@host/db",
            "postgresql://u:{}@h1:5432,h2:5433/db?sslmode=require",
            "postgres://u:{}@/db?host=/tmp",
            "postgresql://host/db?password={}",
            "postgresql://host/db?a=b&sslpassword={}&c=d",
            "host=db password={} user=x",
            "host=db password='{}' user=x",
            "password={}",
        ]
    ),
)
@settings(max_examples=300, deadline=None)
def test_redact_dsn_hides_any_password(secret: str, prefix: str) -> None:
    dsn = prefix.format(secret)
    shown = redact_dsn(dsn)
    assert secret not in shown


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_redact_dsn_and_dsn_problem_never_raise(text: str) -> None:
    assert isinstance(redact_dsn(text), str)
    problem = dsn_problem(text)
    assert problem is None or isinstance(problem, str)
