"""Payloads (CloudEvents `data`) of the three v1 event types.

Inbound models ignore unknown fields (a tolerant reader: OSS schemas are expected to grow under
PP 28/2025) but are strict about the types of the fields they know. The outbound decision forbids
extra fields, since other systems validate against its published schema.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ptsp_gate.contract.identifiers import Kbli, Nib, Npwp, RegionCode

# CloudEvents `type` attributes of the v1 contract.
CE_TYPE_APPLICATION = "id.go.ptsp.permit.application.submitted.v1"
CE_TYPE_RENEWAL = "id.go.ptsp.permit.renewal.submitted.v1"
CE_TYPE_ENROLMENT = "id.go.bpjstk.employer.enrolment.v1"
CE_TYPE_DECISION = "id.go.ptsp.compliance.decision.v1"

# The published JSON Schemas (schemas/NAME.schema.json) are identified by these URNs, their
# `$id`; a decision names its schema in `ce_dataschema`.
DECISION_SCHEMA_NAME = "compliance-decision.v1"


def schema_id(name: str) -> str:
    return f"urn:ptsp-gate:schema:{name}"


DECISION_DATASCHEMA = schema_id(DECISION_SCHEMA_NAME)

MAX_INT64 = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=10_000_000)]


class Action(StrEnum):
    NEW = "NEW"
    RENEWAL = "RENEWAL"


ACTION_BY_CE_TYPE: dict[str, Action] = {
    CE_TYPE_APPLICATION: Action.NEW,
    CE_TYPE_RENEWAL: Action.RENEWAL,
}


class PermitType(StrEnum):
    NIB = "NIB"
    SERTIFIKAT_STANDAR = "SERTIFIKAT_STANDAR"
    IZIN = "IZIN"
    PB_UMKU = "PB_UMKU"
    PBG = "PBG"
    SLF = "SLF"


class RiskLevel(StrEnum):
    RENDAH = "RENDAH"
    MENENGAH_RENDAH = "MENENGAH_RENDAH"
    MENENGAH_TINGGI = "MENENGAH_TINGGI"
    TINGGI = "TINGGI"


class Scale(StrEnum):
    MIKRO = "MIKRO"
    KECIL = "KECIL"
    MENENGAH = "MENENGAH"
    BESAR = "BESAR"


class EnrolmentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    NOT_REGISTERED = "NOT_REGISTERED"


class Segment(StrEnum):
    PU = "PU"
    BPU = "BPU"
    JAKON = "JAKON"


class Program(StrEnum):
    JKK = "JKK"
    JKM = "JKM"
    JHT = "JHT"
    JP = "JP"
    JKP = "JKP"


class PdsFlag(StrEnum):
    WORKERS = "WORKERS"
    WAGES = "WAGES"
    PROGRAM = "PROGRAM"


class Outcome(StrEnum):
    CLEARED = "CLEARED"
    BLOCKED = "BLOCKED"
    PENDING = "PENDING"
    REJECTED = "REJECTED"


class ReasonCode(StrEnum):
    NOT_REGISTERED = "NOT_REGISTERED"
    EMPLOYER_INACTIVE = "EMPLOYER_INACTIVE"
    ARREARS = "ARREARS"
    PROGRAMS_MISSING = "PROGRAMS_MISSING"
    PDS_WORKERS = "PDS_WORKERS"
    PDS_WAGES = "PDS_WAGES"
    SANCTION_REQUESTED = "SANCTION_REQUESTED"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    ENROLMENT_UNKNOWN = "ENROLMENT_UNKNOWN"
    ENROLMENT_STALE = "ENROLMENT_STALE"
    NO_EMPLOYEES_DECLARED = "NO_EMPLOYEES_DECLARED"
    INVALID_EVENT = "INVALID_EVENT"
    # Added to v1 after the first release (additive): listed last so that earlier codes keep
    # their order, and the order of reasons in earlier decisions.
    OFFICER_OVERRIDE = "OFFICER_OVERRIDE"


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class Permit(_Inbound):
    type: PermitType
    kbli: Kbli
    risk_level: RiskLevel
    previous_permit_number: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class Employer(_Inbound):
    nib: Nib
    npwp: Npwp
    name: Annotated[str, Field(min_length=1, max_length=300)]
    scale: Scale
    workers_declared: Count


class PermitApplication(_Inbound):
    """A permit application or renewal submitted at the PTSP / OSS."""

    application_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    action: Action
    submitted_at: AwareDatetime
    region_code: RegionCode
    permit: Permit
    employer: Employer

    @model_validator(mode="after")
    def _renewal_names_its_predecessor(self) -> Self:
        if self.action is Action.RENEWAL and not self.permit.previous_permit_number:
            raise ValueError("permit.previous_permit_number is required for a RENEWAL")
        return self


class EnrolmentState(_Inbound):
    """The whole current state of one employer at BPJS Ketenagakerjaan."""

    nib: Nib
    npwp: Npwp
    npp: Annotated[str, Field(min_length=1, max_length=64)]
    status: EnrolmentStatus
    segment: Segment
    programs: frozenset[Program]
    workers_enrolled: Count
    arrears_months: Annotated[int, Field(ge=0, le=1200)]
    pds_flags: frozenset[PdsFlag]
    sanction_requested: bool
    as_of: AwareDatetime
    version: Annotated[int, Field(ge=0, le=MAX_INT64)]


# The record's fields in the model's order: the columns of a bulk snapshot file and of the
# enrolment projection.
ENROLMENT_FIELDS: tuple[str, ...] = tuple(EnrolmentState.model_fields)


class Reason(BaseModel):
    """One reason for the outcome. `details.effect` is `block`, `pending` or `advisory`; the other
    details depend on the code. Those of `OFFICER_OVERRIDE` (advisory, on a CLEARED decision
    that supersedes a BLOCKED or PENDING one) are `override_id`, `scope` (APPLICATION or
    EMPLOYER), `overridden` (the codes set aside, each with its effect), `legal_basis`,
    `document_ref`, `asked_by`, `approved_by` (a list), `granted_at` and `expires_at`; when the
    override ends, the application is decided again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: ReasonCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ComplianceDecision(BaseModel):
    """The answer to one application. `nib`, `action` and `region_code` are null only on a
    REJECTED decision whose input did not carry a readable value for them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision_id: UUID
    application_id: str
    nib: str | None
    action: Action | None
    region_code: str | None
    outcome: Outcome
    reasons: list[Reason]
    enrolment_as_of: datetime | None
    policy_version: str
    decided_at: datetime
    supersedes: UUID | None = None
