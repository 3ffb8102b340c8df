"""From a raw Kafka record to a validated event, or to a precise reason why not.

Pure: no I/O. Every way a record can be bad maps to one stable error code that appears in the DLQ
headers and in the `ptsp_gate_dlq_messages_total{error}` label.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ptsp_gate.schemas.cloudevents import CloudEvent, EnvelopeError, Headers, decode

M = TypeVar("M", bound=BaseModel)

# The head of an oversized record kept in the DLQ: enough to identify it, small enough to publish.
OVERSIZED_KEEP_BYTES = 64 * 1024


class RawRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True, slots=True)
class Valid(Generic[M]):
    record: RawRecord
    event: CloudEvent
    payload: M

    @property
    def event_key(self) -> str:
        return self.event.id

    @property
    def data_text(self) -> str:
        """The data as received, as JSON text (stored as is, not re-serialised from the model)."""
        if self.event.structured:
            return json.dumps(self.event.data)
        return (self.record.value or b"").decode("utf-8")


@dataclass(frozen=True, slots=True)
class Invalid:
    record: RawRecord
    code: str
    message: str
    problems: list[dict[str, Any]]
    event_id: str | None
    data: Any  # parsed JSON data when it could be read, for best-effort ids
    event_type: str | None = None

    @property
    def event_key(self) -> str:
        """ce_id when readable; otherwise a digest of the bytes, so a redelivery dedupes too."""
        return self.event_id or self.content_key

    @property
    def content_key(self) -> str:
        """A digest of the record's value and headers: the key a dead letter is recorded under
        (see `idempotency.claim_dead_letters`)."""
        digest = hashlib.sha256(self.record.value or b"")
        for k, v in self.record.headers:
            digest.update(k.encode("utf-8", "replace") + b"\0" + (v or b"") + b"\0")
        return "sha256:" + digest.hexdigest()

    def field(self, *path: str) -> str | None:
        node = self.data
        for part in path:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        if isinstance(node, str) and 0 < len(node) <= 128 and node.isprintable():
            return node
        return None


def _problems(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(root)", "error": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ][:20]


def read(
    record: RawRecord,
    model: type[M],
    accepted_types: Sequence[str],
    max_bytes: int,
) -> Valid[M] | Invalid:
    value = record.value
    size = len(value or b"") + sum(len(k) + len(v or b"") for k, v in record.headers)
    if size > max_bytes:
        return Invalid(
            record, "OVERSIZED", f"record is {size} bytes; the limit is {max_bytes}", [], None, None
        )
    try:
        event = decode(record.headers, value, parse_data=False)
    except EnvelopeError as exc:
        return Invalid(record, exc.code, exc.message, [], None, None)
    if event.type not in accepted_types:
        return Invalid(
            record,
            "UNKNOWN_TYPE",
            f"ce_type {event.type[:100]!r} is not one of {', '.join(accepted_types)}",
            [],
            event.id,
            event_data(event, value),
            event.type,
        )
    if value is not None and b"\\u0000" in value:
        # PostgreSQL text cannot hold NUL; refusing here keeps such a record from wedging a batch.
        return Invalid(
            record,
            "SCHEMA_VIOLATION",
            "NUL characters are not allowed",
            [],
            event.id,
            event_data(event, value),
            event.type,
        )
    try:
        # Strict types as JSON gives them; binary mode validates the value bytes directly.
        raw = json.dumps(event.data) if event.structured else (value or b"")
        payload = model.model_validate_json(raw)
    except ValidationError as exc:
        problems = _problems(exc)
        summary = "; ".join(f"{p['field']}: {p['error']}" for p in problems[:3])
        code = (
            "MALFORMED_JSON"
            if any(p["error"].startswith("Invalid JSON") for p in problems)
            else "SCHEMA_VIOLATION"
        )
        return Invalid(
            record, code, summary, problems, event.id, event_data(event, value), event.type
        )
    return Valid(record, event, payload)


def event_data(event: CloudEvent, value: bytes | None) -> Any:
    """The event's data for best-effort ids on the error path (binary mode is parsed lazily)."""
    if event.structured or value is None:
        return event.data
    try:
        return json.loads(value)
    except ValueError:
        return None


def dlq_headers(invalid: Invalid, now: datetime | None = None) -> Headers:
    """The original headers plus the error, so the record can be understood and replayed."""
    failed_at = (now or datetime.now(UTC)).isoformat()
    extra: Headers = [
        ("ptsp-gate-error-code", invalid.code.encode()),
        ("ptsp-gate-error-message", invalid.message[:1000].encode("utf-8", "replace")),
        ("ptsp-gate-source-topic", invalid.record.topic.encode()),
        ("ptsp-gate-source-partition", str(invalid.record.partition).encode()),
        ("ptsp-gate-source-offset", str(invalid.record.offset).encode()),
        ("ptsp-gate-failed-at", failed_at.encode()),
    ]
    value = invalid.record.value or b""
    if invalid.code == "OVERSIZED":
        extra.append(("ptsp-gate-original-size", str(len(value)).encode()))
    # The outbox frames a header name in 16 bits; a longer name (which no real producer sends)
    # would stop the dead letter from being stored at all, so that header alone is left out.
    kept = [(k, v or b"") for k, v in invalid.record.headers if len(k.encode("utf-8")) <= 0xFFFF]
    return [*kept, *extra]


def dlq_value(invalid: Invalid) -> bytes | None:
    if invalid.code == "OVERSIZED" and invalid.record.value is not None:
        return invalid.record.value[:OVERSIZED_KEEP_BYTES]
    return invalid.record.value
