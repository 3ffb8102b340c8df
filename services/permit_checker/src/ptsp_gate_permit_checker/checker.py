"""One batch of permit events in, one transaction out.

Per batch: read every record (pure), drop events already handled (by ce_id), look up the
employers' enrolment states at once, decide (pure), and in a single transaction store the
applications, the decisions and their outbox rows. The caller commits Kafka offsets only after
this returns, so a crash anywhere before that replays the batch and the dedupe absorbs it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ptsp_gate import decisions
from ptsp_gate.contract.dead_letter import REPLAYED_FROM
from ptsp_gate.contract.events import (
    ACTION_BY_CE_TYPE,
    Action,
    ComplianceDecision,
    EnrolmentState,
    Outcome,
    PermitApplication,
)
from ptsp_gate.observability import decision_log, tracing
from ptsp_gate.policy import rejected
from ptsp_gate.policy.overrides import Grant
from ptsp_gate.runtime import intake
from ptsp_gate.runtime.context import HandlerContext
from ptsp_gate.runtime.intake import Invalid, RawRecord, Valid
from ptsp_gate.stores.unit_of_work import Store

ACCEPTED_TYPES = tuple(ACTION_BY_CE_TYPE)

Item = Valid[PermitApplication] | Invalid
# Each record's consume span, by (partition, offset): unique within a batch.
Spans = Mapping[tuple[int, int], tracing.Span]


@dataclass(frozen=True, slots=True)
class Decided:
    """What one input event produced: a decision (absent only for an unreadable application id)
    and/or a dead-letter record."""

    event_key: str
    decision: ComplianceDecision | None
    event_time: datetime
    invalid: Invalid | None
    enrolment_version: int | None
    record: RawRecord
    span: tracing.Span


class PermitChecker:
    def __init__(self, ctx: HandlerContext) -> None:
        self._ctx = ctx

    async def handle_batch(self, records: Sequence[RawRecord]) -> None:
        # Partitions are independent (a NIB always maps to one), so their groups commit
        # concurrently on separate connections: one group's parsing and deciding overlaps another's
        # database round trips. Within a partition, order is kept.
        groups: dict[int, list[Item]] = {}
        spans: dict[tuple[int, int], tracing.Span] = {}
        for record in records:
            item = read(record, self._ctx.max_event_bytes)
            spans[record.partition, record.offset] = tracing.consume_span(
                record, intake.cloud_event(item)
            )
            groups.setdefault(record.partition % self._ctx.parallel, []).append(item)
        results = await asyncio.gather(
            *(self._commit(g, spans) for g in groups.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                # Groups that did commit are deduplicated when the whole batch is redelivered.
                # The runtime tells a transient failure (retried) from any other (retried, then
                # isolated) by the first group that failed, as it would for one group.
                raise result
        self._observe(
            [d for result in results if not isinstance(result, BaseException) for d in result]
        )

    async def dead_letter(self, record: RawRecord, reason: str) -> None:
        """A record that fails even alone, with the infrastructure healthy: set aside as
        PROCESSING_FAILED (not REJECTED: the event may be valid; a replay decides it once the
        cause is fixed)."""
        item = Invalid(record, "PROCESSING_FAILED", reason, [], None, None)
        self._observe(
            await self._commit(
                [item], {(record.partition, record.offset): tracing.consume_span(record)}
            )
        )

    async def _commit(self, items: Sequence[Item], spans: Spans) -> list[Decided]:
        """Store and decide what is new, in one transaction. An event under a ce_id handled
        before (or earlier in the batch) is a redelivery when its content is the same, absorbed;
        otherwise an ID_CONFLICT, dead-lettered and answered."""
        if not items:
            return []
        mine = [spans[i.record.partition, i.record.offset] for i in items]
        started = time.time_ns()
        try:
            decided = await self._transaction(items, spans)
        except BaseException as exc:
            tracing.failed(mine, exc)
            raise
        tracing.committed(mine, started)
        return decided

    async def _transaction(self, items: Sequence[Item], spans: Spans) -> list[Decided]:
        topic = items[0].record.topic
        ids = {i.event.id if isinstance(i, Valid) else i.event_id for i in items}
        decided: list[Decided] = []
        async with self._ctx.transactions() as store:
            known = await store.stored_digests(topic, {i for i in ids if i})
            accepted, dead, order, absorbed = sort_by_id(items, known)
            digests = {key: item.content_digest for key, item in accepted.items()}
            fresh, conflicting = await store.claim(topic, digests) if accepted else (set(), set())
            for key in set(accepted) - fresh:  # claimed meanwhile by another partition's batch
                item = accepted.pop(key)
                if key in conflicting:
                    bad = intake.id_conflict(item)
                    dead[bad.content_key] = bad
                    order[order.index((True, key))] = (False, bad.content_key)
                else:
                    absorbed += 1
            # Not by ce_id: a dead letter must stay replayable once its cause is fixed.
            claimed = await store.claim_dead_letters(topic, dead)
            todo = [
                accepted[key] if is_accepted else dead[key]
                for is_accepted, key in order
                if (key in accepted if is_accepted else key in claimed)
            ]
            if todo:
                decided = await self._decide_and_store(store, todo, spans)
        if absorbed:
            self._ctx.metrics.duplicates.labels(topic).inc(absorbed)
        return decided

    async def _decide_and_store(
        self, store: Store, todo: Sequence[Item], spans: Spans
    ) -> list[Decided]:
        valid = [i for i in todo if isinstance(i, Valid)]
        states = await store.enrolments((i.payload.employer.nib for i in valid), lock=True)
        complete = await store.complete_regions(i.payload.region_code for i in valid)
        now = self._ctx.clock()
        grants = await store.grants(
            (i.payload.application_id for i in valid), (i.payload.employer.nib for i in valid), now
        )
        decided: list[Decided] = []
        for item in todo:
            span = spans[item.record.partition, item.record.offset]
            with tracing.child(span, "decide"):
                decided.append(self._decide(item, states, complete, grants, now, span=span))
        await store.add_applications(valid)
        failed_at = self._ctx.clock()
        await store.add_decisions(
            [
                (d.decision, d.event_key, d.enrolment_version)
                for d in decided
                if d.decision is not None
            ],
            self._ctx.decisions_topic,
            self._ctx.event_source,
            also=[
                self._ctx.dead_letter(d.invalid, failed_at)
                for d in decided
                if d.invalid is not None
            ],
            traces={
                d.decision.decision_id: tracing.outgoing(d.span)
                for d in decided
                if d.decision is not None
            },
        )
        return decided

    def _decide(
        self,
        item: Item,
        states: dict[str, EnrolmentState],
        complete: set[str],
        grants: Sequence[Grant],
        now: datetime,
        *,
        span: tracing.Span,
    ) -> Decided:
        policies = self._ctx.policies
        if isinstance(item, Valid):
            app = item.payload
            enrolment = states.get(app.employer.nib)
            decision = decisions.for_application(
                item.event.id,
                app,
                enrolment,
                policies=policies,
                complete_regions=complete,
                now=now,
                grants=grants,
            )
            version = enrolment.version if enrolment is not None else None
            event_time = item.event.time or app.submitted_at
            return Decided(item.event_key, decision, event_time, None, version, item.record, span)
        # An invalid event still gets an answer when the PTSP can tell which application it was.
        app_id = item.field("application_id")
        if app_id is None:
            return Decided(item.event_key, None, now, item, None, item.record, span)
        region = item.field("region_code")
        verdict = rejected(
            policies.for_region(region).version,
            item.problems or [{"field": "(record)", "error": item.message}],
            f"{item.code}: {item.message}",
        )
        decision = decisions.build(
            item.event_key,
            verdict,
            application_id=app_id,
            nib=item.field("employer", "nib"),
            action=_action_of(item),
            region_code=region,
            enrolment_version=None,
            now=now,
        )
        return Decided(item.event_key, decision, now, item, None, item.record, span)

    def _observe(self, decided: Sequence[Decided]) -> None:
        m = self._ctx.metrics
        committed_at = self._ctx.clock()
        outcomes: Counter[tuple[str, str]] = Counter()
        blocks: Counter[str] = Counter()
        log_each = decision_log.enabled()
        for d in decided:
            if d.invalid is not None:
                self._ctx.note_dead_letter(
                    d.invalid,
                    application_id=d.decision.application_id if d.decision else None,
                    **tracing.log_fields(d.span),
                )
            decision = d.decision
            if decision is None:
                continue
            if log_each:
                decision_log.decided(decision, d.event_key, d.record, tracing.log_fields(d.span))
            outcomes[decision.outcome.value, decision.action or "UNKNOWN"] += 1
            if decision.outcome is Outcome.BLOCKED:
                blocks.update(
                    r.code.value for r in decision.reasons if r.details.get("effect") == "block"
                )
            if d.invalid is None:
                m.decision_latency.observe(max((committed_at - d.event_time).total_seconds(), 0.0))
        for (outcome, action), n in outcomes.items():
            m.decisions.labels(outcome, action).inc(n)
        for code, n in blocks.items():
            m.block_reasons.labels(code).inc(n)


def read(record: RawRecord, max_bytes: int) -> Item:
    """A permit event as received: valid, or the reason it cannot be used."""
    item = intake.read(record, PermitApplication, ACCEPTED_TYPES, max_bytes)
    if isinstance(item, Valid) and ACTION_BY_CE_TYPE[item.event.type] is not item.payload.action:
        return Invalid(
            record,
            "TYPE_ACTION_MISMATCH",
            f"ce_type {item.event.type} does not agree with action {item.payload.action.value}",
            [{"field": "action", "error": "does not agree with ce_type"}],
            item.event.id,
            intake.event_data(item.event, record.value),
            item.event.type,
        )
    return item


Order = list[tuple[bool, str]]  # (accepted?, key) in batch order: ce_id, or a dead letter's digest


def sort_by_id(
    items: Sequence[Item], known: dict[str, bytes | None]
) -> tuple[dict[str, Valid[PermitApplication]], dict[str, Invalid], Order, int]:
    """Which items are new events, which are dead letters (ID conflicts among them), and how
    many are redeliveries; `known` maps the ce_ids handled before to their content digests
    (None: recorded before digests were kept) and is extended with the batch's own."""
    accepted: dict[str, Valid[PermitApplication]] = {}
    dead: dict[str, Invalid] = {}  # by content key
    order: Order = []
    absorbed = 0
    for item in items:
        if isinstance(item, Valid):
            key = item.event.id
            if key not in known:
                known[key] = item.content_digest
                accepted[key] = item
                order.append((True, key))
                continue
            if known[key] in (None, item.content_digest):
                absorbed += 1
                continue
            bad = intake.id_conflict(item)
        elif item.event_id is not None and item.event_id in known:
            if _replayed(item.record):
                absorbed += 1  # replayed from the DLQ after a resend was accepted
                continue
            bad = intake.id_conflict(item)
        else:
            bad = item
        if bad.content_key not in dead:
            dead[bad.content_key] = bad
            order.append((False, bad.content_key))
    return accepted, dead, order, absorbed


def _replayed(record: RawRecord) -> bool:
    return any(name == REPLAYED_FROM for name, _ in record.headers)


def _action_of(item: Invalid) -> Action | None:
    raw = item.field("action")
    if raw is not None and raw in Action.__members__:
        return Action(raw)
    return ACTION_BY_CE_TYPE.get(item.event_type) if item.event_type else None
