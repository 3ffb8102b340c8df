"""Table-driven tests of `decide` (DESIGN §4): every reason code, every outcome, every boundary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

import pytest

from ptsp_gate.contract.events import (
    Action,
    ComplianceDecision,
    Employer,
    EnrolmentState,
    EnrolmentStatus,
    Outcome,
    PdsFlag,
    Permit,
    PermitApplication,
    PermitType,
    Program,
    Reason,
    ReasonCode,
    RiskLevel,
    Scale,
    Segment,
)
from ptsp_gate.policy import Policy, Verdict, decide, decision_id, rejected
from ptsp_gate.policy.codes import BLOCK_TYPE_CODES

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NIB = "8120001234567"
NPWP15 = "013121660091000"  # legacy 15-digit form, valid Luhn over its first 9 digits
NPWP16 = "0" + NPWP15  # the same taxpayer in the PMK 112/2022 16-digit form
OTHER_NPWP = "016090524017000"
ALL_FOUR = frozenset({Program.JKK, Program.JKM, Program.JHT, Program.JP})
R = ReasonCode

NATIONAL = Policy(version="national-test")
WAIT_FOR_RECORD = NATIONAL
SNAPSHOT_RULE = NATIONAL.model_copy(
    update={"version": "national-test+7314:1", "absent_record": "NOT_REGISTERED"}
)
ARREARS_ADVISORY = NATIONAL.model_copy(
    update={"version": "national-test+3201:1", "blocking_codes": BLOCK_TYPE_CODES - {R.ARREARS}}
)
NOTHING_BLOCKS = NATIONAL.model_copy(
    update={"version": "national-test+9471:1", "blocking_codes": frozenset()}
)


def application(
    *,
    scale: Scale = Scale.BESAR,
    workers: int = 10,
    npwp: str = NPWP15,
    action: Action = Action.NEW,
) -> PermitApplication:
    return PermitApplication(
        application_id="OSS-2026-000123",
        action=action,
        submitted_at=NOW - timedelta(minutes=5),
        region_code="7314",
        permit=Permit(
            type=PermitType.IZIN,
            kbli="47111",
            risk_level=RiskLevel.MENENGAH_RENDAH,
            previous_permit_number="IZ-2021-77" if action is Action.RENEWAL else None,
        ),
        employer=Employer(
            nib=NIB, npwp=npwp, name="PT Contoh Sejahtera", scale=scale, workers_declared=workers
        ),
    )


def enrolment(**changes: Any) -> EnrolmentState:
    fields: dict[str, Any] = {
        "nib": NIB,
        "npwp": NPWP15,
        "npp": "NPP-19000123",
        "status": EnrolmentStatus.ACTIVE,
        "segment": Segment.PU,
        "programs": ALL_FOUR,
        "workers_enrolled": 10,
        "arrears_months": 0,
        "pds_flags": frozenset(),
        "sanction_requested": False,
        "as_of": NOW - timedelta(days=1),
        "version": 7,
    }
    fields.update(changes)
    return EnrolmentState(**fields)


def codes(verdict: Verdict) -> tuple[ReasonCode, ...]:
    return tuple(reason.code for reason in verdict.reasons)


def reason(verdict: Verdict, code: ReasonCode) -> dict[str, Any]:
    (found,) = [r for r in verdict.reasons if r.code is code]
    return {"message": found.message, **found.details}


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
    assert seen_codes == set(ReasonCode) - {R.INVALID_EVENT}
    assert {case.outcome for case in CASES.values()} == set(Outcome) - {Outcome.REJECTED}


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


def test_segment_caps_are_policy_data() -> None:
    uncapped = NATIONAL.model_copy(update={"segment_program_caps": {}})
    verdict = decide(
        application(scale=Scale.BESAR),
        enrolment(segment=Segment.JAKON, programs=frozenset({J.JKK, J.JKM})),
        uncapped,
        NOW,
    )
    assert reason(verdict, R.PROGRAMS_MISSING)["missing"] == ["JHT", "JP"]


# --- details and messages ----------------------------------------------------------------------


def test_not_registered_record_details() -> None:
    verdict = decide(application(), enrolment(status=EnrolmentStatus.NOT_REGISTERED), NATIONAL, NOW)
    details = reason(verdict, R.NOT_REGISTERED)
    assert details["message"] == "Employer is not registered with BPJS Ketenagakerjaan (PWBD)"
    assert details["effect"] == "block"
    assert details["status"] == "NOT_REGISTERED"


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


def test_no_employees_declared_is_advisory() -> None:
    verdict = decide(application(scale=Scale.MIKRO, workers=0), None, NATIONAL, NOW)
    details = reason(verdict, R.NO_EMPLOYEES_DECLARED)
    assert details["effect"] == "advisory"
    assert details["workers_declared"] == 0


def test_inactive_message() -> None:
    verdict = decide(application(), enrolment(status=EnrolmentStatus.INACTIVE), NATIONAL, NOW)
    assert "nonaktif" in reason(verdict, R.EMPLOYER_INACTIVE)["message"]


def test_arrears_details_and_message() -> None:
    verdict = decide(application(), enrolment(arrears_months=3), NATIONAL, NOW)
    assert reason(verdict, R.ARREARS) == {
        "message": "Contributions in arrears for 3 months (tunggakan iuran); tolerance is 2",
        "effect": "block",
        "months": 3,
        "tolerance": 2,
    }


@pytest.mark.parametrize(("tolerance", "months", "blocked"), [(0, 0, False), (0, 1, True)])
def test_zero_tolerance(tolerance: int, months: int, blocked: bool) -> None:
    policy = NATIONAL.model_copy(update={"arrears_tolerance_months": tolerance})
    verdict = decide(application(), enrolment(arrears_months=months), policy, NOW)
    assert (verdict.outcome is Outcome.BLOCKED) is blocked


def test_bpjs_program_flag_is_noted_in_the_single_reason() -> None:
    verdict = decide(
        application(),
        enrolment(programs=frozenset({J.JKK}), pds_flags=frozenset({PdsFlag.PROGRAM})),
        NATIONAL,
        NOW,
    )
    assert codes(verdict) == (R.PROGRAMS_MISSING,)
    details = reason(verdict, R.PROGRAMS_MISSING)
    assert details["bpjs_flagged"] is True
    assert details["missing"] == ["JHT", "JKM", "JP"]
    assert details["required"] == ["JHT", "JKK", "JKM", "JP"]
    assert "BPJS Ketenagakerjaan reports" in details["message"]


def test_pds_workers_details() -> None:
    verdict = decide(
        application(workers=10),
        enrolment(workers_enrolled=7, pds_flags=frozenset({PdsFlag.WORKERS})),
        NATIONAL,
        NOW,
    )
    details = reason(verdict, R.PDS_WORKERS)
    assert (details["declared"], details["enrolled"], details["flagged"]) == (10, 7, True)
    assert "7 of 10" in details["message"]
    assert "PDS tenaga kerja" in details["message"]


def test_pds_wages_and_sanction_messages() -> None:
    verdict = decide(
        application(),
        enrolment(pds_flags=frozenset({PdsFlag.WAGES}), sanction_requested=True),
        NATIONAL,
        NOW,
    )
    assert "PDS upah" in reason(verdict, R.PDS_WAGES)["message"]
    assert "TMP" in reason(verdict, R.SANCTION_REQUESTED)["message"]


def test_identity_mismatch_never_shows_full_numbers() -> None:
    verdict = decide(application(npwp=NPWP16), enrolment(npwp=OTHER_NPWP), NATIONAL, NOW)
    details = reason(verdict, R.IDENTITY_MISMATCH)
    assert details["application_npwp"] == "*" * 12 + NPWP16[-4:]
    assert details["enrolment_npwp"] == "*" * 11 + OTHER_NPWP[-4:]
    rendered = json.dumps([r.model_dump(mode="json") for r in verdict.reasons])
    assert NPWP15 not in rendered
    assert OTHER_NPWP not in rendered


def test_stale_details() -> None:
    as_of = NOW - timedelta(days=120, hours=3)
    verdict = decide(application(), enrolment(as_of=as_of), NATIONAL, NOW)
    details = reason(verdict, R.ENROLMENT_STALE)
    assert details["effect"] == "pending"
    assert details["age_days"] == 120
    assert details["max_age_days"] == 90
    assert details["as_of"] == as_of.isoformat()


def test_staleness_uses_the_policy_limit() -> None:
    strict = NATIONAL.model_copy(update={"max_enrolment_age_days": 7})
    record = enrolment(as_of=NOW - timedelta(days=8))
    assert decide(application(), record, NATIONAL, NOW).outcome is Outcome.CLEARED
    assert decide(application(), record, strict, NOW).outcome is Outcome.PENDING


def test_staleness_compares_instants_across_time_zones() -> None:
    wib = datetime(2026, 3, 2, 16, 30, tzinfo=ZoneInfo("Asia/Jakarta"))
    record = enrolment(as_of=NOW - timedelta(days=90))
    assert wib == NOW
    assert decide(application(), record, NATIONAL, wib).outcome is Outcome.CLEARED


def test_region_demotion_keeps_the_reason_as_advisory() -> None:
    verdict = decide(application(), enrolment(arrears_months=4), ARREARS_ADVISORY, NOW)
    assert verdict.outcome is Outcome.CLEARED
    assert reason(verdict, R.ARREARS)["effect"] == "advisory"


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


# --- misuse ------------------------------------------------------------------------------------


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(application(), enrolment(), NATIONAL, datetime(2026, 3, 2, 9, 30))


def test_record_of_another_employer_is_refused() -> None:
    with pytest.raises(ValueError, match="different NIB"):
        decide(application(), enrolment(nib="8120009999999"), NATIONAL, NOW)


# --- rejected ----------------------------------------------------------------------------------


def test_rejected_verdict() -> None:
    problems = [{"loc": ["employer", "nib"], "msg": "String should match pattern"}]
    verdict = rejected("national-test", problems, "Employer NIB is not 13 digits")
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.policy_version == "national-test"
    assert verdict.enrolment_as_of is None
    (only,) = verdict.reasons
    assert only.code is R.INVALID_EVENT
    assert only.message == "Employer NIB is not 13 digits"
    assert only.details == {"errors": problems}


# --- decision ids ------------------------------------------------------------------------------


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
        for code in (R.PDS_WAGES, R.ARREARS)  # given out of order on purpose
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
