"""Table-driven validation of the v1 payload models, as the services use them (from JSON bytes)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel, ValidationError
from stdnum import luhn

from ptsp_gate.contract import events
from ptsp_gate.contract.events import ComplianceDecision, EnrolmentState, PermitApplication, Program
from ptsp_gate.contract.export.examples import payload_examples
from ptsp_gate.contract.identifiers import canonical_npwp, mask

DELETE = object()

VALID_NPWP_15 = "013000666091000"
VALID_NPWP_16 = "0013000666091000"
VALID_NIK = "7314011508900001"  # Sidenreng Rappang, born 15-08-1990
VALID_NIK_FEMALE = "7314015508900001"  # day + 40 for women


def _npwp15(first8: str, rest: str = "091000") -> str:
    return first8 + luhn.calc_check_digit(first8) + rest


def _bad_check_digit(npwp: str, position: int) -> str:
    wrong = (int(npwp[position]) + 1) % 10
    return npwp[:position] + str(wrong) + npwp[position + 1 :]


OTHER_VALID_NPWP_15 = _npwp15("09876543", "123456")
BAD_CHECK_15 = _bad_check_digit(VALID_NPWP_15, 8)
BAD_CHECK_16 = _bad_check_digit(VALID_NPWP_16, 9)

# The published examples are the valid payloads the cases change.
EXAMPLES = payload_examples()
APPLICATION = EXAMPLES[events.CE_TYPE_APPLICATION]
RENEWAL = EXAMPLES[events.CE_TYPE_RENEWAL]
ENROLMENT = EXAMPLES[events.CE_TYPE_ENROLMENT]
DECISION = EXAMPLES[events.CE_TYPE_DECISION]


def _with(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with dotted paths set (or removed with DELETE)."""
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return out


def _validate(model: type[BaseModel], payload: dict[str, Any]) -> BaseModel:
    """As the services do: strict validation of the JSON bytes."""
    return model.model_validate_json(json.dumps(payload))


def _error_locs(exc: ValidationError) -> set[str]:
    return {".".join(str(part) for part in error["loc"]) for error in exc.errors()}


def _check(
    model: type[BaseModel], payload: dict[str, Any], bad_loc: str | None
) -> BaseModel | None:
    if bad_loc is None:
        return _validate(model, payload)
    with pytest.raises(ValidationError) as info:
        _validate(model, payload)
    assert bad_loc in _error_locs(info.value), info.value
    return None


# --- permit application / renewal --------------------------------------------------------------

OK = None

