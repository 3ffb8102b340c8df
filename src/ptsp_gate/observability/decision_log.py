"""One log line per committed decision, for the on-call engineer who greps by application or NIB.

Written after the transaction commits, never before, so a line always means a stored decision.
NPWP and NIK never reach these lines (decisions carry neither); the formatter masks them anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ptsp_gate.contract.events import ComplianceDecision
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.runtime.intake import RawRecord

log = get_logger("ptsp_gate.decisions")
_std = logging.getLogger("ptsp_gate.decisions")


def enabled() -> bool:
    # At thousands of decisions a second, skip building the fields when INFO is off.
    return _std.isEnabledFor(logging.INFO)


def decided(
    decision: ComplianceDecision,
    event_id: str,
    record: RawRecord,
    trace: Mapping[str, str] | None = None,
) -> None:
    log.info(
        "decision",
        event_id=event_id,
        decision_id=decision.decision_id,
        **_applicant(decision),
        action=decision.action.value if decision.action else None,
        region_code=decision.region_code,
        **_verdict(decision),
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        **(trace or {}),
    )


def superseded(
    decision: ComplianceDecision,
    *,
    event_id: str,
    from_outcome: str,
    trigger: str,
    trace: Mapping[str, str] | None = None,
) -> None:
    log.info(
        "decision superseded",
        event_id=event_id,
        decision_id=decision.decision_id,
        supersedes=decision.supersedes,
        **_applicant(decision),
        region_code=decision.region_code,
        from_outcome=from_outcome,
        **_verdict(decision),
        trigger=trigger,
        **(trace or {}),
    )


# Both lines carry these fields; two pieces rather than one keep each line's own field order.
def _applicant(decision: ComplianceDecision) -> dict[str, Any]:
    return {"application_id": decision.application_id, "nib": decision.nib}


def _verdict(decision: ComplianceDecision) -> dict[str, Any]:
    return {
        "outcome": decision.outcome.value,
        "reasons": [r.code.value for r in decision.reasons],
        "policy_version": decision.policy_version,
    }
