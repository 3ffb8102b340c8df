"""What each reason of `decide` says under the national policy, its message and details; the calls
`decide` refuses; and the verdict for an event too invalid to decide."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ptsp_gate.contract.events import EnrolmentStatus, Outcome, PdsFlag, Program, ReasonCode, Scale
from ptsp_gate.policy import decide, rejected
from tests.policy_builders import (
    NATIONAL,
    NOW,
    NPWP15,
    NPWP16,
    OTHER_NPWP,
    application,
    codes,
    enrolment,
    reason,
)

R = ReasonCode


# --- details and messages ----------------------------------------------------------------------


def test_not_registered_record_details() -> None:
    verdict = decide(application(), enrolment(status=EnrolmentStatus.NOT_REGISTERED), NATIONAL, NOW)
    details = reason(verdict, R.NOT_REGISTERED)
    assert details["message"] == "Employer is not registered with BPJS Ketenagakerjaan (PWBD)"
    assert details["effect"] == "block"
    assert details["status"] == "NOT_REGISTERED"


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


def test_bpjs_program_flag_is_noted_in_the_single_reason() -> None:
    verdict = decide(
        application(),
        enrolment(programs=frozenset({Program.JKK}), pds_flags=frozenset({PdsFlag.PROGRAM})),
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


def test_staleness_compares_instants_across_time_zones() -> None:
    wib = datetime(2026, 3, 2, 16, 30, tzinfo=ZoneInfo("Asia/Jakarta"))
    record = enrolment(as_of=NOW - timedelta(days=90))
    assert wib == NOW
    assert decide(application(), record, NATIONAL, wib).outcome is Outcome.CLEARED


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
