"""The messages of the AsyncAPI document: each event type with its headers, payload, key and an
example, and the dead letter."""

from __future__ import annotations

from typing import Final

from ptsp_gate.contract.cloudevents import JSON_CONTENT_TYPE
from ptsp_gate.contract.events import (
    CE_TYPE_APPLICATION,
    CE_TYPE_DECISION,
    CE_TYPE_ENROLMENT,
    CE_TYPE_RENEWAL,
)
from ptsp_gate.contract.export.components import kafka_binding, schema_ref
from ptsp_gate.contract.export.examples import message_example
from ptsp_gate.contract.export.json_schema import (
    PAYLOAD_BY_CE_TYPE,
    JsonObject,
    payload_description,
)

# The message of each event type, and the schema component of its CloudEvents headers.
EVENT_COMPONENTS: Final = {
    CE_TYPE_APPLICATION: ("PermitApplicationSubmitted", "PermitApplicationSubmittedHeaders"),
    CE_TYPE_RENEWAL: ("PermitRenewalSubmitted", "PermitRenewalSubmittedHeaders"),
    CE_TYPE_ENROLMENT: ("EmployerEnrolmentState", "EmployerEnrolmentHeaders"),
    CE_TYPE_DECISION: ("ComplianceDecisionIssued", "ComplianceDecisionHeaders"),
}


def _event_message(ce_type: str, *, title: str, summary: str, rules: str) -> JsonObject:
    """The message of an event type; `rules` adds to its payload's description."""
    name, headers = EVENT_COMPONENTS[ce_type]
    payload = PAYLOAD_BY_CE_TYPE[ce_type]
    key = "EmployerNibKey" if payload.inbound else "DecisionKey"
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "description": f"{payload_description(payload)} {rules}",
        "contentType": JSON_CONTENT_TYPE,
        "headers": schema_ref(headers),
        "payload": schema_ref(payload.model.__name__),
        "bindings": kafka_binding(schema_ref(key)),
        "examples": [message_example(ce_type)],
    }


def messages() -> JsonObject:
    """The document's `components/messages`, by name."""
    events = [
        _event_message(
            CE_TYPE_APPLICATION,
            title="Permit application submitted",
            summary="An employer applied for a new business permit at the PTSP / OSS.",
            rules="The payload's `action` must be NEW (otherwise the record is dead-lettered "
            "with TYPE_ACTION_MISMATCH).",
        ),
        _event_message(
            CE_TYPE_RENEWAL,
            title="Permit renewal submitted",
            summary="An employer applied to renew a business permit at the PTSP / OSS.",
            rules="The payload's `action` must be RENEWAL (otherwise the record is "
            "dead-lettered with TYPE_ACTION_MISMATCH) and `permit.previous_permit_number` is "
            "required.",
        ),
        _event_message(
            CE_TYPE_ENROLMENT,
            title="Employer enrolment state",
            summary="The whole current BPJS Ketenagakerjaan enrolment state of one employer.",
            rules="Applied only when `version` is newer than the stored version for the NIB: "
            "older or equal versions never overwrite newer state, so replays and reordering are "
            "harmless.",
        ),
        _event_message(
            CE_TYPE_DECISION,
            title="Compliance decision",
            summary="ptsp-gate's answer to one permit application or renewal.",
            rules="Outcomes: CLEARED (may proceed), BLOCKED (must not be issued), PENDING "
            "(cannot be decided yet), REJECTED (the input event was invalid; the PTSP must fix "
            "and resend). A re-decision after an enrolment change names the decision it "
            "replaces in `supersedes`. `decision_id` is deterministic, so a replay yields the "
            "same id.",
        ),
    ]
    return {
        **{message["name"]: message for message in events},
        "DeadLetter": {
            "name": "DeadLetter",
            "title": "Dead-lettered input record",
            "summary": "An input record ptsp-gate could not process, with the reason.",
            "description": (
                "Bad input never stops a partition: the original record (value, key and "
                "headers unchanged) is published to `<input topic>.dlq` with ptsp-gate-* "
                "headers naming the error, and the input offset is committed. For a permit "
                "application whose application_id can still be read, a REJECTED decision is "
                "emitted as well."
            ),
            "contentType": "application/octet-stream",
            "headers": schema_ref("DeadLetterHeaders"),
            "payload": schema_ref("DeadLetterPayload"),
            "bindings": kafka_binding(schema_ref("DeadLetterKey")),
        },
    }
