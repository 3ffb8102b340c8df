"""The officer console in a real browser: Debian's Chromium driven by Playwright, against
`ptsp-gate run officer-console` on a TCP port, with the permit checker and enrolment-sync on
Apache Kafka behind it.

The officer of one regency signs in, sees only that regency's flagged employers, filters them,
finds one by name, downloads the list, asks for an override; a supervisor approves it; the
superseding decision appears on the decisions topic and on the employer's page; every step is in
the audit log. Then a refused region, and the keyboard alone.

With PTSP_GATE_CONSOLE_SCREENSHOTS=DIR, each main page is saved there (docs/console/ holds the
ones the README shows).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ptsp_gate import demo
from ptsp_gate.accounts.roles import Role
from tests.integration.conftest import eventually
from tests.integration.console_support import PASSWORD, add_account
from tests.integration.support import decisions, read_topic, send, services

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("PTSP_GATE_CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI: scripts/setup installs Debian's chromium")
        pytest.skip("no Chromium (Debian package chromium); scripts/setup installs it")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            await launched.close()


async def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


async def _sign_in(browser: Any, url: str, username: str) -> Any:
    context = await browser.new_context(
        base_url=url, accept_downloads=True, viewport={"width": 1280, "height": 860}
    )
    page = await context.new_page()
    await page.goto("/")
    assert page.url.startswith(url + "/login")
    await page.get_by_label("Nama pengguna").fill(username)
    await page.get_by_label("Kata sandi").fill(PASSWORD)
    await page.get_by_role("button", name="Masuk").click()
    await page.wait_for_url(url + "/")
    return page


async def _audit_actions(db: Any, actor: str) -> list[str]:
    rows = await db.fetch(
        "SELECT action FROM audit_event WHERE actor = $1 ORDER BY event_id", actor
    )
    return [r["action"] for r in rows]


async def test_an_officer_finds_exports_and_gets_an_override_approved(
    settings, producer, db, console_url, browser
) -> None:
    url, scratch = console_url
    settings = settings.model_copy(update={"override_poll_s": 0.5})
    await add_account(db, "ana", Role.OFFICER, ["7314"])
    await add_account(db, "budi", Role.SUPERVISOR, ["7314"])
    await add_account(db, "citra", Role.AUDITOR, ["7314"])
    now = datetime.now(UTC)
    # Three employers in 7314 in arrears, one inactive; one in 3319 the officer must not see.
    ours = [1, 2, 3]
    async with services(settings):
        await send(
            producer,
            settings.topic_enrolment,
            [demo.enrolment_record(demo.enrolment(n, arrears=4, now=now)) for n in (*ours, 9)]
            + [demo.enrolment_record(demo.enrolment(4, status="INACTIVE", now=now))],
        )
        await eventually(lambda: db.fetchval("SELECT count(*) = 5 FROM employer_enrolment"))
        apps = [demo.application(n, now=now) for n in (*ours, 4)]
        apps.append(demo.application(9, region="3319", now=now))
        await send(
            producer, settings.topic_applications, [demo.application_record(a) for a in apps]
        )
        await eventually(lambda: db.fetchval("SELECT count(*) = 5 FROM compliance_decision"))

        page = await _sign_in(browser, url, "ana")
        await _shot(page, "dashboard")
        assert await page.locator("#flagged-now").inner_text() == "4"

        # The flagged list: this regency's four, not 3319's.
        await page.get_by_role("link", name="Pelaku usaha ditandai").click()
        rows = page.locator("table.flagged tbody tr")
        assert await rows.count() == 4
        assert demo.nib(9) not in await page.locator("table.flagged").inner_text()
        await _shot(page, "flagged")

        # Filtered by reason.
        await page.get_by_label("Alasan").select_option("EMPLOYER_INACTIVE")
        await page.get_by_role("button", name="Saring").click()
        await page.wait_for_url("**reason=EMPLOYER_INACTIVE**")
        assert await rows.count() == 1
        assert demo.nib(4) in await rows.first.inner_text()

        # Found by name.
        await page.get_by_label("Alasan").select_option("")
        await page.get_by_label("Cari").fill("contoh usaha 2")
        await page.get_by_role("button", name="Saring").click()
        await page.wait_for_url("**q=contoh**")
        results = page.locator("table.results tbody tr")
        assert await results.count() == 1
        assert demo.nib(2) in await results.inner_text()

        # The list downloaded as CSV, in the officer's language, and nothing left on the server.
        async with page.expect_download() as waiting:
            await page.get_by_role("link", name="Unduh CSV").click()
        download = await waiting.value
        assert download.suggested_filename == "ditandai-7314.csv"
        body = Path(await download.path()).read_text(encoding="utf-8-sig")
        lines = list(csv.reader(io.StringIO(body)))
        assert lines[0][0] == "NIB"
        assert sorted(line[0] for line in lines[1:]) == sorted(demo.nib(n) for n in (*ours, 4))
        await eventually(lambda: _empty(scratch))

        # The employer's page, and the override asked from it.
        await results.get_by_role("link").click()
        await page.wait_for_url(f"**/employers/{demo.nib(2)}")
        assert "Diblokir" in await page.locator("ol.timeline").inner_text()
        await _shot(page, "employer")
        await page.get_by_label("Dasar hukum").fill("Perbup Maros 12/2026 pasal 4")
        await page.get_by_label("Nomor dokumen").fill("SK-PTSP/001/2026")
        await page.get_by_label("Alasan pengecualian").fill(
            "Terdaftar di kantor cabang Makassar; bukti kepesertaan terlampir."
        )
        await page.get_by_role("button", name="Ajukan pengecualian").click()
        await page.wait_for_url("**/overrides/*")
        override_url = page.url
        assert "Diajukan" in await page.locator("h1").inner_text()

        # Another regency's list is refused.
        answer = await page.goto("/flagged?region=3319")
        assert answer is not None
        assert answer.status == 403
        assert "Tidak diizinkan" in await page.locator("h1").inner_text()
        await page.context.close()

        # The supervisor approves it.
        boss = await _sign_in(browser, url, "budi")
        await boss.get_by_role("link", name="Pengecualian").click()
        await _shot(boss, "overrides")
        await boss.locator("table tbody tr a").first.click()
        assert boss.url == override_url
        await boss.get_by_label("Catatan").fill("Bukti diperiksa.")
        await boss.get_by_role("button", name="Setujui").click()
        await boss.wait_for_url(override_url)
        assert "Disetujui" in await boss.locator("h1").inner_text()

        # The permit checker issues the superseding decision: on the topic, then on the page.
        async def decided() -> bool:
            await boss.reload()
            return "Lolos" in await boss.locator("section[aria-labelledby=under]").inner_text()

        await eventually(decided, timeout=30)
        await _shot(boss, "override")
        published = decisions(
            await read_topic(settings.kafka_bootstrap_servers, settings.topic_decisions, 6)
        )
        superseding = [d for d in published if d["supersedes"]]
        assert len(superseding) == 1
        assert superseding[0]["outcome"] == "CLEARED"
        assert superseding[0]["nib"] == demo.nib(2)
        reason = superseding[0]["reasons"][0]
        assert reason["code"] == "OFFICER_OVERRIDE"
        assert reason["details"]["approved_by"] == ["budi"]
        assert reason["details"]["asked_by"] == "ana"
        await boss.goto(f"/employers/{demo.nib(2)}")
        assert "OFFICER_OVERRIDE" in await boss.locator("ol.timeline").inner_text()
        await boss.context.close()

    # Every step is in the audit log, and the auditor reads it in the browser.
    assert await _audit_actions(db, "ana") == [
        "LOGIN",
        "COVERAGE_VIEWED",
        "FLAGGED_LISTED",
        "FLAGGED_LISTED",
        "EMPLOYER_SEARCHED",
        "FLAGGED_LISTED",
        "EXPORTED",
        "EMPLOYER_VIEWED",
        "OVERRIDE_ASKED",
        "ACCESS_DENIED",
    ]
    assert "OVERRIDE_GRANTED" in await _audit_actions(db, "budi")
    auditor = await _sign_in(browser, url, "citra")
    await auditor.get_by_role("link", name="Catatan audit").click()
    log = await auditor.locator("table.audit").inner_text()
    for action in ("OVERRIDE_GRANTED", "OVERRIDE_ASKED", "EXPORTED", "EMPLOYER_SEARCHED"):
        assert action in log
    await _shot(auditor, "audit")
    await auditor.context.close()


def _empty(directory: Path) -> Any:
    async def check() -> bool:
        return not any(directory.iterdir())

    return check()


async def test_the_console_works_from_the_keyboard_alone(db, console_url, browser) -> None:
    url, _ = console_url
    await add_account(db, "ana", Role.OFFICER, ["7314"])
    context = await browser.new_context(base_url=url)
    page = await context.new_page()
    await page.goto("/login?lang=en")
    # The sign-in form has the focus from the start.
    assert await page.evaluate("document.activeElement.id") == "username"
    await page.keyboard.type("ana")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "password"
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(url + "/")
    # The first Tab reaches the skip link, then the navigation, followed with Enter.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Dashboard"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Flagged employers"
    await page.keyboard.press("Enter")
    await page.wait_for_url(url + "/flagged")
    # The skip link jumps over the header to the page's own controls, which show their focus.
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "region"
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    # A search typed and sent from the keyboard.
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "q"
    await page.keyboard.type("contoh")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**q=contoh**")
    await context.close()


async def test_a_signed_out_browser_gets_the_sign_in_page_and_nothing_else(
    db, console_url, browser
) -> None:
    url, _ = console_url
    context = await browser.new_context(base_url=url)
    page = await context.new_page()
    for path in ("/flagged", f"/employers/{demo.nib(1)}", "/overrides", "/audit"):
        await page.goto(path)
        assert page.url.startswith(url + "/login?next=")
    # Nothing the page loads comes from elsewhere, and no script runs.
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    await page.goto("/login")
    assert all(r.startswith(url) for r in requested)
    assert await page.evaluate("document.scripts.length") == 0
    await asyncio.sleep(0)
    await context.close()