APPLICATION_CASES = [
    # (id, base, changes, location of the expected error or OK)
    ("new", APPLICATION, {}, OK),
    ("renewal", RENEWAL, {}, OK),
    ("new-may-name-a-previous-permit", APPLICATION, {"permit.previous_permit_number": "X/1"}, OK),
    ("renewal-without-previous", RENEWAL, {"permit.previous_permit_number": DELETE}, ""),
    ("renewal-previous-null", RENEWAL, {"permit.previous_permit_number": None}, ""),
    (
        "renewal-previous-empty",
        RENEWAL,
        {"permit.previous_permit_number": ""},
        "permit.previous_permit_number",
    ),
    # NIB: 13 ASCII digits, a JSON string
    ("nib-12-digits", APPLICATION, {"employer.nib": "912000123456"}, "employer.nib"),
    ("nib-14-digits", APPLICATION, {"employer.nib": "91200012345678"}, "employer.nib"),
    ("nib-letters", APPLICATION, {"employer.nib": "91200012345AB"}, "employer.nib"),
    ("nib-json-number", APPLICATION, {"employer.nib": 9120001234567}, "employer.nib"),
    ("nib-padded", APPLICATION, {"employer.nib": " 9120001234567"}, "employer.nib"),
    ("nib-trailing-newline", APPLICATION, {"employer.nib": "9120001234567\n"}, "employer.nib"),
    ("nib-arabic-indic-digits", APPLICATION, {"employer.nib": "٩١٢٠٠٠١٢٣٤٥٦٧"}, "employer.nib"),
    # NPWP: 15 digits (Luhn over the first 9), 16 digits (0 + legacy, or a NIK)
    ("npwp-15", APPLICATION, {"employer.npwp": VALID_NPWP_15}, OK),
    ("npwp-15-computed", APPLICATION, {"employer.npwp": OTHER_VALID_NPWP_15}, OK),
    ("npwp-16-leading-0", APPLICATION, {"employer.npwp": VALID_NPWP_16}, OK),
    ("npwp-16-nik", APPLICATION, {"employer.npwp": VALID_NIK}, OK),
    ("npwp-16-nik-female", APPLICATION, {"employer.npwp": VALID_NIK_FEMALE}, OK),
    ("npwp-15-bad-check-digit", APPLICATION, {"employer.npwp": BAD_CHECK_15}, "employer.npwp"),
    ("npwp-16-bad-check-digit", APPLICATION, {"employer.npwp": BAD_CHECK_16}, "employer.npwp"),
    ("npwp-14-digits", APPLICATION, {"employer.npwp": VALID_NPWP_15[:14]}, "employer.npwp"),
    ("npwp-17-digits", APPLICATION, {"employer.npwp": "0" + VALID_NPWP_16}, "employer.npwp"),
    ("npwp-letters", APPLICATION, {"employer.npwp": "01300066609100A"}, "employer.npwp"),
    ("npwp-formatted", APPLICATION, {"employer.npwp": "01.300.066.6-091.000"}, "employer.npwp"),
    ("npwp-nik-bad-date", APPLICATION, {"employer.npwp": "7314013102900001"}, "employer.npwp"),
    ("npwp-nik-bad-region", APPLICATION, {"employer.npwp": "9999011508900001"}, "employer.npwp"),
    ("npwp-json-number", APPLICATION, {"employer.npwp": 13000666091000}, "employer.npwp"),
    # KBLI: 5 digits; region: 4 digits
    ("kbli-4-digits", APPLICATION, {"permit.kbli": "4711"}, "permit.kbli"),
    ("kbli-6-digits", APPLICATION, {"permit.kbli": "471111"}, "permit.kbli"),
    ("kbli-letter", APPLICATION, {"permit.kbli": "4711A"}, "permit.kbli"),
    ("kbli-json-number", APPLICATION, {"permit.kbli": 47111}, "permit.kbli"),
    ("kbli-fullwidth-digits", APPLICATION, {"permit.kbli": "４７１１１"}, "permit.kbli"),
    ("region-3-digits", APPLICATION, {"region_code": "731"}, "region_code"),
    ("region-province-dot", APPLICATION, {"region_code": "73.14"}, "region_code"),
    ("region-5-digits", APPLICATION, {"region_code": "73140"}, "region_code"),
    ("region-json-number", APPLICATION, {"region_code": 7314}, "region_code"),
    # workers_declared: a JSON integer >= 0
    ("workers-zero", APPLICATION, {"employer.workers_declared": 0}, OK),
    (
        "workers-negative",
        APPLICATION,
        {"employer.workers_declared": -1},
        "employer.workers_declared",
    ),
    (
        "workers-string",
        APPLICATION,
        {"employer.workers_declared": "5"},
        "employer.workers_declared",
    ),
    ("workers-float", APPLICATION, {"employer.workers_declared": 5.0}, "employer.workers_declared"),
    ("workers-bool", APPLICATION, {"employer.workers_declared": True}, "employer.workers_declared"),
    (
        "workers-absurd",
        APPLICATION,
        {"employer.workers_declared": 10_000_001},
        "employer.workers_declared",
    ),
    # enums: exact upper-case values only
    ("action-unknown", APPLICATION, {"action": "CANCEL"}, "action"),
    ("action-lower-case", APPLICATION, {"action": "new"}, "action"),
    ("permit-type-unknown", APPLICATION, {"permit.type": "SIUP"}, "permit.type"),
    ("risk-unknown", APPLICATION, {"permit.risk_level": "SEDANG"}, "permit.risk_level"),
    ("scale-unknown", APPLICATION, {"employer.scale": "RAKSASA"}, "employer.scale"),
    # timestamps: RFC 3339 with an offset
    ("submitted-z", APPLICATION, {"submitted_at": "2025-03-04T01:15:00Z"}, OK),
    ("submitted-no-offset", APPLICATION, {"submitted_at": "2025-03-04T09:15:00"}, "submitted_at"),
    ("submitted-date-only", APPLICATION, {"submitted_at": "2025-03-04"}, "submitted_at"),
    ("submitted-unix-number", APPLICATION, {"submitted_at": 1741050900}, "submitted_at"),
    ("submitted-garbage", APPLICATION, {"submitted_at": "yesterday"}, "submitted_at"),
    # application_id and name
    ("application-id-empty", APPLICATION, {"application_id": ""}, "application_id"),
    ("application-id-space", APPLICATION, {"application_id": "OSS 1"}, "application_id"),
    ("application-id-too-long", APPLICATION, {"application_id": "A" * 129}, "application_id"),
    ("application-id-number", APPLICATION, {"application_id": 123}, "application_id"),
    ("name-empty", APPLICATION, {"employer.name": ""}, "employer.name"),
    ("name-missing", APPLICATION, {"employer.name": DELETE}, "employer.name"),
    ("permit-missing", APPLICATION, {"permit": DELETE}, "permit"),
    # tolerant reader: unknown fields are ignored at every level
    ("extra-top-level", APPLICATION, {"channel": "OSS-RBA", "schema_rev": 7}, OK),
    ("extra-nested", APPLICATION, {"employer.address": "Jl. Poros", "permit.note": None}, OK),
]


