"""A production install has no dev extra (confluent-kafka, pgserver): every production command
works without it, and what needs it says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The console script, in an interpreter where the dev extra's packages cannot be imported, nor
# found by importlib.util.find_spec; it says on stderr if the embedded engines were loaded anyway.
RUN_WITHOUT_DEV_EXTRA = """
import sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("confluent_kafka", "pgserver"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from ptsp_gate.cli.main import main

try:
    code = main(sys.argv[1:])
finally:
    if "ptsp_gate.embedded" in sys.modules:
        print("ptsp_gate.embedded was imported", file=sys.stderr)
sys.exit(code)
"""

DEV_EXTRA = "pip install 'ptsp-gate[dev]'"


def without_dev_extra(tmp_path: Path, *argv: str, **env: str) -> tuple[int, str, list[str]]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PTSP_GATE_")
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "DATABASE_URL_FILE")
    }
    result = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_DEV_EXTRA, *argv],
        env={**clean, "PTSP_GATE_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr.strip().splitlines()


def test_help_and_production_commands_run(tmp_path: Path) -> None:
    code, out, err = without_dev_extra(tmp_path, "--help")
    assert (code, err) == (0, [])
    assert out.startswith("usage: ptsp-gate")
    code, out, err = without_dev_extra(tmp_path, "policy", "show")
    assert (code, err) == (0, [])
    assert out.startswith("National policy: packaged default")
    code, _, err = without_dev_extra(tmp_path, "run", "permit-checker")
    assert (code, err) == (
        1,
        [
            "ptsp-gate run: KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL must be set "
            "(or use `ptsp-gate dev`)"
        ],
    )
    code, _, err = without_dev_extra(
        tmp_path, "flagged", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"
    )
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("ptsp-gate flagged: cannot connect to PostgreSQL")


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (
            ["flagged"],
            {},
            "ptsp-gate flagged: the embedded PostgreSQL needs "
            f"{DEV_EXTRA} (pgserver is not installed); or set DATABASE_URL",
        ),
        (
            ["migrate"],
            {},
            "ptsp-gate migrate: the embedded PostgreSQL needs "
            f"{DEV_EXTRA} (pgserver is not installed); or set DATABASE_URL",
        ),
        (
            ["broker"],
            {},
            f"ptsp-gate broker: the embedded Kafka needs {DEV_EXTRA} "
            "(confluent_kafka is not installed)",
        ),
        (
            ["broker", "--engine", "kafka"],
            {},
            f"ptsp-gate broker: the embedded Kafka needs {DEV_EXTRA} "
            "(confluent_kafka is not installed)",
        ),
        (
            ["dev"],
            {},
            f"ptsp-gate dev: the embedded Kafka needs {DEV_EXTRA} "
            "(confluent_kafka is not installed); or set KAFKA_BOOTSTRAP_SERVERS",
        ),
        (
            ["dev"],
            {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            f"ptsp-gate dev: the embedded PostgreSQL needs {DEV_EXTRA} "
            "(pgserver is not installed); or set DATABASE_URL",
        ),
    ],
)
def test_what_needs_the_dev_extra_says_so_in_one_line(
    tmp_path: Path, argv: list[str], env: dict[str, str], line: str
) -> None:
    code, out, err = without_dev_extra(tmp_path, *argv, **env)
    assert (code, out, err) == (1, "", [line])
    assert not (tmp_path / "data").exists()  # said before anything was started or written
