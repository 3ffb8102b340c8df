"""The policy model: every knob a region may turn, with the national defaults of DESIGN §4."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

from ptsp_gate.contract.events import Program, ReasonCode, Scale, Segment
from ptsp_gate.policy.codes import BLOCK_TYPE_CODES

_Key = TypeVar("_Key", Scale, Segment)

_BASIC = frozenset({Program.JKK, Program.JKM})

# Perpres 109/2013 art. 6 (from 1 July 2015): the programmes an employer must enrol by scale.
DEFAULT_REQUIRED_PROGRAMS: Mapping[Scale, frozenset[Program]] = {
    Scale.BESAR: _BASIC | {Program.JHT, Program.JP},
    Scale.MENENGAH: _BASIC | {Program.JHT, Program.JP},
    Scale.KECIL: _BASIC | {Program.JHT},
    Scale.MIKRO: _BASIC,
}

# Construction (jasa konstruksi) and non-wage-earner (BPU) participants are covered by JKK + JKM
# only, whatever the employer's scale, so asking them for JHT/JP would block lawful employers.
DEFAULT_SEGMENT_PROGRAM_CAPS: Mapping[Segment, frozenset[Program]] = {
    Segment.JAKON: _BASIC,
    Segment.BPU: _BASIC,
}

# Stamped on every decision and quoted in logs and audits, so bounded, printable and one word;
# long enough for the "+<region>:<version>" suffix of a region's effective version.
PolicyVersion = Annotated[str, Strict(), Field(min_length=1, max_length=200, pattern=r"^[!-~]+$")]


def _names(values: Iterable[StrEnum]) -> str:
    return ", ".join(sorted(v.value for v in values))


def _only_block_type_codes(value: frozenset[ReasonCode]) -> frozenset[ReasonCode]:
    # Pending and advisory codes mean "not known" or "fine": blocking on them would refuse
    # permits for want of data, which DESIGN §4 rules out.
    strays = value - BLOCK_TYPE_CODES
    if strays:
        raise ValueError(f"{_names(strays)} cannot block; choose among {_names(BLOCK_TYPE_CODES)}")
    return value


def _every_scale(value: dict[Scale, frozenset[Program]]) -> dict[Scale, frozenset[Program]]:
    # A scale without a requirement would make `decide` guess; better to refuse the file.
    absent = set(Scale) - value.keys()
    if absent:
        raise ValueError(f"no requirement for scale {_names(absent)}")
    return value


def _without_jkp(value: dict[_Key, frozenset[Program]]) -> dict[_Key, frozenset[Program]]:
    # PP 37/2021: JKP is a benefit that follows from the other programmes, never something an
    # employer enrols in directly, so a policy demanding it would block every employer.
    holders = [key for key, programs in value.items() if Program.JKP in programs]
    if holders:
        raise ValueError(
            f"JKP is never a requirement (PP 37/2021); remove it from {_names(holders)}"
        )
    return value


class Policy(BaseModel):
    """One effective policy. `Policy(version=...)` alone is the national default of DESIGN §4."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: PolicyVersion
    # "Lancar" (paying on time) still tolerates one or two months outstanding.
    arrears_tolerance_months: Annotated[int, Strict(), Field(ge=0, le=1200)] = 2
    # Upper bound keeps `now - max age` representable as a datetime.
    max_enrolment_age_days: Annotated[int, Strict(), Field(ge=0, le=36_500)] = 90
    blocking_codes: Annotated[frozenset[ReasonCode], AfterValidator(_only_block_type_codes)] = (
        BLOCK_TYPE_CODES
    )
    absent_record: Literal["PENDING", "NOT_REGISTERED"] = "PENDING"
    required_programs: Annotated[
        dict[Scale, frozenset[Program]], AfterValidator(_every_scale), AfterValidator(_without_jkp)
    ] = Field(default_factory=lambda: dict(DEFAULT_REQUIRED_PROGRAMS))
    segment_program_caps: Annotated[
        dict[Segment, frozenset[Program]], AfterValidator(_without_jkp)
    ] = Field(default_factory=lambda: dict(DEFAULT_SEGMENT_PROGRAM_CAPS))

    def required_for(self, scale: Scale, segment: Segment) -> frozenset[Program]:
        """Programmes this employer must hold: its scale's requirement within its segment's cap."""
        required = self.required_programs[scale]
        cap = self.segment_program_caps.get(segment)
        return required if cap is None else required & cap
