"""One employer's application, enrolment record and policies, and policy files on disk.

The defaults describe a large employer with a clean record under the national policy, so a test
names only the fields its case is about.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ptsp_gate.contract import events
from ptsp_gate.policy import Policy, Verdict
from ptsp_gate.policy.codes import BLOCK_TYPE_CODES

REPO_POLICIES = Path(__file__).resolve().parents[1] / "policies"

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NIB = "8120001234567"
NPWP15 = "013121660091000"  # legacy 15-digit form, valid Luhn over its first 9 digits
NPWP16 = "0" + NPWP15  # the same taxpayer in the PMK 112/2022 16-digit form
OTHER_NPWP = "016090524017000"
ALL_FOUR = frozenset(
    {events.Program.JKK, events.Program.JKM, events.Program.JHT, events.Program.JP}
)

NATIONAL = Policy(version="national-test")
SNAPSHOT_RULE = NATIONAL.model_copy(
    update={"version": "national-test+7314:1", "absent_record": "NOT_REGISTERED"}
)
ARREARS_ADVISORY = NATIONAL.model_copy(
    update={
        "version": "national-test+3201:1",
        "blocking_codes": BLOCK_TYPE_CODES - {events.ReasonCode.ARREARS},
    }
)
NOTHING_BLOCKS = NATIONAL.model_copy(
    update={"version": "national-test+9471:1", "blocking_codes": frozenset()}
)


def application(
    *,
    scale: events.Scale = events.Scale.BESAR,
    workers: int = 10,
    npwp: str = NPWP15,
    action: events.Action = events.Action.NEW,
    nib: str = NIB,
    application_id: str = "OSS-2026-000123",
    submitted_at: datetime = NOW - timedelta(minutes=5),
    region_code: str = "7314",
    permit_type: events.PermitType = events.PermitType.IZIN,
    kbli: str = "47111",
    risk_level: events.RiskLevel = events.RiskLevel.MENENGAH_RENDAH,
) -> events.PermitApplication:
    return events.PermitApplication(
        application_id=application_id,
        action=action,
        submitted_at=submitted_at,
        region_code=region_code,
        permit=events.Permit(
            type=permit_type,
            kbli=kbli,
            risk_level=risk_level,
            previous_permit_number="IZ-2021-77" if action is events.Action.RENEWAL else None,
        ),
        employer=events.Employer(
            nib=nib, npwp=npwp, name="PT Contoh Sejahtera", scale=scale, workers_declared=workers
        ),
    )


def enrolment(**changes: Any) -> events.EnrolmentState:
    """The employer's record: active, all four programmes, nothing owed, a day old."""
    fields: dict[str, Any] = {
        "nib": NIB,
        "npwp": NPWP15,
        "npp": "NPP-19000123",
        "status": events.EnrolmentStatus.ACTIVE,
        "segment": events.Segment.PU,
        "programs": ALL_FOUR,
        "workers_enrolled": 10,
        "arrears_months": 0,
        "pds_flags": frozenset(),
        "sanction_requested": False,
        "as_of": NOW - timedelta(days=1),
        "version": 7,
    }
    fields.update(changes)
    return events.EnrolmentState(**fields)


def codes(verdict: Verdict) -> tuple[events.ReasonCode, ...]:
    return tuple(reason.code for reason in verdict.reasons)


def reason(verdict: Verdict, code: events.ReasonCode) -> dict[str, Any]:
    """The one reason with this code: its message and details side by side."""
    (found,) = [r for r in verdict.reasons if r.code is code]
    return {"message": found.message, **found.details}


def write_policy_file(root: Path, relative: str, text: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
