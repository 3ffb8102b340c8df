#!/usr/bin/env python
"""Server time of the officer console's pages and API on the national-scale history that
`officer_queries.py --keep` builds: each page asked as a signed-in officer (one regency), an
admin (the whole country) and an auditor would ask it, through the console's ASGI application
in this process (routing, session check and its write, the queries, the audit record, the
template; no network). The baseline, measured in the same run, is the store query each page is
built on, asked directly: the ratio is what the console adds to it.

Run by hand (not a test):

    DATABASE_URL=... .venv/bin/python bench/officer_queries.py --keep     # prints a DSN
    .venv/bin/python bench/console_pages.py --dsn DSN [--samples 50] [--audit-events 1000000]

The goal is every page and API answer at most 200 ms at the median and at p95. Results are
printed as JSON and written to bench/results/console-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from officer.history import END, REGIONS

from ptsp_gate.accounts import credentials
from ptsp_gate.accounts.roles import Role
from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings
from ptsp_gate.policy import load_policy_book
from ptsp_gate.stores import accounts, coverage, officer_queries

RESULTS = Path(__file__).resolve().parent / "results"
PASSWORD = "bench password for the console"
GOAL_MS = 200.0
REGION = "7314"


def say(text: str) -> None:
    print(f"[console {datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


async def _times(n: int, ask: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    await ask(0)  # warm: templates compiled, statements prepared
    spent = []
    for i in range(n):
        began = time.perf_counter()
        await ask(i)
        spent.append((time.perf_counter() - began) * 1000)
    spent.sort()
    return {
        "n": n,
        "p50_ms": round(statistics.median(spent), 2),
        "p95_ms": round(spent[min(n - 1, int(n * 0.95))], 2),
        "max_ms": round(spent[-1], 2),
    }


async def _accounts(conn: asyncpg.Connection) -> None:
    hashed = credentials.hash_password(PASSWORD)
    for username, role, regions in (
        ("bench-officer", Role.OFFICER, [REGION]),
        ("bench-admin", Role.ADMIN, []),
        ("bench-auditor", Role.AUDITOR, [REGION]),
    ):
        if await accounts.by_username(conn, username) is None:
            await accounts.add(conn, username, role, regions, hashed)


async def _audit_record(conn: asyncpg.Connection, events: int) -> int:
    """Fill the audit record to `events` rows, as a year of officers' use would: logins,
    lists, employers viewed, across the regions (the auditor reads one)."""
    have = int(await conn.fetchval("SELECT count(*) FROM audit_event"))
    if have >= events:
        return have
    await conn.execute(
        """
        INSERT INTO audit_event (at, actor, action, subject, regions, channel, detail)
        SELECT $3::timestamptz - (g * interval '30 seconds'),
               'officer-' || (g % 500),
               (ARRAY['LOGIN', 'FLAGGED_LISTED', 'EMPLOYER_VIEWED', 'EXPORTED'])[1 + g % 4],
               lpad((g % 300000)::text, 13, '9'),
               ARRAY[($2::text[])[1 + g % array_length($2::text[], 1)]],
               'console', '{}'::jsonb
        FROM generate_series(1, $1) AS g
        """,
        events - have,
        list(REGIONS),
        END,
    )
    await conn.execute("ANALYZE audit_event")
    return events


async def _signed_in(app: Any, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.9.9.9", 40000)),
        base_url="http://console.bench",
    )
    form = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = await client.post(
        "/login",
        data={
            "csrf_token": token.group(1),
            "next": "/",
            "username": username,
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 303, answer.text
    return client


async def _token(conn: asyncpg.Connection) -> str:
    token, _ = await accounts.issue_token(conn, "bench-officer", timedelta(days=1))
    return token


async def measure(dsn: str, samples: int, audit_events: int) -> dict[str, Any]:
    from ptsp_gate_officer_console.app import ConsoleService

    conn = await connect(dsn)
    await migrations.migrate(conn)  # a history kept by an earlier release
    await _accounts(conn)
    result: dict[str, Any] = {"audit_events": await _audit_record(conn, audit_events)}
    rnd = random.Random(11)
    ours = [
        r["nib"]
        for r in await conn.fetch(
            "SELECT nib FROM employer_compliance WHERE region_code = $1 ORDER BY nib LIMIT 2000",
            REGION,
        )
    ]
    nibs = [rnd.choice(ours) for _ in range(samples + 1)]
    names = [f"Maju Jaya {rnd.randrange(300_000)}" for _ in range(samples + 1)]
    settings = Settings(database_url=dsn, console_secure_cookies=False)
    console = ConsoleService(settings, load_policy_book(None))
    await console.open()
    try:
        app = console.asgi_app()
        officer = await _signed_in(app, "bench-officer")
        admin = await _signed_in(app, "bench-admin")
        auditor = await _signed_in(app, "bench-auditor")
        api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://console.bench",
            headers={"Authorization": f"Bearer {await _token(conn)}"},
        )
        second = (await api.get("/api/v1/flagged", params={"limit": 50})).json()["next"]

        def get(client: httpx.AsyncClient, path: str) -> Callable[[int], Awaitable[None]]:
            async def ask(i: int) -> None:
                answer = await client.get(path.format(nib=nibs[i], name=names[i]))
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])

            return ask

        pages = {
            "dashboard, one regency (officer)": get(officer, "/"),
            "dashboard, the country (admin)": get(admin, "/"),
            "flagged list, first page (officer)": get(officer, "/flagged"),
            "flagged list, next page (officer)": get(officer, f"/flagged?after={second}"),
            "flagged list, first page, the country (admin)": get(admin, "/flagged"),
            "flagged list, one reason (officer)": get(officer, "/flagged?reason=ARREARS"),
            "search by name (officer)": get(officer, "/flagged?q={name}"),
            "search by NIB (officer)": get(officer, "/flagged?q={nib}"),
            "employer page (officer)": get(officer, "/employers/{nib}"),
            "overrides list (officer)": get(officer, "/overrides"),
            "audit log, first page (auditor)": get(auditor, "/audit"),
            "audit log, one actor (auditor)": get(auditor, "/audit?actor=officer-7"),
            "API flagged, 100 rows": get(api, "/api/v1/flagged"),
            "API employer": get(api, "/api/v1/employers/{nib}"),
            "API coverage, a year of one regency": get(api, "/api/v1/coverage"),
        }
        timed: dict[str, Any] = {}
        for name, ask in pages.items():
            say(name)
            timed[name] = await _times(samples, ask)
        result["pages"] = timed

        since = END - timedelta(days=365)
        baseline = {
            "flagged_page (50 rows, one regency)": lambda i: officer_queries.flagged_page(
                conn, regions=[REGION], limit=50
            ),
            "employer (one NIB)": lambda i: officer_queries.employer(conn, nibs[i]),
            "by_name (one regency)": lambda i: officer_queries.by_name(
                conn, names[i], regions=[REGION]
            ),
            "coverage.report (a year, one regency)": lambda i: coverage.report(
                conn,
                coverage.Question(
                    since=since,
                    until=END,
                    by="month",
                    timezone="Asia/Jakarta",
                    region=REGION,
                    window_days=90,
                    now=END,
                ),
            ),
        }
        result["baseline"] = {}
        for name, ask in baseline.items():
            say(f"baseline: {name}")
            result["baseline"][name] = await _times(samples, ask)
        pairs = {
            "flagged list, first page (officer)": "flagged_page (50 rows, one regency)",
            "employer page (officer)": "employer (one NIB)",
            "search by name (officer)": "by_name (one regency)",
            "dashboard, one regency (officer)": "coverage.report (a year, one regency)",
        }
        result["ratio_page_to_query_p50"] = {
            page: round(timed[page]["p50_ms"] / result["baseline"][query]["p50_ms"], 2)
            for page, query in pairs.items()
        }
        result["goal"] = {
            name: "met" if t["p50_ms"] <= GOAL_MS and t["p95_ms"] <= GOAL_MS else "MISSED"
            for name, t in timed.items()
        }
        for client in (officer, admin, auditor, api):
            await client.aclose()
    finally:
        await console.release()
        await conn.close()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="a database `officer_queries.py --keep` built")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument(
        "--audit-events",
        type=int,
        default=1_000_000,
        help="fill the audit record to this many rows first (default: a year of 500 officers)",
    )
    args = p.parse_args()
    result = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **asyncio.run(measure(args.dsn, args.samples, args.audit_events)),
    }
    text = json.dumps(result, indent=2)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"console-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(text + "\n")
    return 0 if all(v == "met" for v in result["goal"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
