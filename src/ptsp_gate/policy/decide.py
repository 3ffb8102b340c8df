"""The decision itself: a pure function of the application, the enrolment record, the policy and
the time, so it can be replayed and tested exhaustively without Kafka or Postgres."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ptsp_gate.contract.events import EnrolmentState, Outcome, PermitApplication, Reason, ReasonCode
from ptsp_gate.policy import checks
from ptsp_gate.policy.codes import effect_of
from ptsp_gate.policy.model import Policy

# Fixed forever: changing it would give every replayed decision a new id.
# (= uuid5(NAMESPACE_DNS, "decisions.ptsp-gate.invalid"))
DECISION_NAMESPACE = UUID("fb82c960-7181-5b8a-aa4a-f108c7cd27d4")

# Reasons are listed in the contract's enum order, so equal inputs give byte-equal decisions.
_ORDER = {code: index for index, code in enumerate(ReasonCode)}


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[Reason, ...]
    enrolment_as_of: datetime | None
    policy_version: str


def decide(
    application: PermitApplication,
    enrolment: EnrolmentState | None,
    policy: Policy,
    now: datetime,
    *,
    snapshot_complete: bool = False,
) -> Verdict:
    """Decide one application. `enrolment` is the employer's record (None when there is none);
    `snapshot_complete` says the region's full BPJS TK snapshot is loaded."""
    if now.tzinfo is None or now.utcoffset() is None:
        # Staleness compares with the record's aware as_of; a naive clock would shift it by hours.
        raise ValueError("now must be timezone-aware")
    if enrolment is None:
        findings = checks.without_record(application, policy, snapshot_complete=snapshot_complete)
    elif enrolment.nib != application.employer.nib:
        # Deciding on another employer's record would be silently wrong; fail the caller instead.
        raise ValueError("enrolment record is for a different NIB than the application")
    else:
        findings = checks.with_record(application, enrolment, policy, now)
    reasons = ordered(
        Reason(
            code=f.code,
            message=f.message,
            details={"effect": effect_of(f.code, policy.blocking_codes), **f.details},
        )
        for f in findings
    )
    return Verdict(
        outcome=_outcome(reasons),
        reasons=reasons,
        enrolment_as_of=enrolment.as_of if enrolment is not None else None,
        policy_version=policy.version,
    )


def ordered(reasons: Iterable[Reason]) -> tuple[Reason, ...]:
    return tuple(sorted(reasons, key=lambda r: _ORDER[r.code]))


def _outcome(reasons: tuple[Reason, ...]) -> Outcome:
    effects = {reason.details["effect"] for reason in reasons}
    if "block" in effects:
        return Outcome.BLOCKED
    # PENDING never outranks a block: a known violation is reason enough whatever is unknown.
    if "pending" in effects:
        return Outcome.PENDING
    return Outcome.CLEARED


def rejected(policy_version: str, problems: list[dict[str, Any]], message: str) -> Verdict:
    """The answer to an event that cannot be decided because it is itself invalid."""
    reason = Reason(code=ReasonCode.INVALID_EVENT, message=message, details={"errors": problems})
    return Verdict(
        outcome=Outcome.REJECTED,
        reasons=(reason,),
        enrolment_as_of=None,
        policy_version=policy_version,
    )


def decision_id(
    event_id: str,
    verdict: Verdict,
    enrolment_version: int | None,
    supersedes: UUID | None = None,
) -> UUID:
    """Deterministic id: a replay of the same event against the same data yields the same id,
    while any change in what was decided, or on which data, yields a new one."""
    inputs: list[Any] = [
        event_id,
        verdict.outcome.value,
        sorted(reason.code.value for reason in verdict.reasons),
        verdict.policy_version,
        enrolment_version,
        str(supersedes) if supersedes is not None else None,
    ]
    # Two overrides may clear the same decision: each its own id. Appended only when there is
    # one, so that every decision made without an override keeps the id it always had.
    cited = [
        r.details["override_id"] for r in verdict.reasons if r.code is ReasonCode.OFFICER_OVERRIDE
    ]
    if cited:
        inputs.append(cited[0])
    canonical = json.dumps(inputs, separators=(",", ":"), ensure_ascii=False)
    return uuid.uuid5(DECISION_NAMESPACE, canonical)