def test_renewal_error_names_the_missing_field() -> None:
    with pytest.raises(ValidationError, match="previous_permit_number is required for a RENEWAL"):
        _validate(PermitApplication, _with(RENEWAL, {"permit.previous_permit_number": DELETE}))


def test_extra_fields_are_dropped_not_kept() -> None:
    payload = _with(APPLICATION, {"channel": "OSS-RBA", "employer.address": "Jl. Poros"})
    model = _validate(PermitApplication, payload)
    dumped = model.model_dump(mode="json")
    assert "channel" not in dumped
    assert "address" not in dumped["employer"]
    assert dumped == _validate(PermitApplication, APPLICATION).model_dump(mode="json")


def test_valid_application_values() -> None:
    model = _validate(PermitApplication, RENEWAL)
    assert isinstance(model, PermitApplication)
    assert model.action == "RENEWAL"
    assert model.submitted_at.utcoffset() is not None
    assert model.submitted_at == datetime(2025, 3, 4, 1, 15, tzinfo=UTC)
    assert model.permit.previous_permit_number == RENEWAL["permit"]["previous_permit_number"]
    with pytest.raises(ValidationError):
        model.application_id = "other"  # type: ignore[misc]


def test_npwp_error_names_nik_for_a_nik() -> None:
    with pytest.raises(ValidationError, match="NIK fails its check"):
        _validate(PermitApplication, _with(APPLICATION, {"employer.npwp": "7314013102900001"}))
    with pytest.raises(ValidationError, match="NPWP fails its check"):
        _validate(PermitApplication, _with(APPLICATION, {"employer.npwp": BAD_CHECK_16}))


def test_npwp_helpers() -> None:
    assert canonical_npwp(VALID_NPWP_15) == VALID_NPWP_16
    assert canonical_npwp(VALID_NPWP_16) == VALID_NPWP_16
    assert canonical_npwp(VALID_NIK) == VALID_NIK
    assert mask(VALID_NIK) == "*" * 12 + "0001"
    assert mask("123") == "***"
    assert mask(None) is None


# --- employer enrolment state ------------------------------------------------------------------

ENROLMENT_CASES = [
    ("valid", {}, OK),
    ("no-programs", {"programs": [], "status": "NOT_REGISTERED"}, OK),
    (
        "all-programs-and-flags",
        {"programs": list(Program), "pds_flags": ["WORKERS", "WAGES", "PROGRAM"]},
        OK,
    ),
    ("npwp-15", {"npwp": VALID_NPWP_15}, OK),
    ("npwp-nik", {"npwp": VALID_NIK}, OK),
    ("npwp-bad", {"npwp": BAD_CHECK_15}, "npwp"),
    ("nib-bad", {"nib": "12345"}, "nib"),
    ("program-unknown", {"programs": ["JKK", "JKN"]}, "programs.1"),
    ("programs-not-a-list", {"programs": "JKK"}, "programs"),
    ("pds-flag-unknown", {"pds_flags": ["SALARY"]}, "pds_flags.0"),
    ("status-unknown", {"status": "SUSPENDED"}, "status"),
    ("segment-unknown", {"segment": "PPU"}, "segment"),
    ("npp-empty", {"npp": ""}, "npp"),
    ("workers-negative", {"workers_enrolled": -1}, "workers_enrolled"),
    ("arrears-max", {"arrears_months": 1200}, OK),
    ("arrears-negative", {"arrears_months": -1}, "arrears_months"),
    ("arrears-too-many", {"arrears_months": 1201}, "arrears_months"),
    ("sanction-string", {"sanction_requested": "false"}, "sanction_requested"),
    ("sanction-int", {"sanction_requested": 0}, "sanction_requested"),
    ("as-of-no-offset", {"as_of": "2025-03-01T00:00:00"}, "as_of"),
    ("as-of-z", {"as_of": "2025-03-01T00:00:00Z"}, OK),
    # version: integer in [0, 2**63 - 1] (a Postgres bigint)
    ("version-zero", {"version": 0}, OK),
    ("version-max", {"version": 2**63 - 1}, OK),
    ("version-negative", {"version": -1}, "version"),
    ("version-overflow", {"version": 2**63}, "version"),
    ("version-float", {"version": 42.0}, "version"),
    ("version-string", {"version": "42"}, "version"),
    ("version-missing", {"version": DELETE}, "version"),
    ("extra-ignored", {"kantor_cabang": "Parepare"}, OK),
]


