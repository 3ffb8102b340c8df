"""A consumer that makes no progress while records wait is not ready, and says so."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from ptsp_gate import demo

from .conftest import eventually
from .support import send, services

pytestmark = pytest.mark.integration


@pytest.mark.apache_kafka_only
async def test_a_consumer_held_by_a_lock_turns_not_ready_and_recovers(settings, producer, db_dsn):
    settings = settings.model_copy(update={"consumer_stuck_after_s": 15.0})
    now = datetime.now(UTC)
    blocker = await asyncpg.connect(db_dsn)
    try:
        async with services(settings, "permit-checker") as running:
            svc = running["permit-checker"]

            async def assigned() -> bool:
                return not await svc.readiness()

            await eventually(assigned, timeout=30, interval=0.5)
            # Someone holds the decisions table (a manual transaction, a long migration).
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE compliance_decision IN ACCESS EXCLUSIVE MODE")
            await send(
                producer,
                settings.topic_applications,
                [demo.application_record(demo.application(n, now=now)) for n in range(1, 4)],
            )
            started = time.monotonic()

            async def stuck() -> bool:
                return "no progress" in (await svc.readiness()).get("consumer", "")

            await eventually(stuck, timeout=60, interval=1)
            assert time.monotonic() - started >= 15
            assert svc.metrics.consumer_stalled.labels("permit-checker")._value.get() > 0
            await lock.rollback()

            async def ready_again() -> bool:
                return not await svc.readiness()

            await eventually(ready_again, timeout=30, interval=0.5)
    finally:
        await blocker.close()


async def test_probes_share_one_check_and_give_generic_reasons(settings, monkeypatch):
    async with services(settings, "permit-checker") as running:
        svc = running["permit-checker"]
        calls = 0
        real = svc._check_readiness

        async def counted() -> dict[str, str]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.2)
            return await real()

        monkeypatch.setattr(svc, "_check_readiness", counted)
        await asyncio.sleep(2)  # past the cache of the checks made while starting
        answers = await asyncio.gather(*(svc.readiness() for _ in range(300)))
        assert calls == 1
        assert all(a == answers[0] for a in answers)

        # PostgreSQL gone: the reason is generic, the detail is only logged.
        assert svc.pool is not None
        await svc.pool.close()
        await asyncio.sleep(2)
        problems = await svc.readiness()
        assert problems["postgres"] == "not reachable"
