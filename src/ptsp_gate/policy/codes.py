"""Which reason codes can block, which defer, and how one reason's effect is named.

Kept apart from the policy model and from `decide` because both need it: the model to refuse a
blocking code that could never block, `decide` to label each reason it lists.
"""

from __future__ import annotations

from typing import Literal

from ptsp_gate.contract.events import ReasonCode

Effect = Literal["block", "pending", "advisory"]

# DESIGN §4: the codes whose default outcome is BLOCKED. A region may demote any of them to
# advisory by leaving it out of `blocking_codes`, but nothing else can be promoted to blocking.
BLOCK_TYPE_CODES: frozenset[ReasonCode] = frozenset(
    {
        ReasonCode.NOT_REGISTERED,
        ReasonCode.EMPLOYER_INACTIVE,
        ReasonCode.ARREARS,
        ReasonCode.PROGRAMS_MISSING,
        ReasonCode.PDS_WORKERS,
        ReasonCode.PDS_WAGES,
        ReasonCode.SANCTION_REQUESTED,
        ReasonCode.IDENTITY_MISMATCH,
    }
)

# These say "cannot decide yet"; they never block by themselves and are not region-configurable.
PENDING_TYPE_CODES: frozenset[ReasonCode] = frozenset(
    {ReasonCode.ENROLMENT_UNKNOWN, ReasonCode.ENROLMENT_STALE}
)


def effect_of(code: ReasonCode, blocking_codes: frozenset[ReasonCode]) -> Effect:
    if code in blocking_codes:
        return "block"
    if code in PENDING_TYPE_CODES:
        return "pending"
    return "advisory"