def test_enrolment_duplicate_programs_collapse() -> None:
    # The model is a tolerant reader: duplicates are harmless in a set and are accepted, although
    # the published schema says uniqueItems (producers should not send them).
    model = _validate(EnrolmentState, _with(ENROLMENT, {"programs": ["JKK", "JKM", "JKK", "JKM"]}))
    assert isinstance(model, EnrolmentState)
    assert model.programs == frozenset({Program.JKK, Program.JKM})
    schema = EnrolmentState.model_json_schema()
    assert schema["properties"]["programs"]["uniqueItems"] is True


# --- compliance decision -----------------------------------------------------------------------

DECISION_CASES = [
    ("valid", {}, OK),
    (
        "rejected-without-identity",
        {
            "outcome": "REJECTED",
            "nib": None,
            "action": None,
            "region_code": None,
            "reasons": [{"code": "INVALID_EVENT", "message": "bad nib"}],
        },
        OK,
    ),
    ("supersedes", {"supersedes": "0b1f3c2e-1111-5222-8333-444455556666"}, OK),
    ("supersedes-omitted", {"supersedes": DELETE}, OK),
    ("no-enrolment", {"enrolment_as_of": None, "outcome": "PENDING"}, OK),
    ("extra-forbidden", {"comment": "x"}, "comment"),
    (
        "reason-extra-forbidden",
        {"reasons": [{"code": "ARREARS", "message": "m", "hint": 1}]},
        "reasons.0.hint",
    ),
    ("reason-unknown-code", {"reasons": [{"code": "LATE", "message": "m"}]}, "reasons.0.code"),
    ("outcome-unknown", {"outcome": "MAYBE"}, "outcome"),
    ("decision-id-not-uuid", {"decision_id": "d-1"}, "decision_id"),
    ("nib-required-even-if-null", {"nib": DELETE}, "nib"),
]


# --- every case of the three payloads ---------------------------------------------------------

PAYLOAD_CASES = [
    *(
        pytest.param(PermitApplication, base, changes, loc, id=f"application-{case_id}")
        for case_id, base, changes, loc in APPLICATION_CASES
    ),
    *(
        pytest.param(EnrolmentState, ENROLMENT, changes, loc, id=f"enrolment-{case_id}")
        for case_id, changes, loc in ENROLMENT_CASES
    ),
    *(
        pytest.param(ComplianceDecision, DECISION, changes, loc, id=f"decision-{case_id}")
        for case_id, changes, loc in DECISION_CASES
    ),
]


@pytest.mark.parametrize(("model", "base", "changes", "bad_loc"), PAYLOAD_CASES)
def test_payload(
    model: type[BaseModel], base: dict[str, Any], changes: dict[str, Any], bad_loc: str | None
) -> None:
    _check(model, _with(base, changes), bad_loc)


def test_decision_serialises_to_its_published_shape() -> None:
    model = _validate(ComplianceDecision, DECISION)
    assert isinstance(model, ComplianceDecision)
    assert model.decision_id == UUID(DECISION["decision_id"])
    dumped = json.loads(model.model_dump_json())
    assert set(dumped) == set(
        ComplianceDecision.model_json_schema(mode="serialization")["properties"]
    )
    assert dumped["decision_id"] == DECISION["decision_id"]
    assert dumped["reasons"][0] == DECISION["reasons"][0]
    assert _validate(ComplianceDecision, dumped) == model
