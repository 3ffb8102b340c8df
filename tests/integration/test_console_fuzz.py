"""Property-based fuzzing of /api/v1 from its own OpenAPI document, with schemathesis, against
`ptsp-gate run officer-console` on a TCP port over a populated database: for inputs valid and
invalid, no answer is a server error, and every answer matches the document (status codes,
content types, bodies). Run as operators would run schemathesis, through its command line, with
a fixed seed so that a failure can be reproduced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from ptsp_gate.accounts.roles import Role
from tests.integration.console_support import add_account
from tests.integration.test_officer_queries import _history

# Once, in the first pass: what it exercises is HTTP and the API's validation, not the server
# version of PostgreSQL the second pass adds.
pytestmark = pytest.mark.fuzz

SEED = 20261130
CONFIG = Path(__file__).with_name("schemathesis.toml")


async def _fuzz(
    url: str, token: str, report: Path, *, examples: int
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            str(examples),
            "--seed",
            str(SEED),
            "--generation-deterministic",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        # It keeps a cache of what it found in its working directory: the test's, not the clone.
        cwd=report.parent,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )


# An officer meets the refusals (another region, a right the role lacks); an admin every path,
# approving and revoking included. A supervisor adds no path of its own.
@pytest.mark.parametrize("role", [Role.OFFICER, Role.ADMIN])
async def test_the_api_answers_every_generated_request_as_documented(
    db: asyncpg.Connection, console_url: tuple[str, Path], tmp_path: Path, role: Role
) -> None:
    url, _ = console_url
    await _history(db, 30)
    token = await add_account(db, "fuzz", role, [] if role is Role.ADMIN else ["7314"])
    ran = await _fuzz(url, token, tmp_path / "junit.xml", examples=30)
    (tmp_path / "schemathesis.out").write_text(ran.stdout + ran.stderr)
    assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-2000:]
    assert "No issues found" in ran.stdout or "passed" in ran.stdout, ran.stdout[-3000:]
