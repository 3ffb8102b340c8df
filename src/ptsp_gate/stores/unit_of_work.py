"""What a handler reads and writes within one transaction, as one interface (`Store`), with its
PostgreSQL implementation. Handlers depend on the interface only, so their batch logic is tested
against the in-memory store (`ptsp_gate.stores.memory`) as well as against PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol
from uuid import UUID

import asyncpg

from ptsp_gate.contract.events import ComplianceDecision, EnrolmentState, PermitApplication
from ptsp_gate.policy.overrides import Grant
from ptsp_gate.runtime.intake import Invalid, Valid
from ptsp_gate.stores import applications, decisions, enrolments, idempotency, outbox, overrides
from ptsp_gate.stores.decisions import OpenDecision, Outcomes, Traces
from ptsp_gate.stores.outbox import OutboxRow

# (decision, the input event's key, the enrolment version it used)
DecisionToStore = tuple[ComplianceDecision, str, int | None]
Rows = Sequence[OutboxRow]

# Several permit-checker instances may run; one sweep of pending applications at a time is enough.
_SWEEP_LOCK = 0x7074_7370_0003


class Store(Protocol):
    """One transaction's view of the stored state. Every method runs inside that transaction."""

    async def stored_digests(self, topic: str, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Input keys handled before, with the content digest each was accepted with."""
        ...

    async def claim(self, topic: str, digests: Mapping[str, bytes]) -> tuple[set[str], set[str]]:
        """Record input keys as handled: (keys new, keys seen before with other content)."""
        ...

    async def claim_dead_letters(self, topic: str, items: Mapping[str, Invalid]) -> set[str]:
        """Record records about to be dead-lettered; returns the keys not seen before."""
        ...

    async def enrolments(
        self, nibs: Iterable[str], *, lock: bool = False
    ) -> dict[str, EnrolmentState]:
        """The stored states of these employers (share-locked to the transaction's end)."""
        ...

    async def apply_enrolments(
        self, states: Sequence[EnrolmentState], source: str, event_ids: Sequence[str | None]
    ) -> set[str]:
        """Store each state whose version is newer than the stored one; the NIBs applied."""
        ...

    async def complete_regions(self, regions: Iterable[str | None]) -> set[str]:
        """Regions whose complete BPJS TK snapshot has been loaded."""
        ...

    async def add_applications(self, items: Sequence[Valid[PermitApplication]]) -> None: ...

    async def add_decisions(
        self,
        items: Sequence[DecisionToStore],
        topic: str,
        source: str,
        also: Rows = (),
        traces: Traces | None = None,
    ) -> set[UUID]:
        """Store decisions and queue them (and `also`) for publication, each with its trace
        context headers from `traces`; the ids stored."""
        ...

    async def add_outbox(self, rows: Sequence[OutboxRow]) -> None: ...

    async def latest_of_employers(
        self, nibs: Sequence[str], submitted_since: datetime, outcomes: Outcomes
    ) -> list[OpenDecision]: ...

    async def latest_of_applications(
        self, ids: Sequence[str], submitted_since: datetime, outcomes: Outcomes
    ) -> list[OpenDecision]: ...

    async def latest_of_pending(
        self, since: datetime, outcomes: Outcomes
    ) -> list[OpenDecision]: ...

    async def grants(
        self, application_ids: Iterable[str], nibs: Iterable[str], now: datetime
    ) -> list[Grant]:
        """The officer overrides in force for these applications or employers."""
        ...

    async def overrides_to_settle(self, now: datetime) -> overrides.Settling:
        """Overrides granted or ended whose applications are still to be decided again (locked
        to the transaction's end)."""
        ...

    async def overrides_settled(
        self, applied: Sequence[UUID], ended: Sequence[UUID], now: datetime
    ) -> None: ...

    async def take_sweep_turn(self) -> bool:
        """Whether this transaction may sweep pending applications (one sweeper at a time)."""
        ...


Transactions = Callable[[], AbstractAsyncContextManager[Store]]


class PostgresStore:
    """`Store` over one connection inside an open transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def stored_digests(self, topic: str, keys: Iterable[str]) -> dict[str, bytes | None]:
        return await idempotency.stored_digests(self.conn, topic, keys)

    async def claim(self, topic: str, digests: Mapping[str, bytes]) -> tuple[set[str], set[str]]:
        return await idempotency.claim(self.conn, topic, digests)

    async def claim_dead_letters(self, topic: str, items: Mapping[str, Invalid]) -> set[str]:
        return await idempotency.claim_dead_letters(self.conn, topic, items)

    async def enrolments(
        self, nibs: Iterable[str], *, lock: bool = False
    ) -> dict[str, EnrolmentState]:
        return await enrolments.fetch_many(self.conn, nibs, lock=lock)

    async def apply_enrolments(
        self, states: Sequence[EnrolmentState], source: str, event_ids: Sequence[str | None]
    ) -> set[str]:
        return await enrolments.apply_newer(self.conn, states, source, event_ids)

    async def complete_regions(self, regions: Iterable[str | None]) -> set[str]:
        return await enrolments.complete_regions(self.conn, regions)

    async def add_applications(self, items: Sequence[Valid[PermitApplication]]) -> None:
        await applications.insert(self.conn, items)

    async def add_decisions(
        self,
        items: Sequence[DecisionToStore],
        topic: str,
        source: str,
        also: Rows = (),
        traces: Traces | None = None,
    ) -> set[UUID]:
        return await decisions.store_decisions(
            self.conn, items, topic, source, also=also, traces=traces
        )

    async def add_outbox(self, rows: Sequence[OutboxRow]) -> None:
        await outbox.insert(self.conn, rows)

    async def latest_of_employers(
        self, nibs: Sequence[str], submitted_since: datetime, outcomes: Outcomes
    ) -> list[OpenDecision]:
        return await decisions.latest_of_employers(self.conn, nibs, submitted_since, outcomes)

    async def latest_of_applications(
        self, ids: Sequence[str], submitted_since: datetime, outcomes: Outcomes
    ) -> list[OpenDecision]:
        return await decisions.latest_of_applications(self.conn, ids, submitted_since, outcomes)

    async def latest_of_pending(self, since: datetime, outcomes: Outcomes) -> list[OpenDecision]:
        return await decisions.latest_of_pending(self.conn, since, outcomes)

    async def grants(
        self, application_ids: Iterable[str], nibs: Iterable[str], now: datetime
    ) -> list[Grant]:
        return await overrides.in_force(self.conn, application_ids, nibs, now)

    async def overrides_to_settle(self, now: datetime) -> overrides.Settling:
        return await overrides.to_settle(self.conn, now)

    async def overrides_settled(
        self, applied: Sequence[UUID], ended: Sequence[UUID], now: datetime
    ) -> None:
        await overrides.settled(self.conn, applied, ended, now)

    async def take_sweep_turn(self) -> bool:
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _SWEEP_LOCK))


def postgres_transactions(pool: asyncpg.Pool) -> Transactions:
    """A transaction on a pooled connection per call, committed when the block ends cleanly."""

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[Store]:
        async with pool.acquire() as conn, conn.transaction():
            yield PostgresStore(conn)

    return transaction
