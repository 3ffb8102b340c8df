"""A demo PTSP and BPJS TK feed that exercises every outcome and reason code.

Used by `ptsp-gate dev` to show the system working, and by the end-to-end tests as their fixture.
NIBs and NPWPs are synthetic (NPWPs carry valid check digits).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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


def scenarios(now: datetime | None = None, base: int = 1, version: int = 1) -> list[Scenario]:
    now = now or datetime.now(UTC)
    v = version
    b = base
    return [
        Scenario(
            "active micro employer",
            "CLEARED",
            (),
            application(b, now=now),
            enrolment(b, now=now, version=v),
        ),
        Scenario(
            "renewal, active small employer",
            "CLEARED",
            (),
            application(b + 1, scale="KECIL", workers=8, action="RENEWAL", now=now),
            enrolment(b + 1, programs=("JKK", "JKM", "JHT", "JKP"), enrolled=8, now=now, version=v),
            ce_type=CE_TYPE_RENEWAL,
        ),
        Scenario(
            "micro, no employees, no record",
            "CLEARED",
            ("NO_EMPLOYEES_DECLARED",),
            application(b + 2, workers=0, now=now),
        ),
        Scenario(
            "not registered (PWBD)",
            "BLOCKED",
            ("NOT_REGISTERED",),
            application(b + 3, now=now),
            enrolment(b + 3, status="NOT_REGISTERED", programs=(), enrolled=0, now=now, version=v),
        ),
        Scenario(
            "inactive employer",
            "BLOCKED",
            ("EMPLOYER_INACTIVE",),
            application(b + 4, now=now),
            enrolment(b + 4, status="INACTIVE", now=now, version=v),
        ),
        Scenario(
            "three months in arrears",
            "BLOCKED",
            ("ARREARS",),
            application(b + 5, now=now),
            enrolment(b + 5, arrears=3, now=now, version=v),
        ),
        Scenario(
            "large employer without JP",
            "BLOCKED",
            ("PROGRAMS_MISSING",),
            application(b + 6, scale="BESAR", workers=120, now=now),
            enrolment(b + 6, programs=("JKK", "JKM", "JHT"), enrolled=120, now=now, version=v),
        ),
        Scenario(
            "fewer workers enrolled than declared",
            "BLOCKED",
            ("PDS_WORKERS",),
            application(b + 7, scale="KECIL", workers=20, now=now),
            enrolment(b + 7, programs=("JKK", "JKM", "JHT"), enrolled=12, now=now, version=v),
        ),
        Scenario(
            "wages under-reported",
            "BLOCKED",
            ("PDS_WAGES",),
            application(b + 8, now=now),
            enrolment(b + 8, pds=("WAGES",), now=now, version=v),
        ),
        Scenario(
            "BPJS TK requested the sanction",
            "BLOCKED",
            ("SANCTION_REQUESTED",),
            application(b + 9, now=now),
            enrolment(b + 9, sanction=True, now=now, version=v),
        ),
        Scenario(
            "NPWP differs from BPJS TK's record",
            "BLOCKED",
            ("IDENTITY_MISMATCH",),
            application(b + 10, npwp=npwp15(b + 900), now=now),
            enrolment(b + 10, now=now, version=v),
        ),
        Scenario(
            "medium employer, every problem at once",
            "BLOCKED",
            (
                "EMPLOYER_INACTIVE",
                "ARREARS",
                "PROGRAMS_MISSING",
                "PDS_WORKERS",
                "PDS_WAGES",
                "SANCTION_REQUESTED",
            ),
            application(b + 11, scale="MENENGAH", workers=40, now=now),
            enrolment(
                b + 11,
                status="INACTIVE",
                programs=("JKK",),
                enrolled=10,
                arrears=7,
                pds=("WAGES",),
                sanction=True,
                now=now,
                version=v,
            ),
        ),
        Scenario(
            "no enrolment record yet",
            "PENDING",
            ("ENROLMENT_UNKNOWN",),
            application(b + 12, scale="KECIL", workers=5, now=now),
        ),
        Scenario(
            "enrolment data 200 days old",
            "PENDING",
            ("ENROLMENT_STALE",),
            application(b + 13, now=now),
            enrolment(b + 13, age_days=200, now=now, version=v),
        ),
        Scenario(
            "NPWP check digit wrong",
            "REJECTED",
            ("INVALID_EVENT",),
            {
                **application(b + 14, now=now),
                "employer": {
                    **application(b + 14, now=now)["employer"],
                    "npwp": npwp15(b + 14)[:8] + str((int(npwp15(b + 14)[8]) + 1) % 10) + "000000",
                },
            },
        ),
    ]


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
