"""What the officer console's tests share: a console over a test database, accounts, clients."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ptsp_gate.accounts import credentials
from ptsp_gate.accounts.roles import Role
from ptsp_gate.config import Settings
from ptsp_gate.embedded.harness import free_port
from ptsp_gate.policy import load_policy_book
from ptsp_gate.stores import accounts

PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def running_console(
    dsn: str, sso_transport: httpx.AsyncBaseTransport | None = None, **overrides: Any
) -> AsyncIterator[Any]:
    from ptsp_gate_officer_console.app import ConsoleService

    settings = Settings(database_url=dsn, console_secure_cookies=False, **overrides)
    console = ConsoleService(settings, load_policy_book(None), sso_transport=sso_transport)
    await console.open()
    try:
        yield console
    finally:
        await console.release()


def client(console: Any, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=console.asgi_app(), client=("10.1.2.3", 40000)),
        base_url="http://console.test",
        headers=headers,
        follow_redirects=False,
    )


async def add_account(db: asyncpg.Connection, username: str, role: Role, regions: list[str]) -> str:
    """An account with PASSWORD, and an API token for it."""
    await accounts.add(db, username, role, regions, credentials.hash_password(PASSWORD))
    token, _ = await accounts.issue_token(db, username, timedelta(days=1))
    return token


@pytest.fixture
def console_url(db_dsn: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`ptsp-gate run officer-console` as operators run it, on a free TCP port; its temporary
    files in a directory of the test's (to see that downloads leave nothing behind). Yields the
    base URL and that directory."""
    port = free_port()
    scratch = tmp_path / "console-tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": db_dsn,
        "PTSP_GATE_CONSOLE_SECURE_COOKIES": "false",
        "PTSP_GATE_LOG_FORMAT": "console",
        "TMPDIR": str(scratch),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    log_path = tmp_path / "console.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ptsp_gate.cli.main",
                "run",
                "officer-console",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the console did not start:\n" + log_path.read_text())
                time.sleep(0.1)
            yield url, scratch
        finally:
            process.terminate()
            process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
