"""One batch of employer-state records in, one PostgreSQL transaction out.

Each record is the whole state of one employer with a version that only grows; a record applies
only when its version is newer than the stored one, so replays and reordering are harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from ptsp_gate import redecide
from ptsp_gate.adapters.postgres import TRANSIENT_DB_ERRORS
from ptsp_gate.contract.events import CE_TYPE_ENROLMENT, EnrolmentState
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook
from ptsp_gate.runtime import dead_lettering, intake
from ptsp_gate.runtime.errors import TransientFailure
from ptsp_gate.runtime.intake import Invalid, RawRecord, Valid
from ptsp_gate.stores import enrolments, idempotency, outbox

log = get_logger(__name__)


class EnrolmentSync:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        metrics: Metrics,
        dlq_topic: Callable[[str], str],
        max_event_bytes: int,
        policies: PolicyBook,
        redecide_window_days: int,
        decisions_topic: str,
        event_source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._policies = policies
        self._window_days = redecide_window_days
        self._decisions_topic = decisions_topic
        self._event_source = event_source
        self._metrics = metrics
        self._dlq_topic = dlq_topic
        self._max_bytes = max_event_bytes
        self._clock = clock

    async def handle_batch(self, records: Sequence[RawRecord]) -> None:
        items = [
            intake.read(r, EnrolmentState, (CE_TYPE_ENROLMENT,), self._max_bytes) for r in records
        ]
        valid = [i for i in items if isinstance(i, Valid)]
        invalid = [i for i in items if isinstance(i, Invalid)]
        # Only the newest version per employer in a batch can apply; the rest are stale already.
        newest: dict[str, Valid[EnrolmentState]] = {}
        for item in valid:
            held = newest.get(item.payload.nib)
            if held is None or item.payload.version > held.payload.version:
                newest[item.payload.nib] = item
        try:
            applied, dead, changes = await self._commit(list(newest.values()), invalid)
        except TRANSIENT_DB_ERRORS as exc:
            raise TransientFailure(f"{type(exc).__name__}: {exc}") from exc
        m = self._metrics
        m.enrolment_updates.labels("applied").inc(len(applied))
        m.enrolment_updates.labels("stale").inc(len(valid) - len(applied))
        self._note_dead(dead)
        redecide.observe(m, changes, trigger="enrolment-update")

    async def dead_letter(self, record: RawRecord, reason: str) -> None:
        """A record that fails even alone, with the infrastructure healthy: set aside as
        PROCESSING_FAILED, so the employers behind it are applied."""
        _, dead, _ = await self._commit(
            [], [Invalid(record, "PROCESSING_FAILED", reason, [], None, None)]
        )
        self._note_dead(dead)

    def _note_dead(self, dead: Sequence[Invalid]) -> None:
        self._metrics.enrolment_updates.labels("invalid").inc(len(dead))
        for bad in dead:
            dead_lettering.note_dead_letter(self._metrics, self._dlq_topic(bad.record.topic), bad)

    async def _commit(
        self, valid: Sequence[Valid[EnrolmentState]], invalid: Sequence[Invalid]
    ) -> tuple[set[str], list[Invalid], list[redecide.Change]]:
        async with self._pool.acquire() as conn, conn.transaction():
            applied = await enrolments.apply_newer(
                conn, [v.payload for v in valid], "stream", [v.event.id for v in valid]
            )
            # Same transaction: the new state and the decisions it changes become visible together.
            changes = await redecide.redecide_employers(
                conn,
                sorted(applied),
                policies=self._policies,
                window_days=self._window_days,
                now=self._clock(),
                decisions_topic=self._decisions_topic,
                event_source=self._event_source,
            )
            dead: list[Invalid] = []
            if invalid:
                # Dedupe dead letters too, so a redelivered bad record is not dead-lettered twice.
                unique = {i.event_key: i for i in reversed(invalid)}
                fresh = await idempotency.claim_dead_letters(conn, invalid[0].record.topic, unique)
                dead = [i for k, i in unique.items() if k in fresh]
                now = self._clock()
                await outbox.insert(
                    conn,
                    [
                        dead_lettering.dead_letter(i, self._dlq_topic(i.record.topic), now)
                        for i in dead
                    ],
                )
        return applied, dead, changes
