"""Decision ids (DESIGN §4): deterministic, pinned forever, and new whenever what was decided,
or on which data, changes."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

import pytest

from ptsp_gate.contract.events import Outcome, Reason, ReasonCode
from ptsp_gate.policy import Verdict, decide, decision_id
from tests.policy_builders import NATIONAL, NOW, application, enrolment


def _verdict(**changes: Any) -> Verdict:
    return decide(application(), enrolment(**changes), NATIONAL, NOW)


def test_decision_id_is_deterministic() -> None:
    first = decision_id("ce-42", _verdict(arrears_months=5), 7)
    assert first == decision_id("ce-42", _verdict(arrears_months=5), 7)
    assert first.version == 5


def test_decision_id_is_pinned() -> None:
    # A replay after an upgrade must still find the same ids: the namespace and the canonical
    # form are part of the contract, so this value must never change.
    namespace = UUID("fb82c960-7181-5b8a-aa4a-f108c7cd27d4")
    canonical = '["ce-1","BLOCKED",["ARREARS","PDS_WAGES"],"national-2026.1",7,null]'
    reasons = tuple(
        Reason(code=code, message="m", details={"effect": "block"})
        for code in (ReasonCode.PDS_WAGES, ReasonCode.ARREARS)  # given out of order on purpose
    )
    verdict = Verdict(Outcome.BLOCKED, reasons, NOW, "national-2026.1")
    assert decision_id("ce-1", verdict, 7) == uuid5(namespace, canonical)
    cleared = Verdict(Outcome.CLEARED, (), None, "national-2026.1")
    assert decision_id("ce-1", cleared, None) == UUID("0ca92797-3584-5d5f-a4f1-ac1973128e99")


@pytest.mark.parametrize(
    ("event_id", "changes", "enrolment_version", "supersedes"),
    [
        ("ce-43", {"arrears_months": 5}, 7, None),
        ("ce-42", {"arrears_months": 1}, 7, None),
        ("ce-42", {"arrears_months": 5, "sanction_requested": True}, 7, None),
        ("ce-42", {"arrears_months": 5}, 8, None),
        ("ce-42", {"arrears_months": 5}, None, None),
        ("ce-42", {"arrears_months": 5}, 7, UUID("00000000-0000-5000-8000-000000000001")),
    ],
    ids=["event id", "outcome", "reason codes", "enrolment version", "no record", "supersedes"],
)
def test_decision_id_changes_with_its_inputs(
    event_id: str, changes: dict[str, Any], enrolment_version: int | None, supersedes: UUID | None
) -> None:
    base = decision_id("ce-42", _verdict(arrears_months=5), 7)
    assert decision_id(event_id, _verdict(**changes), enrolment_version, supersedes) != base


def test_decision_id_depends_on_policy_version_not_on_messages() -> None:
    verdict = _verdict(arrears_months=5)
    other_version = Verdict(verdict.outcome, verdict.reasons, verdict.enrolment_as_of, "x-2")
    assert decision_id("ce-42", other_version, 7) != decision_id("ce-42", verdict, 7)
    reworded = Verdict(
        verdict.outcome,
        tuple(r.model_copy(update={"message": "reworded"}) for r in reversed(verdict.reasons)),
        verdict.enrolment_as_of,
        verdict.policy_version,
    )
    assert decision_id("ce-42", reworded, 7) == decision_id("ce-42", verdict, 7)
