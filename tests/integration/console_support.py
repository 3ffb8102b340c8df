"""What the officer console's tests share: a console over a test database, accounts, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from ptsp_gate.accounts import credentials
from ptsp_gate.accounts.roles import Role
from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.stores import accounts

PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def running_console(dsn: str, **overrides: Any) -> AsyncIterator[Any]:
    from ptsp_gate_officer_console.app import ConsoleService

    settings = Settings(database_url=dsn, console_secure_cookies=False, **overrides)
    console = ConsoleService(settings, load_policy_book(None))
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
