"""A demo PTSP and BPJS TK feed that exercises every outcome and reason code.

Used by `ptsp-gate dev` to show the system working, and by the end-to-end tests as their fixture.
NIBs and NPWPs are synthetic (NPWPs carry valid check digits).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from stdnum import luhn

from ptsp_gate.contract.cloudevents import Headers, binary_headers
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, CE_TYPE_ENROLMENT, CE_TYPE_RENEWAL

PTSP_SOURCE = "urn:ptsp:7314:dpmptsp"
BPJS_SOURCE = "urn:bpjstk:employer-state"


def npwp15(serial: int) -> str:
    """A legacy 15-digit NPWP with a valid check digit: 01 + 6-digit serial + check + 000000."""
    head = f"01{serial:06d}"
    return head + luhn.calc_check_digit(head) + "000000"


def nib(n: int) -> str:
    return f"91200{n:08d}"


@dataclass(frozen=True)
class Scenario:
    name: str
    expect_outcome: str
    expect_codes: tuple[str, ...]
    application: dict[str, Any]
    enrolment: dict[str, Any] | None = None
    ce_type: str = CE_TYPE_APPLICATION
    raw_override: bytes | None = field(default=None)


def application(
    n: int,
    *,
    scale: str = "MIKRO",
    workers: int = 3,
    action: str = "NEW",
    npwp: str | None = None,
    region: str = "7314",
    now: datetime,
) -> dict[str, Any]:
    permit: dict[str, Any] = {
        "type": "SERTIFIKAT_STANDAR",
        "kbli": "47111",
        "risk_level": "MENENGAH_RENDAH",
    }
    if action == "RENEWAL":
        permit = {
            **permit,
            "type": "IZIN",
            "risk_level": "TINGGI",
            "previous_permit_number": f"IZN-{n:06d}",
        }
    return {
        "application_id": f"APP-{region}-{n:06d}",
        "action": action,
        "submitted_at": now.isoformat(),
        "region_code": region,
        "permit": permit,
        "employer": {
            "nib": nib(n),
            "npwp": npwp or npwp15(n),
            "name": f"CV Contoh Usaha {n}",
            "scale": scale,
            "workers_declared": workers,
        },
    }


def enrolment(
    n: int,
    *,
    status: str = "ACTIVE",
    programs: tuple[str, ...] = ("JKK", "JKM"),
    enrolled: int = 3,
    arrears: int = 0,
    pds: tuple[str, ...] = (),
    sanction: bool = False,
    age_days: int = 3,
    version: int = 1,
    now: datetime,
) -> dict[str, Any]:
    return {
        "nib": nib(n),
        "npwp": npwp15(n),
        "npp": f"NPP{n:08d}",
        "status": status,
        "segment": "PU",
        "programs": list(programs),
        "workers_enrolled": enrolled,
        "arrears_months": arrears,
        "pds_flags": list(pds),
        "sanction_requested": sanction,
        "as_of": (now - timedelta(days=age_days)).isoformat(),
        "version": version,
    }


def _npwp_of_another(_n: int, base: int) -> str:
    return npwp15(base + 900)


def _npwp_with_wrong_check_digit(n: int, _base: int) -> str:
    right = npwp15(n)
    return right[:8] + str((int(right[8]) + 1) % 10) + "000000"


class _Case(NamedTuple):
    name: str
    # The outcome, then the reason codes in order.
    expected: str
    # application()'s arguments; a callable value is called with the employer's number and the
    # feed's base number.
    application: dict[str, Any]
    # enrolment()'s arguments; None: BPJS TK has no record of the employer.
    enrolment: dict[str, Any] | None


_NO_JP = ("JKK", "JKM", "JHT")

# The feed, one employer each, numbered from the feed's base in this order.
_CASES = (
    _Case("active micro employer", "CLEARED", {}, {}),
    _Case(
        "renewal, active small employer",
        "CLEARED",
        dict(scale="KECIL", workers=8, action="RENEWAL"),
        dict(programs=(*_NO_JP, "JKP"), enrolled=8),
    ),
    _Case("micro, no employees, no record", "CLEARED NO_EMPLOYEES_DECLARED", dict(workers=0), None),
    _Case(
        "not registered (PWBD)",
        "BLOCKED NOT_REGISTERED",
        {},
        dict(status="NOT_REGISTERED", programs=(), enrolled=0),
    ),
    _Case("inactive employer", "BLOCKED EMPLOYER_INACTIVE", {}, dict(status="INACTIVE")),
    _Case("three months in arrears", "BLOCKED ARREARS", {}, dict(arrears=3)),
    _Case(
        "large employer without JP",
        "BLOCKED PROGRAMS_MISSING",
        dict(scale="BESAR", workers=120),
        dict(programs=_NO_JP, enrolled=120),
    ),
    _Case(
        "fewer workers enrolled than declared",
        "BLOCKED PDS_WORKERS",
        dict(scale="KECIL", workers=20),
        dict(programs=_NO_JP, enrolled=12),
    ),
    _Case("wages under-reported", "BLOCKED PDS_WAGES", {}, dict(pds=("WAGES",))),
    _Case("BPJS TK requested the sanction", "BLOCKED SANCTION_REQUESTED", {}, dict(sanction=True)),
    _Case(
        "NPWP differs from BPJS TK's record",
        "BLOCKED IDENTITY_MISMATCH",
        dict(npwp=_npwp_of_another),
        {},
    ),
    _Case(
        "medium employer, every problem at once",
        "BLOCKED EMPLOYER_INACTIVE ARREARS PROGRAMS_MISSING PDS_WORKERS PDS_WAGES"
        " SANCTION_REQUESTED",
        dict(scale="MENENGAH", workers=40),
        dict(
            status="INACTIVE",
            programs=("JKK",),
            enrolled=10,
            arrears=7,
            pds=("WAGES",),
            sanction=True,
        ),
    ),
    _Case(
        "no enrolment record yet", "PENDING ENROLMENT_UNKNOWN", dict(scale="KECIL", workers=5), None
    ),
    _Case("enrolment data 200 days old", "PENDING ENROLMENT_STALE", {}, dict(age_days=200)),
    _Case(
        "NPWP check digit wrong",
        "REJECTED INVALID_EVENT",
        dict(npwp=_npwp_with_wrong_check_digit),
        None,
    ),
)


def scenarios(now: datetime | None = None, base: int = 1, version: int = 1) -> list[Scenario]:
    """The feed for employers ``base``, ``base`` + 1, ...; enrolment records at ``version``."""
    now = now or datetime.now(UTC)
    out = []
    for n, case in enumerate(_CASES, start=base):
        args = {k: v(n, base) if callable(v) else v for k, v in case.application.items()}
        data = application(n, now=now, **args)
        outcome, *codes = case.expected.split()
        out.append(
            Scenario(
                case.name,
                outcome,
                tuple(codes),
                data,
                None
                if case.enrolment is None
                else enrolment(n, now=now, version=version, **case.enrolment),
                ce_type=CE_TYPE_RENEWAL if data["action"] == "RENEWAL" else CE_TYPE_APPLICATION,
            )
        )
    return out


def encode(
    ce_type: str,
    source: str,
    data: dict[str, Any],
    event_id: str | None = None,
    time: datetime | None = None,
) -> tuple[Headers, bytes]:
    headers = binary_headers(
        event_id=event_id or str(uuid.uuid4()),
        source=source,
        ce_type=ce_type,
        time=time or datetime.now(UTC),
    )
    return headers, json.dumps(data).encode()


def enrolment_record(
    data: dict[str, Any], event_id: str | None = None
) -> tuple[bytes, Headers, bytes]:
    headers, value = encode(CE_TYPE_ENROLMENT, BPJS_SOURCE, data, event_id)
    return data["nib"].encode(), headers, value


def application_record(
    data: dict[str, Any], ce_type: str | None = None, event_id: str | None = None
) -> tuple[bytes, Headers, bytes]:
    ce_type = ce_type or (
        CE_TYPE_RENEWAL if data.get("action") == "RENEWAL" else CE_TYPE_APPLICATION
    )
    headers, value = encode(ce_type, PTSP_SOURCE, data, event_id)
    nib_value = data.get("employer", {}).get("nib", "")
    return str(nib_value).encode(), headers, value
