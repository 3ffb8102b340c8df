"""Illustrative payloads and messages of the AsyncAPI document. Each payload is validated against
its model when the document is built, and each message's headers are written by the encoder the
gate uses, so an example cannot show what the gate would refuse or never write."""

from __future__ import annotations

import json
from datetime import datetime

from ptsp_gate.contract import events
from ptsp_gate.contract.cloudevents import CE_TRACEPARENT, TRACEPARENT, binary_headers
from ptsp_gate.contract.export.json_schema import PAYLOADS, JsonObject

# The example message of each event type: its name, where it comes from and when.
_MESSAGES = {
    events.CE_TYPE_APPLICATION: (
        "permit-application-new",
        "urn:ptsp:7314:oss-rba",
        "2025-03-04T09:15:00+08:00",
    ),
    events.CE_TYPE_RENEWAL: (
        "permit-application-renewal",
        "urn:ptsp:7314:oss-rba",
        "2025-03-04T09:20:00+08:00",
    ),
    events.CE_TYPE_ENROLMENT: (
        "employer-enrolment",
        "urn:bpjstk:kepesertaan",
        "2025-03-01T00:00:05+07:00",
    ),
    events.CE_TYPE_DECISION: (
        "compliance-decision-blocked",
        "urn:ptsp-gate:permit-checker",
        "2025-03-04T01:15:02.481000+00:00",
    ),
}


def payload_examples() -> dict[str, JsonObject]:
    """One example payload of each event type, by its CloudEvents type."""
    employer = {
        "nib": "9120001234567",
        "npwp": "013000666091000",
        "name": "PT Contoh Sejahtera Abadi",
        "scale": "KECIL",
        "workers_declared": 12,
    }
    new: JsonObject = {
        "application_id": "OSS-7314-2025-000123",
        "action": "NEW",
        "submitted_at": "2025-03-04T09:15:00+08:00",
        "region_code": "7314",
        "permit": {"type": "IZIN", "kbli": "47111", "risk_level": "MENENGAH_RENDAH"},
        "employer": employer,
    }
    renewal: JsonObject = {
        **new,
        "application_id": "OSS-7314-2025-000456",
        "action": "RENEWAL",
        "permit": {**new["permit"], "previous_permit_number": "503/0042/IZIN/DPMPTSP/2020"},
    }
    enrolment: JsonObject = {
        "nib": "9120001234567",
        "npwp": "0013000666091000",
        "npp": "NPP19000123",
        "status": "ACTIVE",
        "segment": "PU",
        "programs": ["JKK", "JKM", "JHT"],
        "workers_enrolled": 12,
        "arrears_months": 4,
        "pds_flags": [],
        "sanction_requested": False,
        "as_of": "2025-03-01T00:00:00+07:00",
        "version": 42,
    }
    decision: JsonObject = {
        "decision_id": "5f0c6c1e-3d5a-5b8e-9a4f-2a61c2a7d9b3",
        "application_id": "OSS-7314-2025-000123",
        "nib": "9120001234567",
        "action": "NEW",
        "region_code": "7314",
        "outcome": "BLOCKED",
        "reasons": [
            {
                "code": "ARREARS",
                "message": "Tunggakan iuran 4 bulan melebihi batas toleransi 2 bulan.",
                "details": {"arrears_months": 4, "tolerance_months": 2},
            }
        ],
        "enrolment_as_of": "2025-03-01T00:00:00+07:00",
        "policy_version": "national-2025.1",
        "decided_at": "2025-03-04T01:15:02.481000+00:00",
        "supersedes": None,
    }
    examples = {
        events.CE_TYPE_APPLICATION: new,
        events.CE_TYPE_RENEWAL: renewal,
        events.CE_TYPE_ENROLMENT: enrolment,
        events.CE_TYPE_DECISION: decision,
    }
    for payload in PAYLOADS:
        for ce_type in payload.ce_types:
            payload.model.model_validate_json(json.dumps(examples[ce_type]))
    return examples


def message_example(ce_type: str) -> JsonObject:
    """The AsyncAPI message example of an event type: its example payload, with headers."""
    name, source, time = _MESSAGES[ce_type]
    payload = payload_examples()[ce_type]
    decision = ce_type == events.CE_TYPE_DECISION
    headers = binary_headers(
        event_id=f"{name}-0001",
        source=source,
        ce_type=ce_type,
        time=datetime.fromisoformat(time),
        subject=payload["application_id"] if decision else None,
        dataschema=events.DECISION_DATASCHEMA if decision else None,
    )
    # A decision continues the application's trace: same trace id, the gate's span id.
    parent = (
        "00-4bf92f3577b34da6a3ce929d0e0e4736-"
        + ("00f067aa0ba902b7" if decision else "53995c3f42cd8ad8")
        + "-01"
    )
    headers.append((TRACEPARENT, parent.encode()))
    if decision:
        headers.append((CE_TRACEPARENT, parent.encode()))
    return {
        "name": name,
        "headers": {header: value.decode() for header, value in headers},
        "payload": payload,
    }
