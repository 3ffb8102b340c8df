"""Officer overrides end to end: asked in the console, granted by a second person, applied by
the permit checker as a superseding CLEARED decision on the decisions topic, and decided again
when revoked or expired; new applications of an overridden employer are cleared under it. Then
every refusal the console gives, over a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ptsp_gate import demo
from ptsp_gate.accounts.roles import Role
from ptsp_gate.stores import overrides
from tests.integration.conftest import eventually
from tests.integration.console_support import add_account, client, running_console
from tests.integration.support import decisions, read_topic, send, services
from tests.integration.test_officer_queries import _history, _nib

pytestmark = pytest.mark.integration


async def _accounts(db: asyncpg.Connection) -> dict[str, str]:
    return {
        "ana": await add_account(db, "ana", Role.OFFICER, ["7314"]),
        "budi": await add_account(db, "budi", Role.SUPERVISOR, ["7314"]),
        "sari": await add_account(db, "sari", Role.SUPERVISOR, ["3319"]),
        "citra": await add_account(db, "citra", Role.AUDITOR, ["7314"]),
    }


async def _timeline(db: asyncpg.Connection, application_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT decision_id, outcome, reason_codes, reasons, supersedes FROM compliance_decision"
        " WHERE application_id = $1 ORDER BY seq",
        application_id,
    )
    return [dict(r) for r in rows]


def _asked(**fields: Any) -> dict[str, Any]:
    return {
        "scope": "APPLICATION",
        "legal_basis": "Perbup 12/2026 pasal 4",
        "document_ref": "SK-001/2026",
        "reason": "Terdaftar di kantor cabang lain (bukti kepesertaan terlampir).",
        "expires_at": (datetime.now(UTC) + timedelta(days=14)).isoformat(),
        **fields,
    }


async def test_an_override_asked_and_approved_supersedes_the_block_until_revoked(
    settings, producer, bootstrap, db, db_dsn
) -> None:
    settings = settings.model_copy(update={"override_poll_s": 0.5})
    tokens = await _accounts(db)
    now = datetime.now(UTC)
    app = demo.application(1, now=now)
    app_id = app["application_id"]
    async with services(settings) as _, running_console(db_dsn) as console:
        owing = demo.enrolment(1, arrears=4, now=now)
        await send(producer, settings.topic_enrolment, [demo.enrolment_record(owing)])
        await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM employer_enrolment"))
        await send(producer, settings.topic_applications, [demo.application_record(app)])
        await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM compliance_decision"))
        (blocked,) = await _timeline(db, app_id)
        assert blocked["outcome"] == "BLOCKED"

        async with client(console, tokens["ana"]) as ana:
            asked = await ana.post("/api/v1/overrides", json=_asked(application_id=app_id))
            assert asked.status_code == 201, asked.text
            override = asked.json()
            assert override["state"] == "ASKED"
            assert override["asked_by"] == "ana"
            assert override["region_code"] == "7314"
            oid = override["override_id"]
            own = await ana.post(f"/api/v1/overrides/{oid}/approve")
            assert own.status_code == 403  # an officer does not grant
        async with client(console, tokens["sari"]) as sari:
            elsewhere = await sari.post(f"/api/v1/overrides/{oid}/approve")
            assert elsewhere.status_code == 404  # another region's supervisor
        async with client(console, tokens["budi"]) as budi:
            granted = await budi.post(
                f"/api/v1/overrides/{oid}/approve", json={"note": "Bukti diperiksa."}
            )
            assert granted.status_code == 200, granted.text
            assert granted.json()["state"] == "GRANTED"
            assert granted.json()["decided_by"] == "budi"
            again = await budi.post(f"/api/v1/overrides/{oid}/approve")
            assert again.status_code == 409

            await eventually(lambda: _count(db, app_id, 2))
            cleared = (await _timeline(db, app_id))[-1]
            assert cleared["outcome"] == "CLEARED"
            assert cleared["reason_codes"] == ["OFFICER_OVERRIDE"]
            assert cleared["supersedes"] == blocked["decision_id"]
            details = cleared["reasons"][0]["details"]
            assert details["override_id"] == oid
            assert details["overridden"] == [{"code": "ARREARS", "effect": "block"}]
            assert details["approved_by"] == ["budi"]
            assert details["asked_by"] == "ana"

            published = decisions(
                await read_topic(bootstrap, settings.topic_decisions, 2, timeout=30)
            )
            on_topic = [d for d in published if d["decision_id"] == str(cleared["decision_id"])]
            assert len(on_topic) == 1
            assert on_topic[0]["outcome"] == "CLEARED"
            assert on_topic[0]["supersedes"] == str(blocked["decision_id"])
            assert on_topic[0]["reasons"][0]["code"] == "OFFICER_OVERRIDE"
            assert on_topic[0]["reasons"][0]["details"]["expires_at"] == details["expires_at"]

            shown = (await budi.get(f"/api/v1/overrides/{oid}")).json()
            assert shown["applied_at"] is not None
            assert [d["decision_id"] for d in shown["decisions"]] == [str(cleared["decision_id"])]

            revoked = await budi.post(f"/api/v1/overrides/{oid}/revoke")
            assert revoked.status_code == 200
            assert revoked.json()["state"] == "REVOKED"
            await eventually(lambda: _count(db, app_id, 3))
            again_blocked = (await _timeline(db, app_id))[-1]
            assert again_blocked["outcome"] == "BLOCKED"
            assert again_blocked["reason_codes"] == ["ARREARS"]
            assert again_blocked["supersedes"] == cleared["decision_id"]
            await eventually(
                lambda: db.fetchval(
                    "SELECT ended_at IS NOT NULL FROM officer_override WHERE override_id = $1",
                    uuid.UUID(oid),
                )
            )
    trail = [
        (r["actor"], r["action"])
        for r in await db.fetch(
            "SELECT actor, action FROM audit_event WHERE subject = $1 ORDER BY event_id", oid
        )
    ]
    assert trail == [
        ("ana", "OVERRIDE_ASKED"),
        ("budi", "OVERRIDE_GRANTED"),
        ("budi", "OVERRIDE_REVOKED"),
    ]
    denied = await db.fetchval(
        "SELECT count(*) FROM audit_event WHERE actor = 'sari' AND action = 'ACCESS_DENIED'"
    )
    assert denied == 1


async def _count(db: asyncpg.Connection, application_id: str, n: int) -> bool:
    return len(await _timeline(db, application_id)) >= n


async def test_an_employer_override_clears_new_applications_until_it_expires(
    settings, producer, db, db_dsn
) -> None:
    settings = settings.model_copy(update={"override_poll_s": 0.5})
    tokens = await _accounts(db)
    now = datetime.now(UTC)
    first = demo.application(2, now=now)
    async with services(settings) as _, running_console(db_dsn) as console:
        owing = demo.enrolment(2, status="INACTIVE", now=now)
        await send(producer, settings.topic_enrolment, [demo.enrolment_record(owing)])
        await eventually(lambda: db.fetchval("SELECT count(*) = 1 FROM employer_enrolment"))
        await send(producer, settings.topic_applications, [demo.application_record(first)])
        await eventually(lambda: _count(db, first["application_id"], 1))

        async with client(console, tokens["ana"]) as ana:
            asked = await ana.post(
                "/api/v1/overrides",
                json=_asked(
                    scope="EMPLOYER",
                    nib=first["employer"]["nib"],
                    expires_at=(datetime.now(UTC) + timedelta(seconds=12)).isoformat(),
                ),
            )
            assert asked.status_code == 201, asked.text
            oid = asked.json()["override_id"]
        async with client(console, tokens["budi"]) as budi:
            granted = await budi.post(f"/api/v1/overrides/{oid}/approve")
            assert granted.status_code == 200, granted.text

        await eventually(lambda: _count(db, first["application_id"], 2))
        assert (await _timeline(db, first["application_id"]))[-1]["outcome"] == "CLEARED"
        # A new application of the employer in that region is cleared under it from the start;
        # one in another region is not.
        second = {**demo.application(2, now=datetime.now(UTC)), "application_id": "APP-7314-X2"}
        other = demo.application(2, region="3319", now=datetime.now(UTC))
        await send(
            producer,
            settings.topic_applications,
            [demo.application_record(second), demo.application_record(other)],
        )
        await eventually(lambda: _count(db, second["application_id"], 1))
        await eventually(lambda: _count(db, other["application_id"], 1))
        (under,) = await _timeline(db, second["application_id"])
        assert under["outcome"] == "CLEARED"
        assert under["reason_codes"] == ["OFFICER_OVERRIDE"]
        assert under["supersedes"] is None
        assert (await _timeline(db, other["application_id"]))[0]["outcome"] == "BLOCKED"

        # At expiry both are decided again without it.
        await eventually(lambda: _count(db, first["application_id"], 3), timeout=40)
        await eventually(lambda: _count(db, second["application_id"], 2), timeout=40)
        for app_id in (first["application_id"], second["application_id"]):
            last = (await _timeline(db, app_id))[-1]
            assert last["outcome"] == "BLOCKED"
            assert last["reason_codes"] == ["EMPLOYER_INACTIVE"]
        state = await db.fetchval(
            "SELECT state FROM officer_override WHERE override_id = $1", uuid.UUID(oid)
        )
        assert state == "EXPIRED"
    assert len(await _timeline(db, other["application_id"])) == 1


# --- what the console refuses -------------------------------------------------------------------


@pytest.fixture
async def world(db: asyncpg.Connection, db_dsn: str):
    """12 employers in 7314 and 3319 (OSS-0 blocked in 7314, OSS-2 cleared, OSS-1 in 3319)."""
    await _history(db, 12)
    # Recent applications, still decided again; OSS-6 (blocked, 7314) is past the window.
    recently = datetime.now(UTC) - timedelta(hours=1)
    for table in ("permit_application", "application_standing"):
        await db.execute(
            f"UPDATE {table} SET submitted_at = CASE application_id WHEN 'OSS-6'"
            " THEN $1::timestamptz - interval '91 days' ELSE $1::timestamptz END",
            recently,
        )
    tokens = await _accounts(db)
    tokens["dewi"] = await add_account(db, "dewi", Role.ADMIN, [])
    async with running_console(db_dsn) as console:
        yield console, tokens


BAD_BODIES = {
    "not JSON": b"{",
    "a list": b"[]",
    "no scope": json.dumps({k: v for k, v in _asked().items() if k != "scope"}).encode(),
    "an unknown scope": json.dumps(_asked(scope="EVERYTHING")).encode(),
    "an unknown field": json.dumps(_asked(application_id="OSS-0", approved=True)).encode(),
    "a naive expiry": json.dumps(
        _asked(application_id="OSS-0", expires_at="2030-01-01T00:00")
    ).encode(),
    "an empty legal basis": json.dumps(_asked(application_id="OSS-0", legal_basis="  ")).encode(),
    "a control character": json.dumps(_asked(application_id="OSS-0", reason="a\x1bb")).encode(),
    "an oversized reason": json.dumps(_asked(application_id="OSS-0", reason="x" * 2001)).encode(),
    "a malformed NIB": json.dumps(_asked(scope="EMPLOYER", nib="12345")).encode(),
    "a hostile application id": json.dumps(_asked(application_id="OSS-0' OR 1=1 --")).encode(),
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_a_malformed_request_is_refused_without_echo(world, db, body: bytes) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as ana:
        answer = await ana.post(
            "/api/v1/overrides", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    assert "OR 1=1" not in answer.text
    assert await db.fetchval("SELECT count(*) FROM officer_override") == 0


async def test_what_cannot_be_asked(world, db) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as ana:
        cases = {
            "another region's application": (_asked(application_id="OSS-1"), 404),
            "an unknown application": (_asked(application_id="OSS-404"), 404),
            "a cleared application": (_asked(application_id="OSS-2"), 409),
            "an application past the re-decision window": (_asked(application_id="OSS-6"), 409),
            "no application id": (_asked(), 400),
            "an employer of another region": (_asked(scope="EMPLOYER", nib=_nib(1)), 404),
            "an employer in a region not its own": (
                _asked(scope="EMPLOYER", nib=_nib(0), region_code="3319"),
                404,
            ),
            "an expiry in the past": (
                _asked(application_id="OSS-0", expires_at="2020-01-01T00:00:00+07:00"),
                400,
            ),
            "longer than the longest allowed": (
                _asked(
                    application_id="OSS-0",
                    expires_at=(datetime.now(UTC) + timedelta(days=91)).isoformat(),
                ),
                400,
            ),
        }
        for name, (body, status) in cases.items():
            answer = await ana.post("/api/v1/overrides", json=body)
            assert answer.status_code == status, (name, answer.text)
            assert "error" in answer.json()
    async with client(console, tokens["citra"]) as citra:
        answer = await citra.post("/api/v1/overrides", json=_asked(application_id="OSS-0"))
        assert answer.status_code == 403  # auditors ask nothing
    assert await db.fetchval("SELECT count(*) FROM officer_override") == 0


async def test_a_second_person_decides_and_each_decision_happens_once(world, db) -> None:
    console, tokens = world
    async with client(console, tokens["budi"]) as budi:
        asked = await budi.post("/api/v1/overrides", json=_asked(application_id="OSS-0"))
        assert asked.status_code == 201
        oid = asked.json()["override_id"]
        own = await budi.post(f"/api/v1/overrides/{oid}/approve")
        assert own.status_code == 403
        assert "someone other" in own.json()["error"]
    # The database refuses it too, whatever the console would do.
    budi_id = await db.fetchval("SELECT officer_id FROM officer WHERE username = 'budi'")
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "UPDATE officer_override SET state = 'GRANTED', decided_by = $1, decided_at = now()"
            " WHERE override_id = $2",
            budi_id,
            uuid.UUID(oid),
        )
    async with client(console, tokens["dewi"]) as dewi:
        refused = await dewi.post(f"/api/v1/overrides/{oid}/refuse", json={"note": "Tidak ada."})
        assert refused.status_code == 200
        assert refused.json()["state"] == "REFUSED"
        assert refused.json()["decision_note"] == "Tidak ada."
        for verb in ("approve", "refuse", "revoke"):
            late = await dewi.post(f"/api/v1/overrides/{oid}/{verb}")
            assert late.status_code == 409, verb
        unknown = await dewi.post(f"/api/v1/overrides/{uuid.uuid4()}/approve")
        assert unknown.status_code == 404
        malformed = await dewi.post("/api/v1/overrides/not-a-uuid/approve")
        assert malformed.status_code == 422
    actions = await db.fetch(
        "SELECT actor, action FROM audit_event WHERE subject = $1 ORDER BY event_id", oid
    )
    assert [tuple(a) for a in actions] == [("budi", "OVERRIDE_ASKED"), ("dewi", "OVERRIDE_REFUSED")]


async def test_an_override_that_lapsed_unanswered_cannot_be_granted(world, db) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as ana:
        asked = await ana.post("/api/v1/overrides", json=_asked(application_id="OSS-0"))
        oid = asked.json()["override_id"]
    await db.execute(
        "UPDATE officer_override SET asked_at = now() - interval '2 days',"
        " expires_at = now() - interval '1 second' WHERE override_id = $1",
        uuid.UUID(oid),
    )
    async with client(console, tokens["budi"]) as budi:
        late = await budi.post(f"/api/v1/overrides/{oid}/approve")
        assert late.status_code == 409
        assert "expired" in late.json()["error"]


async def test_the_override_list_is_scoped_and_paged(world, db) -> None:
    console, tokens = world
    ids = []
    async with client(console, tokens["ana"]) as ana:
        for _ in range(5):
            asked = await ana.post("/api/v1/overrides", json=_asked(application_id="OSS-0"))
            ids.append(asked.json()["override_id"])
        seen, before = [], None
        while True:
            page = await ana.get(
                "/api/v1/overrides", params={"limit": 2, **({"before": before} if before else {})}
            )
            assert page.status_code == 200
            seen += [o["override_id"] for o in page.json()["items"]]
            before = page.json()["next"]
            if before is None:
                break
        assert seen == list(reversed(ids))
        asked_only = await ana.get("/api/v1/overrides", params={"state": "GRANTED"})
        assert asked_only.json()["items"] == []
        for bad in ({"before": "forged"}, {"state": "LOST"}, {"limit": 0}, {"nib": "1"}):
            assert (await ana.get("/api/v1/overrides", params=bad)).status_code in (400, 422)
        denied = await ana.get("/api/v1/overrides", params={"region": "3319"})
        assert denied.status_code == 403
    async with client(console, tokens["sari"]) as sari:
        assert (await sari.get("/api/v1/overrides")).json()["items"] == []
        assert (await sari.get(f"/api/v1/overrides/{ids[0]}")).status_code == 404


async def test_a_grant_waits_for_no_window_and_a_revoke_waits_for_decisions_under_it(
    world, db, db_dsn
) -> None:
    console, tokens = world
    async with client(console, tokens["ana"]) as ana:
        late = (await ana.post("/api/v1/overrides", json=_asked(application_id="OSS-0"))).json()
        oid = (await ana.post("/api/v1/overrides", json=_asked(application_id="OSS-4"))).json()
    # OSS-0 leaves the re-decision window before it is granted: the grant is refused.
    for table in ("permit_application", "application_standing"):
        await db.execute(
            f"UPDATE {table} SET submitted_at = submitted_at - interval '100 days'"
            " WHERE application_id = 'OSS-0'"
        )
    async with client(console, tokens["budi"]) as budi:
        refused = await budi.post(f"/api/v1/overrides/{late['override_id']}/approve")
        assert refused.status_code == 409
        assert "no longer decided again" in refused.json()["error"]
        assert (
            await budi.post(f"/api/v1/overrides/{oid['override_id']}/approve")
        ).status_code == 200
        # A decider holding the grant (a permit-checker batch deciding under it) delays the
        # revocation until it has committed, so that settling the revocation then sees its
        # decisions.
        decider = await asyncpg.connect(db_dsn)
        try:
            async with decider.transaction():
                held = await overrides.in_force(decider, ["OSS-4"], [_nib(4)], datetime.now(UTC))
                assert [str(g.override_id) for g in held] == [oid["override_id"]]
                revoking = asyncio.ensure_future(
                    budi.post(f"/api/v1/overrides/{oid['override_id']}/revoke")
                )
                done, _ = await asyncio.wait({revoking}, timeout=1.0)
                assert not done  # waiting for the decider
            answer = await revoking
            assert answer.status_code == 200
            assert answer.json()["state"] == "REVOKED"
        finally:
            await decider.close()
