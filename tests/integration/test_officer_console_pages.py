"""The officer console's pages over a real PostgreSQL, through HTTP: signing in (CSRF, lockout,
throttling), the security headers, region scope, search, export and the audit of each step.
The same pages in a real browser: test_officer_console_browser.py."""

from __future__ import annotations

import csv
import io
import re

import asyncpg
import pytest

from ptsp_gate.accounts.roles import Role
from tests.integration.console_support import PASSWORD, add_account, client, running_console
from tests.integration.test_officer_queries import _history, _nib

pytestmark = pytest.mark.integration


@pytest.fixture
async def console(db: asyncpg.Connection, db_dsn: str):
    await _history(db, 60)
    await add_account(db, "ana", Role.OFFICER, ["7314"])
    await add_account(db, "citra", Role.AUDITOR, ["7314"])
    async with running_console(db_dsn) as running:
        yield running


def _form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def sign_in(http, username: str = "ana", password: str = PASSWORD, **extra):
    form = await http.get("/login")
    return await http.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": _form_token(form.text),
            **extra,
        },
    )


async def test_pages_need_a_session_and_send_the_browser_to_sign_in(console) -> None:
    async with client(console) as http:
        answer = await http.get("/flagged?region=7314")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fflagged%3Fregion%3D7314"
        signed = await sign_in(http, next="/flagged?region=7314")
        assert signed.status_code == 303
        assert signed.headers["location"] == "/flagged?region=7314"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        page = await http.get("/flagged")
        assert page.status_code == 200
        assert _nib(0) in page.text
        assert _nib(1) not in page.text


async def test_every_answer_carries_a_strict_content_security_policy(console) -> None:
    async with client(console) as http:
        for path in ("/login", "/api/v1/flagged", "/nowhere", "/static/console.css"):
            headers = (await http.get(path)).headers
            assert "default-src 'none'" in headers["content-security-policy"]
            assert "script-src" not in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
        assert (await http.get("/login")).headers["cache-control"] == "no-store"


async def test_a_sign_in_without_the_form_s_token_is_refused(console) -> None:
    async with client(console) as http:
        await http.get("/login")
        forged = await http.post(
            "/login", data={"username": "ana", "password": PASSWORD, "csrf_token": "forged"}
        )
        assert forged.status_code == 403
        assert (
            "set-cookie" not in forged.headers or "ptsp_session" not in forged.headers["set-cookie"]
        )


async def test_five_wrong_passwords_lock_the_account_and_each_is_audited(console, db) -> None:
    async with client(console) as http:
        for _ in range(5):
            refused = await sign_in(http, password="wrong password 123")
            assert refused.status_code == 401
        locked = await sign_in(http)  # the right password, but locked now
        assert locked.status_code == 401
        assert "locked" in locked.text.lower() or "dikunci" in locked.text
    reasons = [
        r["detail"]["why"]
        for r in await db.fetch(
            "SELECT detail FROM audit_event WHERE action = 'LOGIN_FAILED' ORDER BY event_id"
        )
    ]
    assert reasons == ["wrong password"] * 5 + ["account locked"]
    metrics = (await client(console).get("/metrics")).text
    assert 'ptsp_gate_console_failed_logins_total{reason="wrong_password"} 5.0' in metrics
    assert 'ptsp_gate_console_failed_logins_total{reason="locked"} 1.0' in metrics


async def test_many_failures_from_one_address_are_throttled(console) -> None:
    async with client(console) as http:
        for n in range(console.throttle.limit):
            await sign_in(http, username=f"nobody{n}")
        throttled = await sign_in(http)
        assert throttled.status_code == 429


