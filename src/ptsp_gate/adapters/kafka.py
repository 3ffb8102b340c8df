"""Kafka clients configured from settings: the FastStream broker and the outbox producer."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry

from ptsp_gate.config import Settings

# Room on top of the largest accepted input, for the DLQ headers and decision envelopes.
_REQUEST_HEADROOM = 256 * 1024


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection settings common to every client."""
    if not settings.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
    return {
        "bootstrap_servers": list(settings.kafka_bootstrap_servers),
        "client_id": settings.client_id,
        # Short metadata refresh and backoff: after a broker comes back, partitions move back to
        # it within seconds rather than the five-minute default.
        "metadata_max_age_ms": 30_000,
        "retry_backoff_ms": 200,
        "request_timeout_ms": 30_000,
    }


def make_broker(settings: Settings, registry: CollectorRegistry) -> KafkaBroker:
    return KafkaBroker(
        **client_kwargs(settings),
        graceful_timeout=settings.graceful_timeout_s,
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name="ptsp-gate")],
        logger=logging.getLogger("ptsp_gate.kafka"),
        log_level=logging.DEBUG,
    )


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """The outbox relay's producer: idempotent, so broker retries never duplicate or reorder."""
    return AIOKafkaProducer(
        **client_kwargs(settings),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=settings.max_event_bytes + _REQUEST_HEADROOM,
    )


async def lenient_parser(
    records: tuple[ConsumerRecord[Any, Any], ...],
    original: Callable[[Any], Awaitable[Any]],
) -> Any:
    """FastStream decodes header values as UTF-8 for its own use; a producer's stray binary header
    must not make the whole batch undeliverable. Our handlers read the untouched raw records."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        safe = tuple(
            dataclasses.replace(
                r,
                headers=[(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in r.headers],
            )
            for r in records
        )
        message = await original(safe)
        message.raw_message = records
        return message


async def raw_records(message: Any, _original: Any) -> Any:
    """Hand the handler the raw ConsumerRecords: decoding is ours, so bad JSON is a DLQ case, not
    a batch failure."""
    return message.raw_message
