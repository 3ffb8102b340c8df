"""The one place a `ComplianceDecision` is made from a verdict: first decisions, answers to
invalid events and re-decisions alike."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from ptsp_gate.contract.events import (
    Action,
    ComplianceDecision,
    EnrolmentState,
    PermitApplication,
)
from ptsp_gate.policy import PolicyBook, Verdict, decide, decision_id, overrides
from ptsp_gate.policy.overrides import Grant


def build(
    event_id: str,
    verdict: Verdict,
    *,
    application_id: str,
    nib: str | None,
    action: Action | None,
    region_code: str | None,
    enrolment_version: int | None,
    now: datetime,
    supersedes: UUID | None = None,
) -> ComplianceDecision:
    # Built from validated input and the policy's own output: re-validating costs a fifth of the
    # per-decision time and checks nothing new.
    return ComplianceDecision.model_construct(
        decision_id=decision_id(event_id, verdict, enrolment_version, supersedes),
        application_id=application_id,
        nib=nib,
        action=action,
        region_code=region_code,
        outcome=verdict.outcome,
        reasons=list(verdict.reasons),
        enrolment_as_of=verdict.enrolment_as_of,
        policy_version=verdict.policy_version,
        decided_at=now,
        supersedes=supersedes,
    )


def for_application(
    event_id: str,
    application: PermitApplication,
    enrolment: EnrolmentState | None,
    *,
    policies: PolicyBook,
    complete_regions: set[str],
    now: datetime,
    supersedes: UUID | None = None,
    grants: Sequence[Grant] = (),
) -> ComplianceDecision:
    """The decision on a valid application, under the policy of its region and the officer
    override in force for it among `grants`: a first decision, or (with `supersedes`) a
    re-decision."""
    verdict = decide(
        application,
        enrolment,
        policies.for_region(application.region_code),
        now,
        snapshot_complete=application.region_code in complete_regions,
    )
    grant = overrides.applicable(grants, application, now) if grants else None
    if grant is not None:
        verdict = overrides.overridden(verdict, grant)
    return build(
        event_id,
        verdict,
        application_id=application.application_id,
        nib=application.employer.nib,
        action=application.action,
        region_code=application.region_code,
        enrolment_version=enrolment.version if enrolment is not None else None,
        now=now,
        supersedes=supersedes,
    )
