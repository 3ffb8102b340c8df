"""enrolment-sync's batch logic against the in-memory store: the version rule, re-decisions
and dead letters, without Kafka or PostgreSQL (tests/integration covers those)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ptsp_gate import demo
from ptsp_gate.contract import dead_letter
from ptsp_gate.runtime.in_memory import InMemory
from ptsp_gate_enrolment_sync.sync import EnrolmentSync
from ptsp_gate_permit_checker.checker import PermitChecker

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def world() -> InMemory:
    return InMemory(now=NOW)


async def test_the_newest_version_wins_whatever_the_order(world: InMemory) -> None:
    records = world.enrolments()
    v1, v2, v3 = (demo.enrolment(1, now=NOW, version=v) for v in (1, 2, 3))
    sync = EnrolmentSync(world.context())
    await sync.handle_batch([records.record(*demo.enrolment_record(v)) for v in (v1, v3, v2)])
    await sync.handle_batch([records.record(*demo.enrolment_record(v2))])  # late, stale
    assert world.state.enrolments[v1["nib"]].version == 3
    updates = world.metrics.enrolment_updates
    assert (updates.labels("applied")._value.get(), updates.labels("stale")._value.get()) == (1, 3)


async def test_a_new_state_re_decides_the_employers_open_applications(world: InMemory) -> None:
    app = demo.application(1, now=NOW)
    inbox = world.applications()
    await PermitChecker(world.context()).handle_batch([inbox.record(*demo.application_record(app))])
    first = world.state.decisions[-1].decision
    assert first.outcome.value == "PENDING"

    await EnrolmentSync(world.context()).handle_batch(
        [world.enrolments().record(*demo.enrolment_record(demo.enrolment(1, now=NOW)))]
    )
    latest = world.state.decisions[-1].decision
    assert (latest.outcome.value, latest.supersedes) == ("CLEARED", first.decision_id)
    announced = [json.loads(r.value or b"") for r in world.state.outbox if r.kind == "decision"]
    assert [d["outcome"] for d in announced] == ["PENDING", "CLEARED"]
    assert world.metrics.redecisions.labels("PENDING", "CLEARED")._value.get() == 1


async def test_a_bad_record_is_dead_lettered_once_however_often_it_comes(world: InMemory) -> None:
    records = world.enrolments()
    key, headers, _ = demo.enrolment_record(demo.enrolment(1, now=NOW))
    bad = records.record(key, headers, b'{"nib": "not a nib"}')
    sync = EnrolmentSync(world.context())
    await sync.handle_batch([bad])
    await sync.handle_batch([bad])
    codes = [dict(r.headers)[dead_letter.ERROR_CODE] for r in world.state.outbox]
    assert codes == [b"SCHEMA_VIOLATION"]
    assert world.state.enrolments == {}
