"""The permit checker's batch logic against the in-memory store: what each batch stores,
answers and dead-letters, without Kafka or PostgreSQL (tests/integration covers those)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from ptsp_gate import demo
from ptsp_gate.contract import dead_letter
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, ComplianceDecision, EnrolmentState
from ptsp_gate.runtime.in_memory import InMemory, Record
from ptsp_gate_enrolment_sync.sync import EnrolmentSync
from ptsp_gate_permit_checker.checker import PermitChecker
from ptsp_gate_permit_checker.sweep import sweep_once

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def world() -> InMemory:
    return InMemory(now=NOW)


def published(world: InMemory, kind: str) -> list[dict[str, object]]:
    return [json.loads(r.value or b"null") for r in world.state.outbox if r.kind == kind]


def dead_letter_codes(world: InMemory) -> list[str]:
    return [
        dict(r.headers)[dead_letter.ERROR_CODE].decode()
        for r in world.state.outbox
        if r.kind == "dlq"
    ]


async def test_every_demo_scenario_gets_its_outcome_and_reasons(world: InMemory) -> None:
    scenarios = demo.scenarios(NOW)
    feed = world.enrolments()
    await EnrolmentSync(world.context()).handle_batch(
        [feed.record(*demo.enrolment_record(s.enrolment)) for s in scenarios if s.enrolment]
    )
    inbox = world.applications()
    records: list[Record] = []
    for s in scenarios:
        key, headers, value = demo.application_record(s.application, s.ce_type)
        records.append(inbox.record(key, headers, s.raw_override or value))
    await PermitChecker(world.context()).handle_batch(records)

    by_app = {d["application_id"]: d for d in published(world, "decision")}
    for s in scenarios:
        decision = by_app[s.application["application_id"]]
        codes = tuple(r["code"] for r in decision["reasons"])  # type: ignore[union-attr]
        assert (decision["outcome"], codes) == (s.expect_outcome, s.expect_codes), s.name
    assert len(world.state.decisions) == len(scenarios)


async def test_a_redelivered_batch_is_absorbed(world: InMemory) -> None:
    inbox = world.applications()
    app = demo.application(1, now=NOW)
    record = inbox.record(*demo.application_record(app))
    checker = PermitChecker(world.context())
    await checker.handle_batch([record, record])
    await checker.handle_batch([record])
    assert len(world.state.decisions) == 1
    assert world.metrics.duplicates.labels(inbox.topic)._value.get() == 2


async def test_another_event_under_a_used_id_is_an_id_conflict(world: InMemory) -> None:
    inbox = world.applications()
    event_id = str(uuid.uuid4())
    first = demo.application(1, now=NOW)
    second = demo.application(2, now=NOW)
    checker = PermitChecker(world.context())
    await checker.handle_batch([inbox.record(*demo.application_record(first, event_id=event_id))])
    await checker.handle_batch([inbox.record(*demo.application_record(second, event_id=event_id))])
    assert dead_letter_codes(world) == ["ID_CONFLICT"]
    answered = {d["application_id"]: d["outcome"] for d in published(world, "decision")}
    assert answered == {first["application_id"]: "PENDING", second["application_id"]: "REJECTED"}


async def test_an_unreadable_record_is_dead_lettered_without_an_answer(world: InMemory) -> None:
    inbox = world.applications()
    headers, _ = demo.encode(CE_TYPE_APPLICATION, demo.PTSP_SOURCE, {})
    await PermitChecker(world.context()).handle_batch([inbox.record(b"k", headers, b"{not json")])
    assert dead_letter_codes(world) == ["MALFORMED_JSON"]
    assert world.state.decisions == []


async def test_a_failed_transaction_leaves_nothing_behind(
    world: InMemory, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = world.applications()
    records = [inbox.record(*demo.application_record(demo.application(n, now=NOW))) for n in (1, 2)]

    def broken(*args: object, **kwargs: object) -> ComplianceDecision:
        raise RuntimeError("bug while deciding")

    monkeypatch.setattr("ptsp_gate.decisions.build", broken)
    with pytest.raises(RuntimeError, match="bug while deciding"):
        await PermitChecker(world.context()).handle_batch(records)
    assert world.state.processed == {}
    assert world.state.outbox == []


async def test_a_record_set_aside_is_a_processing_failed_dead_letter(world: InMemory) -> None:
    record = world.applications().record(*demo.application_record(demo.application(1, now=NOW)))
    await PermitChecker(world.context()).dead_letter(record, "RuntimeError: bug")
    assert dead_letter_codes(world) == ["PROCESSING_FAILED"]
    assert world.state.decisions == []


async def test_the_sweep_resolves_pending_applications_once_data_is_there(
    world: InMemory,
) -> None:
    app = demo.application(1, now=NOW)
    await PermitChecker(world.context()).handle_batch(
        [world.applications().record(*demo.application_record(app))]
    )
    assert published(world, "decision")[-1]["outcome"] == "PENDING"
    # The employer's record arrives by a path that re-decides nothing (as a bulk import that
    # crashed between its merge and its re-decision could leave it).
    state = EnrolmentState.model_validate_json(json.dumps(demo.enrolment(1, now=NOW)))
    world.state.enrolments[state.nib] = state
    changes = await sweep_once(world.context())
    assert changes is not None
    assert [(c.from_outcome, c.to_outcome) for c in changes] == [("PENDING", "CLEARED")]
    assert await sweep_once(world.context()) == []
