"""One batch of employer-state records in, one transaction out.

Each record is the whole state of one employer with a version that only grows; a record applies
only when its version is newer than the stored one, so replays and reordering are harmless.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ptsp_gate import redecide
from ptsp_gate.contract.events import CE_TYPE_ENROLMENT, EnrolmentState
from ptsp_gate.observability import tracing
from ptsp_gate.runtime import intake
from ptsp_gate.runtime.context import HandlerContext
from ptsp_gate.runtime.intake import Invalid, RawRecord, Valid


class EnrolmentSync:
    def __init__(self, ctx: HandlerContext) -> None:
        self._ctx = ctx

    async def handle_batch(self, records: Sequence[RawRecord]) -> None:
        max_bytes = self._ctx.max_event_bytes
        items = [intake.read(r, EnrolmentState, (CE_TYPE_ENROLMENT,), max_bytes) for r in records]
        valid = [i for i in items if isinstance(i, Valid)]
        invalid = [i for i in items if isinstance(i, Invalid)]
        # Only the newest version per employer in a batch can apply; the rest are stale already.
        newest: dict[str, Valid[EnrolmentState]] = {}
        for item in valid:
            held = newest.get(item.payload.nib)
            if held is None or item.payload.version > held.payload.version:
                newest[item.payload.nib] = item
        spans = {
            id(item): tracing.consume_span(item.record, intake.cloud_event(item)) for item in items
        }
        started = time.time_ns()
        try:
            applied, dead, changes = await self._commit(list(newest.values()), invalid, spans)
        except BaseException as exc:
            tracing.failed(spans.values(), exc)
            raise
        tracing.committed(spans.values(), started)
        m = self._ctx.metrics
        m.enrolment_updates.labels("applied").inc(len(applied))
        m.enrolment_updates.labels("stale").inc(len(valid) - len(applied))
        self._note_dead(dead, spans)
        redecide.observe(m, changes, trigger="enrolment-update")

    async def dead_letter(self, record: RawRecord, reason: str) -> None:
        """A record that fails even alone, with the infrastructure healthy: set aside as
        PROCESSING_FAILED, so the employers behind it are applied."""
        _, dead, _ = await self._commit(
            [], [Invalid(record, "PROCESSING_FAILED", reason, [], None, None)], {}
        )
        self._note_dead(dead, {})

    def _note_dead(self, dead: Sequence[Invalid], spans: dict[int, tracing.Span]) -> None:
        self._ctx.metrics.enrolment_updates.labels("invalid").inc(len(dead))
        for bad in dead:
            span = spans.get(id(bad))
            self._ctx.note_dead_letter(bad, **(tracing.log_fields(span) if span else {}))

    async def _commit(
        self,
        valid: Sequence[Valid[EnrolmentState]],
        invalid: Sequence[Invalid],
        spans: dict[int, tracing.Span],
    ) -> tuple[set[str], list[Invalid], list[redecide.Change]]:
        async with self._ctx.transactions() as store:
            applied = await store.apply_enrolments(
                [v.payload for v in valid], "stream", [v.event.id for v in valid]
            )
            # Same transaction: the new state and the decisions it changes become visible together.
            # A re-decision continues the trace of the enrolment record that caused it.
            traces = {
                v.payload.nib: tracing.outgoing(spans[id(v)]) for v in valid if id(v) in spans
            }
            changes = await self._ctx.redecider.employers(
                store, sorted(applied), self._ctx.clock(), traces
            )
            dead: list[Invalid] = []
            if invalid:
                # Dedupe dead letters too, so a redelivered bad record is not dead-lettered twice.
                unique = {i.event_key: i for i in reversed(invalid)}
                fresh = await store.claim_dead_letters(invalid[0].record.topic, unique)
                dead = [i for k, i in unique.items() if k in fresh]
                now = self._ctx.clock()
                await store.add_outbox([self._ctx.dead_letter(i, now) for i in dead])
        return applied, dead, changes
