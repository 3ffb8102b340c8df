"""The officer console's API over a real PostgreSQL: every role and region-scope rule, tokens,
the audit record and its append-only guarantee, and bad input of every kind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys

import asyncpg
import pytest

from ptsp_gate.accounts.roles import Role
from ptsp_gate.stores import accounts
from tests.integration.console_support import PASSWORD, add_account, client, running_console
from tests.integration.test_officer_queries import NPWP, _history, _nib

pytestmark = pytest.mark.integration


@pytest.fixture
async def world(db: asyncpg.Connection, db_dsn: str):
    """60 employers in regions 7314 and 3319 (40 flagged); an account of each role."""
    await _history(db, 60)
    await db.execute(
        "INSERT INTO employer_enrolment (nib, npwp, npp, status, segment, programs,"
        " workers_enrolled, arrears_months, pds_flags, sanction_requested, as_of, version, source)"
        " VALUES ($1, $2, 'NPP-1', 'ACTIVE', 'PU', '{JKK,JKM}', 3, 0, '{}', false, now(), 1,"
        " 'test')",
        _nib(5),
        NPWP,
    )
    tokens = {
        "ana": await add_account(db, "ana", Role.OFFICER, ["7314"]),
        "budi": await add_account(db, "budi", Role.SUPERVISOR, ["7314"]),
        "citra": await add_account(db, "citra", Role.AUDITOR, ["3319"]),
        "dewi": await add_account(db, "dewi", Role.ADMIN, []),
        "eko": await add_account(db, "eko", Role.OFFICER, ["3319", "7314"]),
    }
    async with running_console(db_dsn) as console:
        yield console, tokens


async def _all_flagged(http, **params) -> list[dict]:
    items, after = [], None
    while True:
        query = {**params, "limit": 7, **({"after": after} if after else {})}
        answer = await http.get("/api/v1/flagged", params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["items"]
        after = body["next"]
        if after is None:
            return items


async def test_an_officer_sees_only_its_regions_flagged_employers(world, db) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as http:
        mine = await _all_flagged(http)
        assert len(mine) == 20
        assert {r["region_code"] for r in mine} == {"7314"}
        assert mine == await _all_flagged(http, region="7314")
        denied = await http.get("/api/v1/flagged", params={"region": "3319"})
        assert denied.status_code == 403
        assert "3319" in denied.json()["error"]
    async with client(console, tokens["dewi"]) as http:
        everyone = await _all_flagged(http)
        assert len(everyone) == 40
    async with client(console, tokens["eko"]) as http:
        both = await _all_flagged(http)
        assert both == everyone  # two regions, the list's one order
        only = await _all_flagged(http, region="3319", reason="ARREARS")
        assert only
        assert all("ARREARS" in r["reason_codes"] for r in only)
    events = await db.fetch("SELECT actor, action, subject FROM audit_event ORDER BY event_id")
    assert ("ana", "ACCESS_DENIED", "flagged:3319") in [tuple(e) for e in events]
    assert sum(1 for e in events if e["actor"] == "ana" and e["action"] == "FLAGGED_LISTED") == 6


async def test_an_employer_of_another_region_is_not_found_like_an_unknown_one(world, db) -> None:
    console, tokens = world
    other, mine, unknown = _nib(1), _nib(0), "9999999999999"  # 3319, 7314
    async with client(console, tokens["ana"]) as http:
        hidden = await http.get(f"/api/v1/employers/{other}")
        missing = await http.get(f"/api/v1/employers/{unknown}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == missing.json()
        seen = await http.get(f"/api/v1/employers/{mine}")
        assert seen.status_code == 200
        body = seen.json()
        assert body["nib"] == mine
        assert {d["region_code"] for d in body["decisions"]} == {"7314"}
    async with client(console, tokens["dewi"]) as http:
        assert (await http.get(f"/api/v1/employers/{other}")).status_code == 200
    viewed = await db.fetch(
        "SELECT actor, subject FROM audit_event WHERE action = 'EMPLOYER_VIEWED' ORDER BY event_id"
    )
    assert [tuple(v) for v in viewed] == [("ana", mine), ("dewi", other)]


async def test_the_npwp_is_masked_unless_the_role_reads_it(world) -> None:
    console, tokens = world
    nib = _nib(5)  # region 3319, enrolment with NPWP
    async with client(console, tokens["eko"]) as http:
        body = (await http.get(f"/api/v1/employers/{nib}")).json()
        assert body["enrolment"]["npwp"].endswith(NPWP[-3:])
        assert NPWP not in (await http.get(f"/api/v1/employers/{nib}")).text
    async with client(console, tokens["dewi"]) as http:
        assert (await http.get(f"/api/v1/employers/{nib}")).json()["enrolment"]["npwp"] == NPWP


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer ",
        "Bearer ptspg_not-a-token",
        "Basic YW5hOnBhc3N3b3Jk",
        "Bearer " + "x" * 5000,
    ],
)
async def test_a_request_without_a_valid_token_is_refused(world, header) -> None:
    console, _ = world
    async with client(console) as http:
        answer = await http.get(
            "/api/v1/flagged", headers={"Authorization": header} if header else {}
        )
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "error" in answer.json()


async def test_disabled_accounts_and_expired_or_revoked_tokens_stop_working(world, db) -> None:
    console, tokens = world
    await db.execute(
        "UPDATE api_token SET expires_at = now() - interval '1 s'"
        " WHERE officer_id = (SELECT officer_id FROM officer WHERE username = 'eko')"
    )
    await accounts.disable(db, "ana")
    async with client(console, tokens["ana"]) as http:
        assert (await http.get("/api/v1/flagged")).status_code == 401
    async with client(console, tokens["eko"]) as http:
        assert (await http.get("/api/v1/flagged")).status_code == 401
    async with client(console, tokens["budi"]) as http:
        assert (await http.get("/api/v1/flagged")).status_code == 200


async def test_only_auditors_and_admins_read_the_audit_record_of_their_regions(world) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as http:
        await http.get("/api/v1/flagged")  # an event of region 7314
        assert (await http.get("/api/v1/audit")).status_code == 403
    async with client(console, tokens["eko"]) as http:
        await http.get("/api/v1/flagged", params={"region": "3319"})
    async with client(console, tokens["citra"]) as http:
        seen = (await http.get("/api/v1/audit")).json()["items"]
        assert seen
        assert all("3319" in e["regions"] for e in seen)
        assert {e["actor"] for e in seen} == {"eko"}
    async with client(console, tokens["dewi"]) as http:
        everything = (await http.get("/api/v1/audit", params={"limit": 2})).json()
        assert len(everything["items"]) == 2
        assert everything["next"]
        older = await http.get("/api/v1/audit", params={"before": everything["next"]})
        assert older.status_code == 200
        assert older.json()["items"][0]["event_id"] < everything["items"][-1]["event_id"]
        assert (await http.get("/api/v1/audit", params={"before": "bm9wZQ"})).status_code == 400


async def test_the_audit_record_cannot_be_changed_even_by_its_owner(world, db) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as http:
        await http.get("/api/v1/flagged")
    for statement in (
        "UPDATE audit_event SET actor = 'someone else'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(statement)
    assert await db.fetchval("SELECT count(*) FROM audit_event WHERE actor = 'ana'") == 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/flagged", {"region": "73 14"}),
        ("/api/v1/flagged", {"region": "7314' OR 1=1 --"}),
        ("/api/v1/flagged", {"reason": "NOT_A_CODE"}),
        ("/api/v1/flagged", {"limit": "0"}),
        ("/api/v1/flagged", {"limit": "100000"}),
        ("/api/v1/flagged", {"limit": "ten"}),
        ("/api/v1/flagged", {"after": "x" * 201}),
        ("/api/v1/employers/12345", {}),
        ("/api/v1/employers/012345678901234", {}),
        ("/api/v1/coverage", {"from": "2026-13-01"}),
        ("/api/v1/audit", {"actor": "a" * 101}),
    ],
)
async def test_malformed_parameters_answer_422_without_echoing_them(world, path, params) -> None:
    console, tokens = world
    async with client(console, tokens["dewi"]) as http:
        answer = await http.get(path, params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid request"
    assert body["problems"]
    for value in params.values():
        assert value not in answer.text


async def test_a_cursor_this_service_did_not_print_is_a_400(world) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as http:
        for after in ("garbage", "W10", "eyJhIjoxfQ"):
            answer = await http.get("/api/v1/flagged", params={"after": after})
            assert answer.status_code == 400
            assert "after" in answer.json()["error"]


async def test_coverage_is_limited_to_the_officer_s_regions(world) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as http:
        rows = (
            await http.get("/api/v1/coverage", params={"from": "2026-01-01", "to": "2026-04-01"})
        ).json()["items"]
        assert {r["region_code"] for r in rows} == {"7314"}
        assert sum(r["applications_blocked"] for r in rows) == 20
        assert (await http.get("/api/v1/coverage", params={"region": "3319"})).status_code == 403
        backwards = await http.get(
            "/api/v1/coverage", params={"from": "2026-04-01", "to": "2026-01-01"}
        )
        assert backwards.status_code == 400


async def test_the_openapi_document_describes_the_api_and_nothing_else(world) -> None:
    console, _ = world
    async with client(console) as http:
        document = (await http.get("/api/v1/openapi.json")).json()
    assert set(document["paths"]) == {
        "/api/v1/flagged",
        "/api/v1/employers/{nib}",
        "/api/v1/coverage",
        "/api/v1/audit",
        "/api/v1/overrides",
        "/api/v1/overrides/{override_id}",
        "/api/v1/overrides/{override_id}/approve",
        "/api/v1/overrides/{override_id}/refuse",
        "/api/v1/overrides/{override_id}/revoke",
    }


async def test_account_commands(db, db_dsn, tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": db_dsn}

    def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ptsp_gate.cli.main", *argv],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = await asyncio.to_thread(
        run,
        "officer",
        "add",
        "fitri",
        "--region",
        "7314",
        "--role",
        "officer",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stderr + added.stdout
    weak = await asyncio.to_thread(
        run, "officer", "add", "gita", "--region", "7314", "--role", "officer", stdin="short\n"
    )
    assert weak.returncode == 1
    assert weak.stderr.count("\n") == 1
    assert "12" in weak.stderr
    again = await asyncio.to_thread(
        run,
        "officer",
        "add",
        "fitri",
        "--region",
        "7314",
        "--role",
        "officer",
        stdin=PASSWORD + "\n",
    )
    assert again.returncode == 1
    assert "exists already" in again.stderr
    no_region = await asyncio.to_thread(
        run, "officer", "add", "hana", "--role", "supervisor", stdin=PASSWORD + "\n"
    )
    assert no_region.returncode == 1
    assert "--region" in no_region.stderr
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    from_file = await asyncio.to_thread(
        run, "officer", "add", "indah", "--role", "admin", "--password-file", str(secret)
    )
    assert from_file.returncode == 0, from_file.stderr
    bad_name = await asyncio.to_thread(run, "officer", "add", "Not Valid", "--role", "admin")
    assert bad_name.returncode == 2
    listed = await asyncio.to_thread(run, "officer", "list")
    assert "fitri" in listed.stdout
    assert "indah" in listed.stdout
    assert "*" in listed.stdout
    token = await asyncio.to_thread(run, "officer", "token", "fitri", "--ttl", "7")
    assert token.returncode == 0
    assert token.stdout.startswith("ptspg_")
    stored = hashlib.sha256(token.stdout.strip().encode()).digest()
    assert await db.fetchval("SELECT count(*) FROM api_token WHERE token_hash = $1", stored) == 1
    async with running_console(db_dsn) as console, client(console, token.stdout.strip()) as http:
        assert (await http.get("/api/v1/flagged")).status_code == 200
        disabled = await asyncio.to_thread(run, "officer", "disable", "fitri")
        assert disabled.returncode == 0
        assert (await http.get("/api/v1/flagged")).status_code == 401
    unknown = await asyncio.to_thread(run, "officer", "token", "nobody")
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr
    actions = await db.fetch("SELECT actor, action, subject FROM audit_event ORDER BY event_id")
    assert [a["action"] for a in actions if a["actor"].startswith("cli:")] == [
        "OFFICER_ADDED",
        "OFFICER_ADDED",
        "TOKEN_ISSUED",
        "OFFICER_DISABLED",
    ]


async def test_the_last_twelve_months_are_computed_ahead_and_other_periods_now(world, db) -> None:
    console, tokens = world
    ahead = console.figures.rows(None)
    assert ahead is not None
    async with client(console, tokens["ana"]) as http:
        default = (await http.get("/api/v1/coverage")).json()
        assert default["as_of"] == ahead.as_of.isoformat().replace("+00:00", "Z")
        assert {r["region_code"] for r in default["items"]} == {"7314"}
        asked = (await http.get("/api/v1/coverage", params={"from": "2025-12-01"})).json()
        assert asked["as_of"] > default["as_of"]  # computed for the question
        assert asked["items"] == default["items"]
        # Figures that missed two refreshes are not served: computed again for the page.
        console.figures._figures = type(ahead)(ahead.rows, ahead.as_of.replace(year=2020))
        fresh = (await http.get("/api/v1/coverage")).json()
        assert fresh["as_of"] > default["as_of"]
        assert fresh["items"] == default["items"]