async def test_sign_out_needs_the_session_s_csrf_token_and_ends_it(console, db) -> None:
    async with client(console) as http:
        await sign_in(http)
        page = await http.get("/")
        assert page.status_code == 200
        forged = await http.post("/logout", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert (await http.get("/")).status_code == 200
        ended = await http.post("/logout", data={"csrf_token": _form_token(page.text)})
        assert ended.status_code == 303
        http.cookies.clear()
        assert (await http.get("/")).status_code == 303
    assert await db.fetchval("SELECT count(*) FROM console_session") == 0


async def test_another_region_s_list_is_forbidden_and_its_employer_not_found(console) -> None:
    async with client(console) as http:
        await sign_in(http)
        assert (await http.get("/flagged?region=3319")).status_code == 403
        assert (await http.get(f"/employers/{_nib(1)}")).status_code == 404
        assert (await http.get(f"/employers/{_nib(0)}")).status_code == 200
        assert (await http.get("/employers/not-a-nib")).status_code == 404


async def test_search_finds_by_name_within_the_region_only(console, db) -> None:
    async with client(console) as http:
        await sign_in(http)
        page = await http.get("/flagged", params={"q": "maju 100%_1"})
        found = set(re.findall(r'href="/employers/(\d{13})"', page.text.split("<table")[1]))
        assert found
        assert all(int(n[-5:]) % 2 == 0 for n in found)
    detail = await db.fetchval("SELECT detail FROM audit_event WHERE action = 'EMPLOYER_SEARCHED'")
    assert detail["by"] == "name"


async def test_the_export_downloads_the_region_s_whole_list(console, db) -> None:
    async with client(console) as http:
        await sign_in(http)
        answer = await http.get("/flagged/export", params={"format": "csv", "lang": "en"})
        assert answer.status_code == 200
        assert "attachment" in answer.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(answer.text)))
        assert rows[0][0] == "NIB"
        assert len(rows) == 21
        xlsx = await http.get("/flagged/export", params={"format": "xlsx"})
        assert xlsx.content[:2] == b"PK"
        assert (await http.get("/flagged/export", params={"format": "pdf"})).status_code == 400
    exports = await db.fetch("SELECT detail FROM audit_event WHERE action = 'EXPORTED'")
    assert [e["detail"]["rows"] for e in exports] == [20, 20]


async def test_the_audit_page_is_for_auditors(console) -> None:
    async with client(console) as http:
        await sign_in(http)
        assert (await http.get("/audit")).status_code == 403
    async with client(console) as http:
        await sign_in(http, username="citra")
        page = await http.get("/audit")
        assert page.status_code == 200
        assert "LOGIN" in page.text


async def test_labels_are_indonesian_by_default_and_english_on_request(console) -> None:
    async with client(console) as http:
        assert "Kata sandi" in (await http.get("/login")).text
        english = await http.get("/login?lang=en")
        assert "Password" in english.text
        assert "Password" in (await http.get("/login")).text  # remembered


async def test_a_session_ends_when_idle_and_is_written_at_most_once_a_minute(console, db) -> None:
    async with client(console) as http:
        await sign_in(http)
        seen = await db.fetchval("SELECT last_seen_at FROM console_session")
        assert (await http.get("/flagged")).status_code == 200
        # Read again within the minute: the row is not written.
        assert await db.fetchval("SELECT last_seen_at FROM console_session") == seen
        await db.execute("UPDATE console_session SET last_seen_at = now() - interval '5 minutes'")
        assert (await http.get("/flagged")).status_code == 200
        touched = await db.fetchval("SELECT now() - last_seen_at FROM console_session")
        assert touched.total_seconds() < 5
        # Longer than the idle limit (30 minutes) without a request: signed out.
        await db.execute("UPDATE console_session SET last_seen_at = now() - interval '31 minutes'")
        assert (await http.get("/flagged")).status_code == 303


async def test_a_token_records_its_last_use_at_most_once_a_minute(console, db) -> None:
    token = await add_account(db, "tok", Role.OFFICER, ["7314"])
    await db.execute(
        "DELETE FROM api_token WHERE officer_id <> (SELECT officer_id FROM officer"
        " WHERE username = 'tok')"
    )
    async with client(console, token) as http:
        assert (await http.get("/api/v1/flagged")).status_code == 200
        first = await db.fetchval("SELECT last_used_at FROM api_token")
        assert first is not None
        assert (await http.get("/api/v1/flagged")).status_code == 200
        assert await db.fetchval("SELECT last_used_at FROM api_token") == first
        await db.execute("UPDATE api_token SET last_used_at = now() - interval '2 minutes'")
        assert (await http.get("/api/v1/flagged")).status_code == 200
        assert await db.fetchval(
            "SELECT last_used_at > now() - interval '5 seconds' FROM api_token"
        )
