"""One batch of permit events in, one PostgreSQL transaction out.

Per batch: read every record (pure), drop events already handled (by ce_id), look up the
employers' enrolment states in one query, decide (pure), and in a single transaction store the
applications, the decisions and their outbox rows. The caller commits Kafka offsets only after
this returns, so a crash anywhere before that replays the batch and the dedupe absorbs it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from ptsp_gate.adapters.postgres import TRANSIENT_DB_ERRORS
from ptsp_gate.contract.dead_letter import REPLAYED_FROM
from ptsp_gate.contract.events import (
    ACTION_BY_CE_TYPE,
    Action,
    ComplianceDecision,
    EnrolmentState,
    Outcome,
    PermitApplication,
)
from ptsp_gate.observability import decision_log
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook, Verdict, decide, decision_id, rejected
from ptsp_gate.redecide import complete_regions
from ptsp_gate.runtime import dead_lettering, intake
from ptsp_gate.runtime.errors import TransientFailure
from ptsp_gate.runtime.intake import Invalid, RawRecord, Valid
from ptsp_gate.stores import decisions, enrolments, idempotency

log = get_logger(__name__)

ACCEPTED_TYPES = tuple(ACTION_BY_CE_TYPE)


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


class PermitChecker:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        policies: PolicyBook,
        metrics: Metrics,
        decisions_topic: str,
        dlq_topic: Callable[[str], str],
        event_source: str,
        max_event_bytes: int,
        parallel: int = 1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._parallel = max(parallel, 1)
        self._policies = policies
        self._metrics = metrics
        self._decisions_topic = decisions_topic
        self._dlq_topic = dlq_topic
        self._source = event_source
        self._max_bytes = max_event_bytes
        self._clock = clock

    async def handle_batch(self, records: Sequence[RawRecord]) -> None:
        items = [self._read(r) for r in records]
        # Partitions are independent (a NIB always maps to one), so their groups commit
        # concurrently on separate connections: one group's parsing and deciding overlaps another's
        # database round trips. Within a partition, order is kept.
        groups: dict[int, list[Valid[PermitApplication] | Invalid]] = {}
        for item in items:
            groups.setdefault(item.record.partition % self._parallel, []).append(item)
        results = await asyncio.gather(
            *(self._commit(g) for g in groups.values()), return_exceptions=True
        )
        decided: list[Decided] = []
        for result in results:
            if isinstance(result, TRANSIENT_DB_ERRORS):
                # Groups that did commit are deduplicated when the whole batch is redelivered.
                raise TransientFailure(f"{type(result).__name__}: {result}") from result
            if isinstance(result, BaseException):
                # PostgreSQL refused something, or deciding failed: the runtime retries, then
                # takes the batch apart and dead-letters the record that fails alone.
                raise result
            decided += result
        self._observe(decided)

    async def dead_letter(self, record: RawRecord, reason: str) -> None:
        """A record that fails even alone, with the infrastructure healthy: set aside as
        PROCESSING_FAILED (not REJECTED: the event may be valid; a replay decides it once the
        cause is fixed)."""
        self._observe(
            await self._commit([Invalid(record, "PROCESSING_FAILED", reason, [], None, None)])
        )

    def _read(self, record: RawRecord) -> Valid[PermitApplication] | Invalid:
        item = intake.read(record, PermitApplication, ACCEPTED_TYPES, self._max_bytes)
        if (
            isinstance(item, Valid)
            and ACTION_BY_CE_TYPE[item.event.type] is not item.payload.action
        ):
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

    async def _commit(self, items: Sequence[Valid[PermitApplication] | Invalid]) -> list[Decided]:
        """Store and decide what is new, in one transaction. An event under a ce_id handled
        before (or earlier in the batch) is a redelivery when its content is the same, absorbed;
        otherwise an ID_CONFLICT, dead-lettered and answered."""
        if not items:
            return []
        topic = items[0].record.topic
        ids = {i.event.id if isinstance(i, Valid) else i.event_id for i in items}
        decided: list[Decided] = []
        async with self._pool.acquire() as conn, conn.transaction():
            known = await idempotency.stored_digests(conn, topic, {i for i in ids if i})
            accepted, dead, order, absorbed = _sort_by_id(items, known)
            digests = {key: item.content_digest for key, item in accepted.items()}
            fresh, conflicting = (
                await idempotency.claim(conn, topic, digests) if accepted else (set(), set())
            )
            for key in set(accepted) - fresh:  # claimed meanwhile by another partition's batch
                item = accepted.pop(key)
                if key in conflicting:
                    bad = intake.id_conflict(item)
                    dead[bad.content_key] = bad
                    order[order.index((True, key))] = (False, bad.content_key)
                else:
                    absorbed += 1
            # Not by ce_id: a dead letter must stay replayable once its cause is fixed.
            claimed = await idempotency.claim_dead_letters(conn, topic, dead)
            todo = [
                accepted[key] if is_accepted else dead[key]
                for is_accepted, key in order
                if (key in accepted if is_accepted else key in claimed)
            ]
            if todo:
                valid = [i for i in todo if isinstance(i, Valid)]
                states = await enrolments.fetch_many(
                    conn, (i.payload.employer.nib for i in valid), lock=True
                )
                complete = await complete_regions(conn, {i.payload.region_code for i in valid})
                now = self._clock()
                decided = [self._decide(item, states, complete, now) for item in todo]
                await self._store(conn, valid, decided)
        if absorbed:
            self._metrics.duplicates.labels(topic).inc(absorbed)
        return decided

    def _decide(
        self,
        item: Valid[PermitApplication] | Invalid,
        enrolments: dict[str, EnrolmentState],
        complete_regions: set[str],
        now: datetime,
    ) -> Decided:
        if isinstance(item, Valid):
            app = item.payload
            enrolment = enrolments.get(app.employer.nib)
            verdict = decide(
                app,
                enrolment,
                self._policies.for_region(app.region_code),
                now,
                snapshot_complete=app.region_code in complete_regions,
            )
            version = enrolment.version if enrolment is not None else None
            decision = self._decision(
                item.event.id,
                verdict=verdict,
                enrolment_version=version,
                application_id=app.application_id,
                nib=app.employer.nib,
                action=app.action,
                region=app.region_code,
                now=now,
            )
            return Decided(
                item.event_key,
                decision,
                item.event.time or app.submitted_at,
                None,
                version,
                item.record,
            )
        # An invalid event still gets an answer when the PTSP can tell which application it was.
        app_id = item.field("application_id")
        if app_id is None:
            return Decided(item.event_key, None, now, item, None, item.record)
        region = item.field("region_code")
        verdict = rejected(
            self._policies.for_region(region).version,
            item.problems or [{"field": "(record)", "error": item.message}],
            f"{item.code}: {item.message}",
        )
        decision = self._decision(
            item.event_key,
            verdict=verdict,
            enrolment_version=None,
            application_id=app_id,
            nib=item.field("employer", "nib"),
            action=_action_of(item),
            region=region,
            now=now,
        )
        return Decided(item.event_key, decision, now, item, None, item.record)

    def _decision(
        self,
        event_id: str,
        *,
        verdict: Verdict,
        enrolment_version: int | None,
        application_id: str,
        nib: str | None,
        action: Action | None,
        region: str | None,
        now: datetime,
    ) -> ComplianceDecision:
        # Built from validated input and the policy's own output: re-validating costs a fifth of
        # the per-decision time and checks nothing new.
        return ComplianceDecision.model_construct(
            decision_id=decision_id(event_id, verdict, enrolment_version),
            application_id=application_id,
            nib=nib,
            action=action,
            region_code=region,
            outcome=verdict.outcome,
            reasons=list(verdict.reasons),
            enrolment_as_of=verdict.enrolment_as_of,
            policy_version=verdict.policy_version,
            decided_at=now,
            supersedes=None,
        )

    async def _store(
        self,
        conn: asyncpg.Connection,
        applications: Sequence[Valid[PermitApplication]],
        decided: Sequence[Decided],
    ) -> None:
        if applications:
            await conn.execute(
                """
                INSERT INTO permit_application (event_id, application_id, action, nib, npwp,
                    region_code, scale, workers_declared, submitted_at, payload)
                SELECT u.event_id, u.application_id, u.action, u.nib, u.npwp, u.region_code,
                    u.scale, u.workers_declared, u.submitted_at, u.payload::jsonb
                FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                    $6::text[], $7::text[], $8::int[], $9::timestamptz[], $10::text[])
                AS u(event_id, application_id, action, nib, npwp, region_code, scale,
                     workers_declared, submitted_at, payload)
                """,
                [a.event.id for a in applications],
                [a.payload.application_id for a in applications],
                [a.payload.action.value for a in applications],
                [a.payload.employer.nib for a in applications],
                [a.payload.employer.npwp for a in applications],
                [a.payload.region_code for a in applications],
                [a.payload.employer.scale.value for a in applications],
                [a.payload.employer.workers_declared for a in applications],
                [a.payload.submitted_at for a in applications],
                [a.data_text for a in applications],
            )
        now = self._clock()
        await decisions.store_decisions(
            conn,
            [
                (d.decision, d.event_key, d.enrolment_version)
                for d in decided
                if d.decision is not None
            ],
            self._decisions_topic,
            self._source,
            also=[
                dead_lettering.dead_letter(d.invalid, self._dlq_topic(d.invalid.record.topic), now)
                for d in decided
                if d.invalid is not None
            ],
        )

    def _observe(self, decided: Sequence[Decided]) -> None:
        m = self._metrics
        committed_at = self._clock()
        outcomes: Counter[tuple[str, str]] = Counter()
        blocks: Counter[str] = Counter()
        log_each = decision_log.enabled()
        for d in decided:
            if d.invalid is not None:
                dead_lettering.note_dead_letter(
                    m,
                    self._dlq_topic(d.invalid.record.topic),
                    d.invalid,
                    application_id=d.decision.application_id if d.decision else None,
                )
            decision = d.decision
            if decision is None:
                continue
            if log_each:
                decision_log.decided(decision, d.event_key, d.record)
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


Order = list[tuple[bool, str]]  # (accepted?, key) in batch order: ce_id, or a dead letter's digest


def _sort_by_id(
    items: Sequence[Valid[PermitApplication] | Invalid], known: dict[str, bytes | None]
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
