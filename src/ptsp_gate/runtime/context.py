"""Everything a service's handler is given: where its transactions come from, the policies,
the metrics, where decisions and dead letters go. Built by the runtime from the settings, or
by a test around the in-memory store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ptsp_gate.config import Settings
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook
from ptsp_gate.redecide import Redecider
from ptsp_gate.runtime import intake
from ptsp_gate.runtime.intake import Invalid
from ptsp_gate.stores.outbox import OutboxRow
from ptsp_gate.stores.unit_of_work import Transactions

log = get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class HandlerContext:
    transactions: Transactions
    metrics: Metrics
    policies: PolicyBook
    decisions_topic: str
    dlq_topic_of: Callable[[str], str]  # the DLQ of an input topic: `Settings.dlq_topic`
    event_source: str
    max_event_bytes: int
    redecide_window_days: int
    # How many transactions one batch may run at once (one per group of partitions).
    parallel: int = 1
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transactions: Transactions,
        metrics: Metrics,
        policies: PolicyBook,
        parallel: int = 1,
    ) -> HandlerContext:
        return cls(
            transactions=transactions,
            metrics=metrics,
            policies=policies,
            decisions_topic=settings.topic_decisions,
            dlq_topic_of=settings.dlq_topic,
            event_source=settings.event_source,
            max_event_bytes=settings.max_event_bytes,
            redecide_window_days=settings.redecide_window_days,
            parallel=max(parallel, 1),
        )

    @property
    def redecider(self) -> Redecider:
        return Redecider(
            policies=self.policies,
            window_days=self.redecide_window_days,
            decisions_topic=self.decisions_topic,
            event_source=self.event_source,
        )

    def dlq_topic(self, invalid: Invalid) -> str:
        return self.dlq_topic_of(invalid.record.topic)

    def dead_letter(self, invalid: Invalid, now: datetime) -> OutboxRow:
        """The DLQ record for an input that could not be used: its bytes, headers and the
        error, queued in the outbox with the batch's other writes."""
        return OutboxRow(
            topic=self.dlq_topic(invalid),
            key=intake.dlq_key(invalid),
            headers=intake.dlq_headers(invalid, now),
            value=intake.dlq_value(invalid),
            kind="dlq",
        )

    def note_dead_letter(self, invalid: Invalid, **context: Any) -> None:
        """Count and log a committed dead letter (after its transaction, never before)."""
        topic = self.dlq_topic(invalid)
        self.metrics.dlq_messages.labels(topic, invalid.code).inc()
        log.warning(
            "record dead-lettered",
            error=invalid.code,
            reason=invalid.message[:300],
            dlq_topic=topic,
            event_id=invalid.event_id,
            topic=invalid.record.topic,
            partition=invalid.record.partition,
            offset=invalid.record.offset,
            **context,
        )
