"""Re-deciding open applications when what they were decided on has changed.

An application is open when its latest decision is PENDING or BLOCKED and it was submitted within
the re-decision window. When its employer's enrolment state changes (stream or import), or on the
periodic sweep of PENDING applications, it is decided again under the policy in force; a new
decision superseding the old one is stored and announced only when the outcome or the reasons
differ. Everything is set-wise: one query finds the candidates among any number of employers.

Officer overrides are honoured on every path: an application is decided under the override in
force for it. When one is granted, its open applications are decided again under it; when it
expires or is revoked, the applications it cleared are decided again without it, however long
ago they were submitted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ptsp_gate import decisions
from ptsp_gate.contract.events import ComplianceDecision
from ptsp_gate.observability import decision_log, tracing
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook, overrides
from ptsp_gate.policy.overrides import Scope
from ptsp_gate.stores.decisions import OpenDecision
from ptsp_gate.stores.unit_of_work import Store

OPEN = ("PENDING", "BLOCKED")
# An override may outlast the re-decision window; what it cleared is decided again all the same.
_EVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Change:
    application_id: str
    nib: str
    from_outcome: str
    to_outcome: str
    decision: ComplianceDecision
    event_id: str
    enrolment_version: int | None
    trace: tracing.OutHeaders  # the trace context the decision carries on


@dataclass(frozen=True, slots=True)
class Redecider:
    """What re-deciding needs besides the store: the policies, the window, and where decisions
    are announced."""

    policies: PolicyBook
    window_days: int
    decisions_topic: str
    event_source: str

    async def employers(
        self,
        store: Store,
        nibs: Sequence[str],
        now: datetime,
        traces: Mapping[str, tracing.OutHeaders] | None = None,
    ) -> list[Change]:
        """In the store's transaction: re-decide the open applications of these employers.
        `traces` gives the trace context of each employer's change (by NIB); a decision of an
        employer it does not name carries the current context."""
        if not nibs:
            return []
        since = now - timedelta(days=self.window_days)
        found = await store.latest_of_employers(nibs, since, OPEN)
        return await self._redecide(store, found, now, traces)

    async def overrides(self, store: Store, now: datetime) -> list[Change]:
        """In the store's transaction: decide again the open applications of the overrides
        granted since the last call, and the applications cleared by overrides that have ended
        since; then mark them settled."""
        work = await store.overrides_to_settle(now)
        if not work:
            return []
        since = now - timedelta(days=self.window_days)
        found: list[OpenDecision] = []
        for grants, submitted_since, outcomes in (
            (work.granted, since, OPEN),
            (work.ended, _EVER, ("CLEARED",)),
        ):
            ids = [g.application_id for g in grants if g.application_id is not None]
            nibs = [g.nib for g in grants if g.scope is Scope.EMPLOYER]
            if ids:
                found += await store.latest_of_applications(ids, submitted_since, outcomes)
            if nibs:
                found += await store.latest_of_employers(nibs, submitted_since, outcomes)
        ended = {str(g.override_id) for g in work.ended}
        unique = {
            f.application.application_id: f
            for f in found
            if f.outcome != "CLEARED" or f.override_id in ended
        }
        changes = await self._redecide(store, list(unique.values()), now)
        await store.overrides_settled(
            [g.override_id for g in work.granted], [g.override_id for g in work.ended], now
        )
        return changes

    async def pending(self, store: Store, now: datetime) -> list[Change]:
        """In the store's transaction: re-decide every open PENDING application, so that
        ENROLMENT_UNKNOWN and ENROLMENT_STALE resolve once data is there (or a region's complete
        snapshot makes absence meaningful), whatever path the data came by."""
        found = await store.latest_of_pending(now - timedelta(days=self.window_days), ("PENDING",))
        return await self._redecide(store, found, now)

    async def _redecide(
        self,
        store: Store,
        found: Sequence[OpenDecision],
        now: datetime,
        traces: Mapping[str, tracing.OutHeaders] | None = None,
    ) -> list[Change]:
        if not found:
            return []
        states = await store.enrolments(f.application.employer.nib for f in found)
        complete = await store.complete_regions(f.application.region_code for f in found)
        grants = await store.grants(
            (f.application.application_id for f in found),
            (f.application.employer.nib for f in found),
            now,
        )
        current = tracing.current_headers()
        changes: list[Change] = []
        for old in found:
            application = old.application
            enrolment = states.get(application.employer.nib)
            decision = decisions.for_application(
                old.event_id,
                application,
                enrolment,
                policies=self.policies,
                complete_regions=complete,
                now=now,
                supersedes=old.decision_id,
                grants=grants,
            )
            codes = tuple(r.code.value for r in decision.reasons)
            if (
                decision.outcome.value == old.outcome
                and codes == old.reason_codes
                and overrides.cited(decision) == old.override_id
            ):
                continue
            changes.append(
                Change(
                    application.application_id,
                    application.employer.nib,
                    old.outcome,
                    decision.outcome.value,
                    decision,
                    old.event_id,
                    enrolment.version if enrolment is not None else None,
                    (traces or {}).get(application.employer.nib, current),
                )
            )
        # A concurrent re-decider may have stored the same decision first: only what this
        # transaction inserted counts (and is announced).
        stored = await store.add_decisions(
            [(c.decision, c.event_id, c.enrolment_version) for c in changes],
            self.decisions_topic,
            self.event_source,
            traces={c.decision.decision_id: c.trace for c in changes},
        )
        return [c for c in changes if c.decision.decision_id in stored]


def observe(metrics: Metrics, changes: Sequence[Change], trigger: str) -> None:
    """Count and log committed re-decisions (call after the transaction commits)."""
    if decision_log.enabled():
        for c in changes:
            decision_log.superseded(
                c.decision,
                event_id=c.event_id,
                from_outcome=c.from_outcome,
                trigger=trigger,
                trace=tracing.log_fields_of(c.trace),
            )
    for (old, new), n in Counter((c.from_outcome, c.to_outcome) for c in changes).items():
        metrics.redecisions.labels(old, new).inc(n)
