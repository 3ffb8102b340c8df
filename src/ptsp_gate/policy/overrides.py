"""Officer overrides in the decision: which granted override applies to an application, and the
verdict it turns into. Pure, like `decide`: the store finds the overrides in force, this decides
what they do.

An override is asked by one officer and granted by another (a supervisor), for one application
or for every application of an employer in one region, until it expires. Under it, the reasons
that would block or defer the application are set aside and named in one advisory reason,
`OFFICER_OVERRIDE`, so the decision says what was overridden, on what basis, by whom and until
when. Advisory reasons stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from ptsp_gate.contract.events import (
    ComplianceDecision,
    Outcome,
    PermitApplication,
    Reason,
    ReasonCode,
)
from ptsp_gate.policy.decide import Verdict, ordered


class Scope(StrEnum):
    APPLICATION = "APPLICATION"
    EMPLOYER = "EMPLOYER"


@dataclass(frozen=True, slots=True)
class Grant:
    """A granted override, as the decision needs it."""

    override_id: UUID
    scope: Scope
    application_id: str | None  # for an APPLICATION override
    nib: str
    region_code: str
    legal_basis: str
    document_ref: str
    asked_by: str
    granted_by: str
    granted_at: datetime
    expires_at: datetime

    def covers(self, application: PermitApplication, now: datetime) -> bool:
        if (
            now >= self.expires_at
            or application.region_code != self.region_code
            # Granted on an employer's situation: a corrected resend that names another employer
            # is not covered by it.
            or application.employer.nib != self.nib
        ):
            return False
        return self.scope is Scope.EMPLOYER or application.application_id == self.application_id


def applicable(
    grants: Iterable[Grant], application: PermitApplication, now: datetime
) -> Grant | None:
    """The override that applies: one for the application itself before one for its employer,
    then the one lasting longest, then the latest granted; so the choice does not depend on the
    order the store returned them in."""
    found = [g for g in grants if g.covers(application, now)]
    if not found:
        return None
    return max(
        found,
        key=lambda g: (
            g.scope is Scope.APPLICATION,
            g.expires_at,
            g.granted_at,
            str(g.override_id),
        ),
    )


def overridden(verdict: Verdict, grant: Grant) -> Verdict:
    """The verdict under the override: CLEARED, with the blocking and deferring reasons replaced
    by OFFICER_OVERRIDE naming them. A verdict with nothing to override (CLEARED, or REJECTED,
    which no officer can make valid) is returned as it is."""
    if verdict.outcome not in (Outcome.BLOCKED, Outcome.PENDING):
        return verdict
    set_aside = [r for r in verdict.reasons if r.details.get("effect") in ("block", "pending")]
    kept = [r for r in verdict.reasons if r not in set_aside]
    reason = Reason(
        code=ReasonCode.OFFICER_OVERRIDE,
        message=(
            "Cleared by an officer override until "
            f"{grant.expires_at.isoformat()} (legal basis: {grant.legal_basis}); "
            "decided again when it ends"
        ),
        details={
            "effect": "advisory",
            "override_id": str(grant.override_id),
            "scope": grant.scope.value,
            "overridden": [
                {"code": r.code.value, "effect": r.details.get("effect")} for r in set_aside
            ],
            "legal_basis": grant.legal_basis,
            "document_ref": grant.document_ref,
            "asked_by": grant.asked_by,
            "approved_by": [grant.granted_by],
            "granted_at": grant.granted_at.isoformat(),
            "expires_at": grant.expires_at.isoformat(),
        },
    )
    return Verdict(
        outcome=Outcome.CLEARED,
        reasons=ordered([*kept, reason]),
        enrolment_as_of=verdict.enrolment_as_of,
        policy_version=verdict.policy_version,
    )


def cited(decision: ComplianceDecision) -> str | None:
    """The id of the override a decision was cleared under, if any."""
    for reason in decision.reasons:
        if reason.code is ReasonCode.OFFICER_OVERRIDE:
            return str(reason.details["override_id"])
    return None
