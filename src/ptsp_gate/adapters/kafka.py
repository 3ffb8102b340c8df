"""Kafka clients configured from settings: the FastStream broker and the outbox producer."""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.security import parse_security
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from prometheus_client import CollectorRegistry

from ptsp_gate.config import Settings

# Room on top of the largest accepted input, for the DLQ headers and decision envelopes.
_REQUEST_HEADROOM = 256 * 1024


def security(settings: Settings) -> BaseSecurity | None:
    """The Kafka security settings as FastStream's object; the outbox producer gets the same
    through FastStream's own translation, so both clients always agree."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username = settings.kafka_sasl_username
    password = settings.secret("kafka_sasl_password")
    if not username or not password:
        raise ValueError(
            f"{protocol} needs PTSP_GATE_KAFKA_SASL_USERNAME and PTSP_GATE_KAFKA_SASL_PASSWORD "
            "(or PTSP_GATE_KAFKA_SASL_PASSWORD_FILE)"
        )
    use_ssl = protocol == "SASL_SSL"
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return kind[settings.kafka_sasl_mechanism](
        username=username, password=password, ssl_context=context, use_ssl=use_ssl
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ValueError(f"PTSP_GATE_{name.upper()} {path} is not a readable file")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        raise ValueError("a client certificate needs PTSP_GATE_KAFKA_SSL_CERTFILE and _KEYFILE")
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
            certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
            keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            password=settings.secret("kafka_ssl_key_password"),
        )
    except ssl.SSLError as exc:
        raise ValueError(f"Kafka TLS files are not usable: {exc}") from exc
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection settings common to every client (security excluded: see `security`)."""
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
        security=security(settings),
        graceful_timeout=settings.graceful_timeout_s,
        # Telemetry outermost: the batch's span covers what the metrics middleware measures. It
        # records nothing unless observability/tracing.py installed an exporter.
        middlewares=[
            KafkaTelemetryMiddleware(),
            KafkaPrometheusMiddleware(registry=registry, app_name="ptsp-gate"),
        ],
        logger=logging.getLogger("ptsp_gate.kafka"),
        log_level=logging.DEBUG,
    )


def client_args(settings: Settings) -> dict[str, Any]:
    """What any aiokafka client of ours needs: the servers, client id and security settings."""
    return {**client_kwargs(settings), **parse_security(security(settings))}


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """The outbox relay's producer: idempotent, so broker retries never duplicate or reorder."""
    return AIOKafkaProducer(
        **client_args(settings),
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
