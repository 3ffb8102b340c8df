"""What a policy other than the national default changes in `decide`: a region's snapshot rule
and demoted codes, and the tolerances, age limit and programme caps read from policy data."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ptsp_gate.contract.events import Outcome, Program, ReasonCode, Scale, Segment
from ptsp_gate.policy import decide
from tests.policy_builders import (
    ARREARS_ADVISORY,
    NATIONAL,
    NOW,
    SNAPSHOT_RULE,
    application,
    enrolment,
    reason,
)

R = ReasonCode


def test_not_registered_inferred_from_snapshot_says_so() -> None:
    verdict = decide(application(), None, SNAPSHOT_RULE, NOW, snapshot_complete=True)
    details = reason(verdict, R.NOT_REGISTERED)
    assert details["inferred_from"] == "complete_snapshot"
    assert "PWBD" in details["message"]
    assert "snapshot" in details["message"]
    assert verdict.enrolment_as_of is None


def test_unknown_enrolment_details() -> None:
    verdict = decide(application(), None, SNAPSHOT_RULE, NOW, snapshot_complete=False)
    assert reason(verdict, R.ENROLMENT_UNKNOWN) == {
        "message": "No BPJS Ketenagakerjaan enrolment record for this NIB yet; decision deferred",
        "effect": "pending",
        "absent_record": "NOT_REGISTERED",
        "snapshot_complete": False,
    }


def test_region_demotion_keeps_the_reason_as_advisory() -> None:
    verdict = decide(application(), enrolment(arrears_months=4), ARREARS_ADVISORY, NOW)
    assert verdict.outcome is Outcome.CLEARED
    assert reason(verdict, R.ARREARS)["effect"] == "advisory"


@pytest.mark.parametrize(("tolerance", "months", "blocked"), [(0, 0, False), (0, 1, True)])
def test_zero_tolerance(tolerance: int, months: int, blocked: bool) -> None:
    policy = NATIONAL.model_copy(update={"arrears_tolerance_months": tolerance})
    verdict = decide(application(), enrolment(arrears_months=months), policy, NOW)
    assert (verdict.outcome is Outcome.BLOCKED) is blocked


def test_staleness_uses_the_policy_limit() -> None:
    strict = NATIONAL.model_copy(update={"max_enrolment_age_days": 7})
    record = enrolment(as_of=NOW - timedelta(days=8))
    assert decide(application(), record, NATIONAL, NOW).outcome is Outcome.CLEARED
    assert decide(application(), record, strict, NOW).outcome is Outcome.PENDING


def test_segment_caps_are_policy_data() -> None:
    uncapped = NATIONAL.model_copy(update={"segment_program_caps": {}})
    verdict = decide(
        application(scale=Scale.BESAR),
        enrolment(segment=Segment.JAKON, programs=frozenset({Program.JKK, Program.JKM})),
        uncapped,
        NOW,
    )
    assert reason(verdict, R.PROGRAMS_MISSING)["missing"] == ["JHT", "JP"]
