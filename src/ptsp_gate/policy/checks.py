"""The individual compliance checks behind `decide`, each returning what it found, if anything.

They only describe; whether a finding blocks, defers or merely advises is the policy's call and is
settled in `decide`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ptsp_gate.contract.events import (
    EnrolmentState,
    EnrolmentStatus,
    PdsFlag,
    PermitApplication,
    ReasonCode,
    Scale,
)
from ptsp_gate.contract.identifiers import canonical_npwp, mask
from ptsp_gate.policy.model import Policy

_PWBD = "Employer is not registered with BPJS Ketenagakerjaan (PWBD)"


@dataclass(frozen=True, slots=True)
class Finding:
    code: ReasonCode
    message: str
    details: dict[str, Any] = field(default_factory=dict)


# Findings that follow from one field of the record and add nothing to it.
_INACTIVE = Finding(
    ReasonCode.EMPLOYER_INACTIVE,
    "Employer's BPJS Ketenagakerjaan participation is inactive (kepesertaan nonaktif)",
    {"status": EnrolmentStatus.INACTIVE.value},
)
_WAGES_UNDERSTATED = Finding(
    ReasonCode.PDS_WAGES,
    "BPJS Ketenagakerjaan reports wages declared below those paid (PDS upah)",
    {"flagged": True},
)
# UU 24/2011 art. 17: only BPJS may ask for the TMP sanction; the region then applies it.
_SANCTION_REQUESTED = Finding(
    ReasonCode.SANCTION_REQUESTED,
    "BPJS Ketenagakerjaan has requested the sanction "
    "'tidak mendapat pelayanan publik tertentu' (TMP)",
    {"requested_by": "BPJS Ketenagakerjaan"},
)


def without_record(
    application: PermitApplication, policy: Policy, *, snapshot_complete: bool
) -> list[Finding]:
    employer = application.employer
    # A micro business run without employees has nobody to enrol, so the absence of a record is
    # expected rather than suspicious; say so instead of waiting for a record that never comes.
    if employer.scale is Scale.MIKRO and employer.workers_declared == 0:
        return [
            Finding(
                ReasonCode.NO_EMPLOYEES_DECLARED,
                "Micro enterprise declares no workers (tanpa tenaga kerja); "
                "no BPJS Ketenagakerjaan record is expected",
                {"scale": employer.scale.value, "workers_declared": 0},
            )
        ]
    # Absence proves non-registration only when the snapshot is known to list every participant
    # of the region; before that, a missing record may just not have arrived yet.
    if policy.absent_record == "NOT_REGISTERED" and snapshot_complete:
        return [
            Finding(
                ReasonCode.NOT_REGISTERED,
                f"{_PWBD}: absent from the region's complete enrolment snapshot",
                {"inferred_from": "complete_snapshot"},
            )
        ]
    return [
        Finding(
            ReasonCode.ENROLMENT_UNKNOWN,
            "No BPJS Ketenagakerjaan enrolment record for this NIB yet; decision deferred",
            {"absent_record": policy.absent_record, "snapshot_complete": snapshot_complete},
        )
    ]


def with_record(
    application: PermitApplication, enrolment: EnrolmentState, policy: Policy, now: datetime
) -> list[Finding]:
    found: list[Finding | None]
    if enrolment.status is EnrolmentStatus.NOT_REGISTERED:
        # Arrears, programmes and PDS describe how someone participates; for a non-participant
        # they would only repeat "not registered" in other words.
        found = [Finding(ReasonCode.NOT_REGISTERED, _PWBD, {"status": enrolment.status.value})]
    else:
        found = [
            _INACTIVE if enrolment.status is EnrolmentStatus.INACTIVE else None,
            _arrears(enrolment, policy),
            _programmes(application, enrolment, policy),
            _pds_workers(application, enrolment),
            _WAGES_UNDERSTATED if PdsFlag.WAGES in enrolment.pds_flags else None,
        ]
    # A sanction request, a foreign NPWP and old data matter whatever the status says.
    found += [
        _SANCTION_REQUESTED if enrolment.sanction_requested else None,
        _identity(application, enrolment),
        _stale(enrolment, policy, now),
    ]
    return [f for f in found if f is not None]


def _arrears(enrolment: EnrolmentState, policy: Policy) -> Finding | None:
    months, tolerance = enrolment.arrears_months, policy.arrears_tolerance_months
    if months <= tolerance:
        return None
    return Finding(
        ReasonCode.ARREARS,
        f"Contributions in arrears for {months} months (tunggakan iuran); tolerance is {tolerance}",
        {"months": months, "tolerance": tolerance},
    )


def _one_fact(computed: str | None, reported: str | None, pds_item: str) -> str:
    # One reason whether we computed the gap, BPJS TK reported it, or both: it is one fact.
    return "; ".join(part for part in (computed, reported) if part) + f" ({pds_item})"


def _programmes(
    application: PermitApplication, enrolment: EnrolmentState, policy: Policy
) -> Finding | None:
    required = policy.required_for(application.employer.scale, enrolment.segment)
    missing = sorted(p.value for p in required - enrolment.programs)
    flagged = PdsFlag.PROGRAM in enrolment.pds_flags
    if not missing and not flagged:
        return None
    return Finding(
        ReasonCode.PROGRAMS_MISSING,
        _one_fact(
            f"Required programmes not enrolled: {', '.join(missing)}" if missing else None,
            "BPJS Ketenagakerjaan reports incomplete programmes" if flagged else None,
            "PDS program",
        ),
        {
            "missing": missing,
            "required": sorted(p.value for p in required),
            "bpjs_flagged": flagged,
        },
    )


def _pds_workers(application: PermitApplication, enrolment: EnrolmentState) -> Finding | None:
    declared, enrolled = application.employer.workers_declared, enrolment.workers_enrolled
    flagged = PdsFlag.WORKERS in enrolment.pds_flags
    if enrolled >= declared and not flagged:
        return None
    return Finding(
        ReasonCode.PDS_WORKERS,
        _one_fact(
            f"Only {enrolled} of {declared} declared workers are enrolled"
            if enrolled < declared
            else None,
            "BPJS Ketenagakerjaan reports workers not enrolled" if flagged else None,
            "PDS tenaga kerja",
        ),
        {"declared": declared, "enrolled": enrolled, "flagged": flagged},
    )


def _identity(application: PermitApplication, enrolment: EnrolmentState) -> Finding | None:
    # PMK 112/2022 turned each 15-digit NPWP into "0" + the same digits; either form may be on
    # file at either side, so only the canonical forms are comparable.
    applied, enrolled = application.employer.npwp, enrolment.npwp
    if canonical_npwp(applied) == canonical_npwp(enrolled):
        return None
    # Decisions are published and stored; full tax numbers do not belong in them.
    return Finding(
        ReasonCode.IDENTITY_MISMATCH,
        "NPWP on the application differs from the BPJS Ketenagakerjaan record for this NIB",
        {"application_npwp": mask(applied), "enrolment_npwp": mask(enrolled)},
    )


def _stale(enrolment: EnrolmentState, policy: Policy, now: datetime) -> Finding | None:
    max_age = policy.max_enrolment_age_days
    if enrolment.as_of >= now - timedelta(days=max_age):
        return None
    age_days = (now - enrolment.as_of).days
    # Old data may hide a change either way, so it defers the decision instead of deciding it.
    return Finding(
        ReasonCode.ENROLMENT_STALE,
        f"Enrolment data is {age_days} days old (as of {enrolment.as_of.date().isoformat()}); "
        f"the limit is {max_age}",
        {"as_of": enrolment.as_of.isoformat(), "age_days": age_days, "max_age_days": max_age},
    )
