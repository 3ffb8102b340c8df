"""What the tests of the `ptsp-gate` command line share."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ptsp_gate.cli.main import main


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    """The stderr lines of `ptsp-gate ARGV` run in this process, which must stop as a usage error:
    exit 2, and at most argparse's usage line before a line of ours."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2  # argparse's usage line, at most, plus ours
    assert err[-1].startswith("ptsp-gate")
    return err


def console(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`ptsp-gate ARGV` in a process of its own, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ptsp_gate.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write(root: Path, relative: str, text: str) -> Path:
    """A (policy) file at `root / relative`, its directories created."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def transitions(report: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """A simulation report's applications by (current, candidate) outcome."""
    return {(t["current"], t["candidate"]): t["applications"] for t in report["transitions"]}


def counts(report: Mapping[str, Any]) -> str:
    """What a simulation report counts, in a line short enough to write out in a test: the
    transitions (sorted), the changed applications, the drifted ones and their transitions."""
    changed, drift = report["changed"], report["drift"]
    assert set(changed) == {"applications", "outcome", "reasons_only"}
    assert set(drift) == {"applications", "no_stored_decision", "transitions"}
    assert all(set(t) == {"stored", "current", "applications"} for t in drift["transitions"])
    moves = ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(transitions(report).items()))
    drifted = ", ".join(
        f"{t['stored']}->{t['current']} {t['applications']}" for t in drift["transitions"]
    )
    return (
        f"{moves}; changed {changed['applications']}: outcome {changed['outcome']}, reasons only "
        f"{changed['reasons_only']}; drift {drift['applications']}, no stored decision "
        f"{drift['no_stored_decision']}: {drifted}"
    )
