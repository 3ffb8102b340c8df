"""Dead-lettering an input that could not be used: the DLQ record queued in the outbox, and
the count and log line once its transaction has committed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ptsp_gate.observability.logging import get_logger
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.runtime import intake
from ptsp_gate.runtime.intake import Invalid
from ptsp_gate.stores.outbox import OutboxRow

log = get_logger(__name__)


def dead_letter(invalid: Invalid, dlq_topic: str, now: datetime) -> OutboxRow:
    """The DLQ record for an input that could not be used: its bytes, headers and the error."""
    return OutboxRow(
        topic=dlq_topic,
        key=intake.dlq_key(invalid),
        headers=intake.dlq_headers(invalid, now),
        value=intake.dlq_value(invalid),
        kind="dlq",
    )


def note_dead_letter(metrics: Metrics, dlq_topic: str, invalid: Invalid, **context: Any) -> None:
    """Count and log a committed dead letter (after its transaction, never before)."""
    metrics.dlq_messages.labels(dlq_topic, invalid.code).inc()
    log.warning(
        "record dead-lettered",
        error=invalid.code,
        reason=invalid.message[:300],
        dlq_topic=dlq_topic,
        event_id=invalid.event_id,
        topic=invalid.record.topic,
        partition=invalid.record.partition,
        offset=invalid.record.offset,
        **context,
    )
