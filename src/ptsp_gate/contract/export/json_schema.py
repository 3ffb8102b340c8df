"""The JSON Schema (draft 2020-12) of each v1 data payload, from its pydantic model: inbound
payloads in pydantic's "validation" mode (what the gate accepts), the decision in "serialization"
mode (what the gate emits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel

from ptsp_gate.contract.cloudevents import JSON_CONTENT_TYPE
from ptsp_gate.contract.events import (
    CE_TYPE_APPLICATION,
    CE_TYPE_DECISION,
    CE_TYPE_ENROLMENT,
    CE_TYPE_RENEWAL,
    DECISION_SCHEMA_NAME,
    ComplianceDecision,
    EnrolmentState,
    PermitApplication,
    schema_id,
)
from ptsp_gate.contract.topics import TOPIC_APPLICATIONS, TOPIC_DECISIONS, TOPIC_ENROLMENT

JsonObject = dict[str, Any]
SchemaMode = Literal["validation", "serialization"]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, slots=True)
class Payload:
    """One published data payload: its model, schema mode, file and CloudEvents types."""

    name: str
    model: type[BaseModel]
    ce_types: tuple[str, ...]
    topic: str
    # "validation" for what the gate accepts, "serialization" for what it emits.
    mode: SchemaMode = "validation"
    # Rules a model validator enforces that pydantic cannot express in the JSON Schema.
    extra_keywords: tuple[tuple[str, Any], ...] = ()

    @property
    def file_name(self) -> str:
        return f"{self.name}.schema.json"

    @property
    def inbound(self) -> bool:
        return self.mode == "validation"


# PermitApplication._renewal_names_its_predecessor, in JSON Schema terms.
_RENEWAL_NEEDS_PREVIOUS_PERMIT: Final[tuple[tuple[str, Any], ...]] = (
    ("if", {"properties": {"action": {"const": "RENEWAL"}}, "required": ["action"]}),
    (
        "then",
        {
            "properties": {
                "permit": {
                    "properties": {"previous_permit_number": {"type": "string"}},
                    "required": ["previous_permit_number"],
                }
            }
        },
    ),
)


PAYLOADS: Final[tuple[Payload, ...]] = (
    Payload(
        "permit-application.v1",
        PermitApplication,
        (CE_TYPE_APPLICATION, CE_TYPE_RENEWAL),
        TOPIC_APPLICATIONS,
        extra_keywords=_RENEWAL_NEEDS_PREVIOUS_PERMIT,
    ),
    Payload("employer-enrolment.v1", EnrolmentState, (CE_TYPE_ENROLMENT,), TOPIC_ENROLMENT),
    Payload(
        DECISION_SCHEMA_NAME,
        ComplianceDecision,
        (CE_TYPE_DECISION,),
        TOPIC_DECISIONS,
        mode="serialization",
    ),
)
PAYLOAD_BY_CE_TYPE: Final = {t: p for p in PAYLOADS for t in p.ce_types}


def payload_description(payload: Payload) -> str:
    types = " or ".join(f"`{t}`" for t in payload.ce_types)
    direction = "accepted by" if payload.inbound else "emitted by"
    doc = " ".join((payload.model.__doc__ or "").split())
    return (
        f"CloudEvents `data` of type {types} (default topic `{payload.topic}`, content-type "
        f"{JSON_CONTENT_TYPE}), as {direction} ptsp-gate. {doc}"
    ).strip()


def model_schema(payload: Payload) -> JsonObject:
    """pydantic's JSON Schema of the payload, nested definitions under `$defs`."""
    schema = payload.model.model_json_schema(mode=payload.mode)
    schema["description"] = payload_description(payload)
    schema.update(payload.extra_keywords)
    return schema


def payload_json_schema(payload: Payload) -> JsonObject:
    """The standalone JSON Schema document (draft 2020-12) of one payload."""
    schema = model_schema(payload)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(payload.name),
        **schema,
        "title": f"ptsp-gate/{payload.name} ({payload.model.__name__})",
    }
