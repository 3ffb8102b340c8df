"""Numeric arguments (`--port` and the like): anything but a plain number in range is a usage
error in one line, never a traceback."""

from __future__ import annotations

import pytest

from ptsp_gate.cli.main import build_parser

from ..cli_helpers import console, usage_error

BAD_NUMBERS = [
    "abc",
    "99999",
    "65536",
    "-1",
    "0",
    "",
    " 80",
    "80 ",
    "8_0",
    "1e3",
    "0x50",
    "80.0",
    "٨٠",  # Arabic-Indic digits: int() would take them
    "9" * 30,
    "9" * 5000,  # beyond int()'s digit limit
]


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize(
    "argv",
    [
        ["run", "permit-checker", "--port"],
        ["run", "enrolment-sync", "--port"],
        ["dev", "--permit-checker-port"],
        ["dev", "--enrolment-sync-port"],
        ["run", "permit-checker", "--workers"],
        ["broker", "--brokers"],
    ],
)
def test_bad_number_is_a_usage_error_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], value: str
) -> None:
    err = usage_error(capsys, [*argv, value])
    assert len(err) == 1
    assert err[0].startswith("ptsp-gate ")
    assert len(err[0]) < 300  # an oversized value is not echoed in full


@pytest.mark.parametrize("value", ["1", "9101", "65535", "080"])
def test_good_ports_parse(value: str) -> None:
    args = build_parser().parse_args(["run", "permit-checker", "--port", value])
    assert args.port == int(value)


@pytest.mark.parametrize("value", ["abc", "99999", "-1"])
def test_the_console_script_prints_no_traceback(value: str) -> None:
    result = console("run", "permit-checker", "--port", value)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--port" in result.stderr
