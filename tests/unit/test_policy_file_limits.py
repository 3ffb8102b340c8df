"""Hostile policy files: nested thousands of levels deep, oversized, not UTF-8. Each is refused
with one PolicyError line naming the file, never a RecursionError or a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptsp_gate.cli.main import main
from ptsp_gate.policy import PolicyError, load_policy_book, load_policy_file
from ptsp_gate.policy.files import MAX_FILE_BYTES, MAX_NESTING, read_policy_toml
from tests.policy_builders import REPO_POLICIES, write_policy_file

DEEP = 5000
HEAD = 'version = "1"\n'
REGION_HEAD = 'region = "7314"\nversion = "1"\n'
TOO_DEEP = f"nested deeper than {MAX_NESTING} levels"

HOSTILE = {
    "arrays": HEAD + "x = " + "[" * DEEP + "]" * DEEP + "\n",
    "inline-tables": HEAD + "x = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n",
    "table-header": HEAD + "[" + ".".join(["a"] * DEEP) + "]\nb = 1\n",
    "dotted-key": HEAD + ".".join(["a"] * DEEP) + " = 1\n",
    "inside-a-known-table": HEAD + "required_programs.MIKRO." + ".".join(["a"] * DEEP) + " = 1\n",
    "arrays-of-tables": HEAD + "x = [" + "{a = [" * (DEEP // 2) + "]}" * (DEEP // 2) + "]\n",
}


@pytest.fixture(autouse=True)
def _no_policy_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTSP_GATE_POLICY_DIR", raising=False)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_deep_nesting_is_refused_by_name(tmp_path: Path, name: str) -> None:
    path = write_policy_file(tmp_path, "national.toml", HOSTILE[name])
    with pytest.raises(PolicyError, match=TOO_DEEP) as exc:
        load_policy_file(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_deep_nesting_in_a_region_file(tmp_path: Path, name: str) -> None:
    path = write_policy_file(
        tmp_path, "regions/7314.toml", HOSTILE[name].replace(HEAD, REGION_HEAD)
    )
    with pytest.raises(PolicyError, match=TOO_DEEP):
        load_policy_file(path)
    with pytest.raises(PolicyError, match=TOO_DEEP):
        load_policy_book(tmp_path)


def test_nesting_at_the_limit_is_parsed(tmp_path: Path) -> None:
    # The file is level 1; x's arrays fill the remaining levels exactly.
    depth = MAX_NESTING - 1
    path = write_policy_file(tmp_path, "p.toml", HEAD + "x = " + "[" * depth + "]" * depth + "\n")
    assert read_policy_toml(path)["x"] is not None
    with pytest.raises(PolicyError, match="unknown key 'x'"):
        load_policy_file(path)  # refused for what it says, not for its shape
    deeper = write_policy_file(
        tmp_path, "q.toml", HEAD + "x = " + "[" * (depth + 1) + "]" * (depth + 1)
    )
    with pytest.raises(PolicyError, match=TOO_DEEP):
        read_policy_toml(deeper)


def test_the_packaged_and_example_policies_are_well_within_the_limit() -> None:
    assert load_policy_book(REPO_POLICIES).regions  # loads as before


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = write_policy_file(tmp_path, "big.toml", HEAD + "# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(PolicyError, match=f"larger than {MAX_FILE_BYTES} bytes"):
        load_policy_file(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (HEAD.encode() + b"# \xff\xfe\n", "not UTF-8 text"),
        (b"\xef\xbb\xbf" + HEAD.encode(), "not valid TOML"),  # a byte-order mark
        (HEAD.encode() + b"x = \x00\n", "not valid TOML"),
        (b"", "missing key 'version'"),
        (HEAD.encode() + b"x = [1,\n", "not valid TOML"),
    ],
)
def test_malformed_bytes_are_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = write_policy_file(tmp_path, "p.toml", content)
    with pytest.raises(PolicyError, match=expected) as exc:
        load_policy_file(path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["arrays", "inline-tables", "dotted-key", "inside-a-known-table"])
def test_policy_check_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = write_policy_file(tmp_path, "national.toml", HOSTILE[name])
    assert main(["policy", "check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [f"ptsp-gate policy: {path}: {_too_deep_text()}"]


def test_policy_check_of_a_deep_region_file_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_policy_file(
        tmp_path, "7314.toml", HOSTILE["inline-tables"].replace(HEAD, REGION_HEAD)
    )
    assert main(["policy", "check", str(path)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ptsp-gate policy: {path}: {_too_deep_text()}"
    ]


def test_a_deep_installed_policy_directory_stops_run_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_policy_file(tmp_path, "national.toml", HOSTILE["arrays"])
    monkeypatch.setenv("PTSP_GATE_POLICY_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["run", "permit-checker"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert TOO_DEEP in err[0]


def test_simulate_refuses_a_deep_candidate_before_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    path = write_policy_file(tmp_path, "7314.toml", HOSTILE["arrays"].replace(HEAD, REGION_HEAD))
    assert main(["policy", "simulate", "--policy", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ptsp-gate policy: {path}: {_too_deep_text()}"]


def _too_deep_text() -> str:
    return f"tables and arrays nested deeper than {MAX_NESTING} levels; a policy needs at most 3"
