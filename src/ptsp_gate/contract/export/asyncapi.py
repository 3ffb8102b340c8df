"""The AsyncAPI 3.0.0 document of ptsp-gate's Kafka interface: its channels (the default topics),
operations, messages and schemas."""

from __future__ import annotations

from typing import Final

from pydantic import TypeAdapter

from ptsp_gate.contract.cloudevents import JSON_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from ptsp_gate.contract.export.cloudevent_headers import ce_headers
from ptsp_gate.contract.export.components import (
    KAFKA_BINDING_VERSION,
    add_component,
    lift_definitions,
    message_ref,
    schema_ref,
)
from ptsp_gate.contract.export.dead_letters import dead_letter_components
from ptsp_gate.contract.export.json_schema import PAYLOADS, JsonObject, model_schema
from ptsp_gate.contract.export.messages import EVENT_COMPONENTS, messages
from ptsp_gate.contract.identifiers import Nib
from ptsp_gate.contract.topics import (
    DLQ_SUFFIX,
    TOPIC_APPLICATIONS,
    TOPIC_DECISIONS,
    TOPIC_ENROLMENT,
)

ASYNCAPI_VERSION: Final = "3.0.0"
CONTRACT_VERSION: Final = "1.0.0"


def _schemas() -> JsonObject:
    """The document's `components/schemas`: payloads and what they nest, keys and headers."""
    schemas: JsonObject = {}
    for payload in PAYLOADS:
        add_component(
            schemas, payload.model.__name__, lift_definitions(model_schema(payload), schemas)
        )
        for ce_type in payload.ce_types:
            _message, headers = EVENT_COMPONENTS[ce_type]
            add_component(schemas, headers, ce_headers(ce_type, inbound=payload.inbound))

    nib_key = dict(TypeAdapter(Nib).json_schema())
    nib_key["description"] = (
        "The employer's NIB (13 digits) as UTF-8 bytes. All events of one employer share a key, "
        "hence a partition, and stay in order."
    )
    add_component(schemas, "EmployerNibKey", nib_key)
    add_component(
        schemas,
        "DecisionKey",
        {
            "description": (
                "The payload's `nib`, so an employer's decisions stay in order; the payload's "
                "`application_id` instead on a REJECTED decision whose `nib` is null (the input "
                "carried no readable NIB)."
            ),
            "anyOf": [
                schema_ref("EmployerNibKey"),
                {"type": "string", "minLength": 1, "description": "The application_id."},
            ],
        },
    )
    for name, schema in dead_letter_components().items():
        add_component(schemas, name, schema)
    return schemas


def asyncapi_document() -> JsonObject:
    """The AsyncAPI 3.0.0 description of ptsp-gate's Kafka interface."""
    channels: JsonObject = {
        "permitApplications": {
            "address": TOPIC_APPLICATIONS,
            "title": "Permit applications and renewals",
            "description": (
                "Published by the PTSP / OSS, consumed by ptsp-gate's permit checker. Keyed by "
                "the employer's NIB. Binary content mode; structured mode "
                f"({STRUCTURED_CONTENT_TYPE}) is accepted too. The topic name is configurable."
            ),
            "messages": {
                "permitApplicationSubmitted": message_ref("PermitApplicationSubmitted"),
                "permitRenewalSubmitted": message_ref("PermitRenewalSubmitted"),
            },
        },
        "employerEnrolment": {
            "address": TOPIC_ENROLMENT,
            "title": "Employer enrolment state",
            "description": (
                "Published by BPJS Ketenagakerjaan, consumed by ptsp-gate's enrolment sync. One "
                "message is the whole current state of one employer; the topic is compacted by "
                "key (NIB). Binary content mode; structured mode "
                f"({STRUCTURED_CONTENT_TYPE}) is accepted too. The topic name is configurable."
            ),
            "messages": {"employerEnrolmentState": message_ref("EmployerEnrolmentState")},
            "bindings": {
                "kafka": {
                    "topicConfiguration": {"cleanup.policy": ["compact"]},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        },
        "permitDecisions": {
            "address": TOPIC_DECISIONS,
            "title": "Compliance decisions",
            "description": (
                "Published by ptsp-gate (through its outbox: at least once, in per-key order), "
                "consumed by the PTSP / OSS. Keyed by the employer's NIB (see the message key). "
                "Consumers should deduplicate on `decision_id` (also the ce_id). The topic name "
                "is configurable."
            ),
            "messages": {"complianceDecisionIssued": message_ref("ComplianceDecisionIssued")},
        },
        "permitApplicationsDlq": {
            "address": TOPIC_APPLICATIONS + DLQ_SUFFIX,
            "title": "Dead letters of the permit applications topic",
            "description": "Records of the permit applications topic that could not be used.",
            "messages": {"deadLetter": message_ref("DeadLetter")},
        },
        "employerEnrolmentDlq": {
            "address": TOPIC_ENROLMENT + DLQ_SUFFIX,
            "title": "Dead letters of the employer enrolment topic",
            "description": "Records of the employer enrolment topic that could not be used.",
            "messages": {"deadLetter": message_ref("DeadLetter")},
        },
    }

    def operation(action: str, channel: str, summary: str) -> JsonObject:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{message}"}
                for message in channels[channel]["messages"]
            ],
        }

    operations: JsonObject = {
        "receivePermitApplications": operation(
            "receive",
            "permitApplications",
            "The permit checker decides each application and records the decision.",
        ),
        "receiveEmployerEnrolment": operation(
            "receive",
            "employerEnrolment",
            "The enrolment sync keeps the enrolment projection current and re-decides pending "
            "and blocked applications of an employer whose state changed.",
        ),
        "sendComplianceDecisions": operation(
            "send",
            "permitDecisions",
            "Decisions are published from the outbox with an idempotent producer.",
        ),
        "sendPermitApplicationsDeadLetters": operation(
            "send",
            "permitApplicationsDlq",
            "Unusable permit application records are dead-lettered.",
        ),
        "sendEmployerEnrolmentDeadLetters": operation(
            "send",
            "employerEnrolmentDlq",
            "Unusable employer enrolment records are dead-lettered.",
        ),
    }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:ptsp-gate",
        "info": {
            "title": "ptsp-gate",
            "version": CONTRACT_VERSION,
            "description": (
                "BPJS Ketenagakerjaan compliance gate for business permits at Indonesian one-stop "
                "licensing offices (PTSP / OSS). ptsp-gate consumes permit applications and "
                "employer enrolment state and emits a compliance decision for each application "
                "(and a superseding one when an enrolment change re-decides it).\n\n"
                "Envelope: CloudEvents 1.0, Kafka protocol binding, binary content mode (ce_* "
                "headers, value = JSON data). Every topic name is configurable; the addresses "
                "below are the defaults. Payload schemas are generated from the pydantic models "
                "in ptsp_gate.contract (inbound payloads ignore unknown fields; the decision "
                "never carries fields beyond its schema)."
            ),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": JSON_CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster shared with the PTSP / OSS and BPJS TK feeds.",
                "variables": {
                    "bootstrap": {
                        "default": "localhost:9092",
                        "description": (
                            "A bootstrap broker as host:port (the deployment's "
                            "KAFKA_BOOTSTRAP_SERVERS lists them, comma-separated)."
                        ),
                    }
                },
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": _schemas(), "messages": messages()},
    }
