"""`Store` in memory, for testing a handler's batch logic without a database (and for the
contract test that holds it to the PostgreSQL store's behaviour). Transactions are real in the
one sense that matters to a handler: what a block wrote is kept only if the block ends cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from ptsp_gate.contract.events import (
    ComplianceDecision,
    EnrolmentState,
    PermitApplication,
)
from ptsp_gate.policy import overrides
from ptsp_gate.policy.overrides import Grant, Scope
from ptsp_gate.runtime.intake import Invalid, Valid
from ptsp_gate.stores.decisions import OpenDecision, Outcomes, Traces, announcement
from ptsp_gate.stores.outbox import OutboxRow
from ptsp_gate.stores.overrides import Settling
from ptsp_gate.stores.unit_of_work import DecisionToStore, Rows, Store, Transactions


@dataclass
class StoredDecision:
    decision: ComplianceDecision
    event_id: str
    enrolment_version: int | None
    topic: str
    source: str


@dataclass
class MemoryOverride:
    """A granted override and how far the permit checker has settled it."""

    grant: Grant
    revoked: bool = False
    applied: bool = False
    ended: bool = False

    def in_force(self, now: datetime) -> bool:
        return not (self.revoked or self.ended) and self.grant.expires_at > now


@dataclass
class MemoryState:
    """Everything stored, in the order it was written."""

    processed: dict[tuple[str, str], bytes | None] = field(default_factory=dict)
    enrolments: dict[str, EnrolmentState] = field(default_factory=dict)
    complete_regions: set[str] = field(default_factory=set)
    applications: dict[str, PermitApplication] = field(default_factory=dict)  # by event id
    decisions: list[StoredDecision] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    overrides: list[MemoryOverride] = field(default_factory=list)


class MemoryStore:
    """`Store` over a `MemoryState`."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state

    async def stored_digests(self, topic: str, keys: Iterable[str]) -> dict[str, bytes | None]:
        return {
            k: self.state.processed[topic, k] for k in keys if (topic, k) in self.state.processed
        }

    async def claim(self, topic: str, digests: Mapping[str, bytes]) -> tuple[set[str], set[str]]:
        fresh: set[str] = set()
        conflicting: set[str] = set()
        for key, digest in digests.items():
            if (topic, key) not in self.state.processed:
                self.state.processed[topic, key] = digest
                fresh.add(key)
            elif self.state.processed[topic, key] not in (None, digest):
                conflicting.add(key)
        return fresh, conflicting

    async def claim_dead_letters(self, topic: str, items: Mapping[str, Invalid]) -> set[str]:
        fresh: set[str] = set()
        for key, item in items.items():
            if item.event_id is not None and (topic, item.event_id) in self.state.processed:
                continue
            if (topic, item.content_key) not in self.state.processed:
                self.state.processed[topic, item.content_key] = None
                fresh.add(key)
        return fresh

    async def enrolments(
        self, nibs: Iterable[str], *, lock: bool = False
    ) -> dict[str, EnrolmentState]:
        return {n: self.state.enrolments[n] for n in set(nibs) if n in self.state.enrolments}

    async def apply_enrolments(
        self, states: Sequence[EnrolmentState], source: str, event_ids: Sequence[str | None]
    ) -> set[str]:
        if len({s.nib for s in states}) < len(states):  # an upsert cannot touch a row twice
            raise ValueError("more than one state for one employer")
        applied: set[str] = set()
        for state in states:
            held = self.state.enrolments.get(state.nib)
            if held is None or held.version < state.version:
                self.state.enrolments[state.nib] = state
                applied.add(state.nib)
        return applied

    async def complete_regions(self, regions: Iterable[str | None]) -> set[str]:
        return {r for r in regions if r in self.state.complete_regions}

    async def add_applications(self, items: Sequence[Valid[PermitApplication]]) -> None:
        for item in items:
            if item.event.id in self.state.applications:  # the primary key in PostgreSQL
                raise ValueError(f"application event {item.event.id} is stored already")
            self.state.applications[item.event.id] = item.payload

    async def add_decisions(
        self,
        items: Sequence[DecisionToStore],
        topic: str,
        source: str,
        also: Rows = (),
        traces: Traces | None = None,
    ) -> set[UUID]:
        known = {d.decision.decision_id for d in self.state.decisions}
        stored: set[UUID] = set()
        for decision, event_id, version in items:
            if decision.decision_id in known or decision.decision_id in stored:
                continue
            self.state.decisions.append(StoredDecision(decision, event_id, version, topic, source))
            stored.add(decision.decision_id)
        self.state.outbox.extend(
            announcement(d, topic, source, (traces or {}).get(d.decision_id, ()))
            for d, _, _ in items
            if d.decision_id in stored
        )
        self.state.outbox.extend(also)
        return stored

    async def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        self.state.outbox.extend(rows)

    async def latest_of_employers(
        self, nibs: Sequence[str], submitted_since: datetime, outcomes: Outcomes
    ) -> list[OpenDecision]:
        wanted = set(nibs)
        found = self._latest(
            submitted_since, lambda d: d.decision.nib is not None and d.decision.nib in wanted
        )
        return [f for f in found if f.outcome in outcomes]

    async def latest_of_applications(
        self, ids: Sequence[str], submitted_since: datetime, outcomes: Outcomes
    ) -> list[OpenDecision]:
        wanted = set(ids)
        found = self._latest(submitted_since, lambda d: d.decision.application_id in wanted)
        return [f for f in found if f.outcome in outcomes]

    async def grants(
        self, application_ids: Iterable[str], nibs: Iterable[str], now: datetime
    ) -> list[Grant]:
        ids, employers = set(application_ids), set(nibs)
        return [
            o.grant
            for o in self.state.overrides
            if o.in_force(now)
            and (
                o.grant.application_id in ids
                or (o.grant.scope is Scope.EMPLOYER and o.grant.nib in employers)
            )
        ]

    async def overrides_to_settle(self, now: datetime) -> Settling:
        return Settling(
            granted=[o.grant for o in self.state.overrides if o.in_force(now) and not o.applied],
            ended=[
                o.grant
                for o in self.state.overrides
                if not o.ended and (o.revoked or o.grant.expires_at <= now)
            ],
        )

    async def overrides_settled(
        self, applied: Sequence[UUID], ended: Sequence[UUID], now: datetime
    ) -> None:
        for o in self.state.overrides:
            o.applied = o.applied or o.grant.override_id in applied
            o.ended = o.ended or o.grant.override_id in ended

    async def latest_of_pending(self, since: datetime, outcomes: Outcomes) -> list[OpenDecision]:
        pending = {
            d.decision.application_id
            for d in self.state.decisions
            if d.decision.outcome.value == "PENDING" and d.decision.decided_at >= since
        }
        found = self._latest(since, lambda d: d.decision.application_id in pending)
        return [f for f in found if f.outcome in outcomes]

    def _latest(
        self, submitted_since: datetime, which: Callable[[StoredDecision], bool]
    ) -> list[OpenDecision]:
        latest: dict[str, StoredDecision] = {}
        for stored in self.state.decisions:
            application = self.state.applications.get(stored.event_id)
            if (
                stored.decision.outcome.value == "REJECTED"
                or application is None
                or application.submitted_at < submitted_since
                or not which(stored)
            ):
                continue
            latest[stored.decision.application_id] = stored
        return [
            OpenDecision(
                decision_id=s.decision.decision_id,
                outcome=s.decision.outcome.value,
                reason_codes=tuple(r.code.value for r in s.decision.reasons),
                event_id=s.event_id,
                application=self.state.applications[s.event_id],
                override_id=overrides.cited(s.decision),
            )
            # In application order, as DISTINCT ON (application_id) returns them.
            for _, s in sorted(latest.items())
        ]

    async def take_sweep_turn(self) -> bool:
        return True


def memory_transactions(state: MemoryState) -> Transactions:
    """Transactions over `state`, one at a time: a block that raises leaves it as it was."""
    lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[Store]:
        async with lock:
            draft = copy.deepcopy(state)
            yield MemoryStore(draft)
            state.__dict__.update(draft.__dict__)

    return transaction
