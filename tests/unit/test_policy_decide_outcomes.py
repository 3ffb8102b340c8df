"""Table-driven tests of `decide` (DESIGN §4): every reason code, every outcome, every boundary,
and the programmes each scale and segment must hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from ptsp_gate.contract.events import (
    Action,
    ComplianceDecision,
    EnrolmentStatus,
    Outcome,
    PdsFlag,
    Program,
    ReasonCode,
    Scale,
    Segment,
)
from ptsp_gate.policy import Policy, decide, decision_id
from tests.policy_builders import (
    ALL_FOUR,
    ARREARS_ADVISORY,
    NATIONAL,
    NIB,
    NOTHING_BLOCKS,
    NOW,
    NPWP15,
    NPWP16,
    OTHER_NPWP,
    SNAPSHOT_RULE,
    application,
    codes,
    enrolment,
    reason,
)

R = ReasonCode
WAIT_FOR_RECORD = NATIONAL


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    outcome: Outcome
    codes: tuple[ReasonCode, ...]
    record: dict[str, Any] | None = field(default_factory=dict)  # None: no enrolment record
    app: dict[str, Any] = field(default_factory=dict)
    policy: Policy = NATIONAL
    snapshot_complete: bool = False


BLOCKED, PENDING, CLEARED = Outcome.BLOCKED, Outcome.PENDING, Outcome.CLEARED
NOT_REG = EnrolmentStatus.NOT_REGISTERED
EVERYTHING_WRONG: dict[str, Any] = {
    "npwp": OTHER_NPWP,
    "status": EnrolmentStatus.INACTIVE,
    "arrears_months": 9,
    "programs": frozenset({Program.JKK}),
    "workers_enrolled": 3,
    "pds_flags": frozenset(PdsFlag),
    "sanction_requested": True,
    "as_of": NOW - timedelta(days=400),
}

CASES: dict[str, Case] = {
    "clean record clears": Case(CLEARED, ()),
    "renewal is decided like a new application": Case(CLEARED, (), app={"action": Action.RENEWAL}),
    # --- status
    "not registered blocks": Case(BLOCKED, (R.NOT_REGISTERED,), {"status": NOT_REG}),
    "not registered skips participation checks": Case(
        BLOCKED,
        (R.NOT_REGISTERED,),
        {
            "status": NOT_REG,
            "programs": frozenset(),
            "workers_enrolled": 0,
            "arrears_months": 40,
            "pds_flags": frozenset(PdsFlag),
        },
    ),
    "not registered still reports sanction, identity and staleness": Case(
        BLOCKED,
        (R.NOT_REGISTERED, R.SANCTION_REQUESTED, R.IDENTITY_MISMATCH, R.ENROLMENT_STALE),
        {
            "status": NOT_REG,
            "sanction_requested": True,
            "npwp": OTHER_NPWP,
            "as_of": NOW - timedelta(days=200),
        },
    ),
    "inactive blocks": Case(BLOCKED, (R.EMPLOYER_INACTIVE,), {"status": EnrolmentStatus.INACTIVE}),
    # --- arrears: tolerance 2 means 2 months is fine, 3 is not
    "arrears at tolerance clears": Case(CLEARED, (), {"arrears_months": 2}),
    "arrears above tolerance blocks": Case(BLOCKED, (R.ARREARS,), {"arrears_months": 3}),
    # --- programmes
    "missing JP blocks a large employer": Case(
        BLOCKED, (R.PROGRAMS_MISSING,), {"programs": ALL_FOUR - {Program.JP}}
    ),
    "BPJS PROGRAM flag alone blocks": Case(
        BLOCKED, (R.PROGRAMS_MISSING,), {"pds_flags": frozenset({PdsFlag.PROGRAM})}
    ),
    "computed gap and PROGRAM flag give one reason": Case(
        BLOCKED,
        (R.PROGRAMS_MISSING,),
        {"programs": frozenset({Program.JKK}), "pds_flags": frozenset({PdsFlag.PROGRAM})},
    ),
    "JKP absent never blocks": Case(CLEARED, (), {"programs": ALL_FOUR}),
    "JKP alone does not stand in for the required programmes": Case(
        BLOCKED, (R.PROGRAMS_MISSING,), {"programs": frozenset({Program.JKP})}
    ),
    # --- PDS
    "one worker short blocks": Case(
        BLOCKED, (R.PDS_WORKERS,), {"workers_enrolled": 9}, app={"workers": 10}
    ),
    "all declared workers enrolled clears": Case(
        CLEARED, (), {"workers_enrolled": 10}, app={"workers": 10}
    ),
    "more enrolled than declared clears": Case(
        CLEARED, (), {"workers_enrolled": 12}, app={"workers": 10}
    ),
    "BPJS WORKERS flag blocks despite the counts": Case(
        BLOCKED,
        (R.PDS_WORKERS,),
        {"workers_enrolled": 12, "pds_flags": frozenset({PdsFlag.WORKERS})},
        app={"workers": 10},
    ),
    "BPJS WAGES flag blocks": Case(
        BLOCKED, (R.PDS_WAGES,), {"pds_flags": frozenset({PdsFlag.WAGES})}
    ),
    # --- sanction, identity
    "sanction request blocks an otherwise clean employer": Case(
        BLOCKED, (R.SANCTION_REQUESTED,), {"sanction_requested": True}
    ),
    "15-digit application matches 16-digit record": Case(
        CLEARED, (), {"npwp": NPWP16}, app={"npwp": NPWP15}
    ),
    "16-digit application matches 15-digit record": Case(
        CLEARED, (), {"npwp": NPWP15}, app={"npwp": NPWP16}
    ),
    "different NPWP blocks": Case(
        BLOCKED, (R.IDENTITY_MISMATCH,), {"npwp": OTHER_NPWP}, app={"npwp": NPWP15}
    ),
    # --- staleness: exactly 90 days old is still fresh
    "as_of exactly at the age limit clears": Case(CLEARED, (), {"as_of": NOW - timedelta(days=90)}),
    "as_of one second past the age limit is pending": Case(
        PENDING, (R.ENROLMENT_STALE,), {"as_of": NOW - timedelta(days=90, seconds=1)}
    ),
    "as_of in the future (clock skew) is not stale": Case(
        CLEARED, (), {"as_of": NOW + timedelta(hours=2)}
    ),
    "block outranks stale": Case(
        BLOCKED,
        (R.ARREARS, R.ENROLMENT_STALE),
        {"as_of": NOW - timedelta(days=365), "arrears_months": 5},
    ),
    # --- no record
    "no record: micro without workers clears with advisory": Case(
        CLEARED, (R.NO_EMPLOYEES_DECLARED,), None, app={"scale": Scale.MIKRO, "workers": 0}
    ),
    "no record: micro without workers clears even under the snapshot rule": Case(
        CLEARED,
        (R.NO_EMPLOYEES_DECLARED,),
        None,
        app={"scale": Scale.MIKRO, "workers": 0},
        policy=SNAPSHOT_RULE,
        snapshot_complete=True,
    ),
    "no record: micro with one worker waits": Case(
        PENDING, (R.ENROLMENT_UNKNOWN,), None, app={"scale": Scale.MIKRO, "workers": 1}
    ),
    "no record: small employer without workers waits": Case(
        PENDING, (R.ENROLMENT_UNKNOWN,), None, app={"scale": Scale.KECIL, "workers": 0}
    ),
    "no record: national policy waits even with a complete snapshot": Case(
        PENDING, (R.ENROLMENT_UNKNOWN,), None, policy=WAIT_FOR_RECORD, snapshot_complete=True
    ),
    "no record: snapshot rule waits while the snapshot is incomplete": Case(
        PENDING, (R.ENROLMENT_UNKNOWN,), None, policy=SNAPSHOT_RULE, snapshot_complete=False
    ),
    "no record: snapshot rule blocks once the snapshot is complete": Case(
        BLOCKED, (R.NOT_REGISTERED,), None, policy=SNAPSHOT_RULE, snapshot_complete=True
    ),
    # --- region policies
    "region makes arrears advisory": Case(
        CLEARED, (R.ARREARS,), {"arrears_months": 6}, policy=ARREARS_ADVISORY
    ),
    "advisory arrears do not hide another block": Case(
        BLOCKED,
        (R.ARREARS, R.PDS_WAGES),
        {"arrears_months": 6, "pds_flags": frozenset({PdsFlag.WAGES})},
        policy=ARREARS_ADVISORY,
    ),
    "nothing blocks but stale data still defers": Case(
        PENDING,
        (R.EMPLOYER_INACTIVE, R.ENROLMENT_STALE),
        {"status": EnrolmentStatus.INACTIVE, "as_of": NOW - timedelta(days=120)},
        policy=NOTHING_BLOCKS,
    ),
    # --- everything at once, in enum order
    "every applicable reason is listed in enum order": Case(
        BLOCKED,
        (
            R.EMPLOYER_INACTIVE,
            R.ARREARS,
            R.PROGRAMS_MISSING,
            R.PDS_WORKERS,
            R.PDS_WAGES,
            R.SANCTION_REQUESTED,
            R.IDENTITY_MISMATCH,
            R.ENROLMENT_STALE,
        ),
        EVERYTHING_WRONG,
        app={"npwp": NPWP15, "workers": 50},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decision_table(case: Case) -> None:
    record = None if case.record is None else enrolment(**case.record)
    verdict = decide(
        application(**case.app), record, case.policy, NOW, snapshot_complete=case.snapshot_complete
    )
    assert verdict.outcome is case.outcome
    assert codes(verdict) == case.codes
    assert verdict.policy_version == case.policy.version
    assert verdict.enrolment_as_of == (None if record is None else record.as_of)
    effects = {r.details["effect"] for r in verdict.reasons}
    assert ("block" in effects) == (case.outcome is Outcome.BLOCKED)


def test_table_covers_every_decidable_code_and_outcome() -> None:
    seen_codes = {code for case in CASES.values() for code in case.codes}
    assert seen_codes == set(ReasonCode) - {R.INVALID_EVENT, R.OFFICER_OVERRIDE}
    assert {case.outcome for case in CASES.values()} == set(Outcome) - {Outcome.REJECTED}


def test_every_reason_carries_an_effect_and_serialises() -> None:
    verdict = decide(
        application(npwp=NPWP15, workers=50), enrolment(**EVERYTHING_WRONG), NATIONAL, NOW
    )
    for r in verdict.reasons:
        expected = "pending" if r.code is R.ENROLMENT_STALE else "block"
        assert r.details["effect"] == expected
        assert r.message
    decision = ComplianceDecision(
        decision_id=decision_id("ce-1", verdict, 7),
        application_id="OSS-2026-000123",
        nib=NIB,
        action=Action.NEW,
        region_code="7314",
        outcome=verdict.outcome,
        reasons=list(verdict.reasons),
        enrolment_as_of=verdict.enrolment_as_of,
        policy_version=verdict.policy_version,
        decided_at=NOW,
    )
    assert ComplianceDecision.model_validate_json(decision.model_dump_json()) == decision


# --- programmes by scale and segment -----------------------------------------------------------

J = Program
PROGRAMME_CASES = [
    # scale, segment, enrolled programmes, expected missing
    (Scale.BESAR, Segment.PU, {J.JKK, J.JKM, J.JHT, J.JP}, []),
    (Scale.BESAR, Segment.PU, {J.JKK, J.JKM, J.JHT}, ["JP"]),
    (Scale.BESAR, Segment.PU, {J.JKK, J.JKM, J.JKP}, ["JHT", "JP"]),
    (Scale.MENENGAH, Segment.PU, {J.JKK, J.JKM, J.JHT, J.JP}, []),
    (Scale.MENENGAH, Segment.PU, {J.JKK, J.JHT, J.JP}, ["JKM"]),
    (Scale.KECIL, Segment.PU, {J.JKK, J.JKM, J.JHT}, []),
    (Scale.KECIL, Segment.PU, {J.JKK, J.JKM}, ["JHT"]),
    (Scale.MIKRO, Segment.PU, {J.JKK, J.JKM}, []),
    (Scale.MIKRO, Segment.PU, {J.JKK}, ["JKM"]),
    (Scale.MIKRO, Segment.PU, set(), ["JKK", "JKM"]),
    # construction and non-wage-earner segments are capped at JKK + JKM whatever the scale
    (Scale.BESAR, Segment.JAKON, {J.JKK, J.JKM}, []),
    (Scale.BESAR, Segment.JAKON, {J.JKK}, ["JKM"]),
    (Scale.MENENGAH, Segment.BPU, {J.JKK, J.JKM}, []),
    (Scale.KECIL, Segment.BPU, {J.JKM}, ["JKK"]),
    (Scale.MIKRO, Segment.JAKON, {J.JKK, J.JKM}, []),
]


@pytest.mark.parametrize(("scale", "segment", "enrolled", "missing"), PROGRAMME_CASES)
def test_programmes_required_by_scale_and_segment(
    scale: Scale, segment: Segment, enrolled: set[Program], missing: list[str]
) -> None:
    verdict = decide(
        application(scale=scale),
        enrolment(segment=segment, programs=frozenset(enrolled)),
        NATIONAL,
        NOW,
    )
    if not missing:
        assert verdict.outcome is Outcome.CLEARED
        assert codes(verdict) == ()
        return
    assert verdict.outcome is Outcome.BLOCKED
    assert codes(verdict) == (R.PROGRAMS_MISSING,)
    details = reason(verdict, R.PROGRAMS_MISSING)
    assert details["missing"] == missing
    assert "JKP" not in details["required"]
    assert details["bpjs_flagged"] is False
    assert ", ".join(missing) in details["message"]
