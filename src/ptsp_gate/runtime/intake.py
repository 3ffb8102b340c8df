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

from ptsp_gate.contract import dead_letter as dl
from ptsp_gate.contract import json_limits
from ptsp_gate.contract.cloudevents import CloudEvent, EnvelopeError, Headers, decode
from ptsp_gate.contract.dead_letter import HEADER_OVERHEAD_BYTES, OVERSIZED_KEEP_BYTES

M = TypeVar("M", bound=BaseModel)


def _header_size(header: tuple[str, bytes | None]) -> int:
    name, value = header
    return len(name.encode("utf-8", "replace")) + len(value or b"") + HEADER_OVERHEAD_BYTES


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
    def content_digest(self) -> bytes:
        """Of the data as received: tells a redelivery (same digest) from another event reusing
        the id (ID_CONFLICT)."""
        return hashlib.sha256(self.data_text.encode("utf-8", "surrogatepass")).digest()

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
    # The envelope, when it could be read (its trace context goes on to the REJECTED decision).
    event: CloudEvent | None = None

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


def id_conflict(item: Valid[Any] | Invalid) -> Invalid:
    """An event under a ce_id that an event with other content already used. Recorded under the
    digest of its bytes (no event id), so it is not taken for a duplicate of that event."""
    if isinstance(item, Valid):
        event_id = item.event.id
        data = event_data(item.event, item.record.value)
        ce_type: str | None = item.event.type
    else:
        event_id, data, ce_type = item.event_id or "", item.data, item.event_type
    return Invalid(
        item.record,
        "ID_CONFLICT",
        f"ce_id {event_id[:100]!r} was already used by an event with other content; "
        "send this one under a new ce_id",
        [{"field": "ce_id", "error": "already used by an event with other content"}],
        None,
        data,
        ce_type,
        item.event,
    )


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
    """The record as a valid event, or why not. Never raises: a record that makes reading fail
    in a way nobody foresaw is still an answer (a dead letter), not a batch retried for ever."""
    try:
        return _read(record, model, accepted_types, max_bytes)
    except Exception as exc:
        return Invalid(
            record,
            "PROCESSING_FAILED",
            f"the record could not be read ({type(exc).__name__})",
            [],
            None,
            None,
        )


def _read(
    record: RawRecord,
    model: type[M],
    accepted_types: Sequence[str],
    max_bytes: int,
) -> Valid[M] | Invalid:
    value = record.value
    size = len(value or b"") + len(record.key or b"") + sum(map(_header_size, record.headers))
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
            event,
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
            event,
        )
    if not event.structured:
        # Structured data was bounded with its envelope; binary data goes to pydantic unparsed.
        try:
            json_limits.check(value or b"")
        except json_limits.JsonLimitError as exc:
            return Invalid(
                record,
                "SCHEMA_VIOLATION",
                f"value refused: {exc}",
                [],
                event.id,
                None,
                event.type,
                event,
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
            record, code, summary, problems, event.id, event_data(event, value), event.type, event
        )
    return Valid(record, event, payload)


def event_data(event: CloudEvent, value: bytes | None) -> Any:
    """The event's data for best-effort ids on the error path (binary mode is parsed lazily)."""
    if event.structured or value is None:
        return event.data
    try:
        return json_limits.loads(value)
    except ValueError:
        return None


def cloud_event(item: Valid[Any] | Invalid) -> CloudEvent | None:
    """The CloudEvent of a record whose envelope could be read."""
    return item.event


def dlq_headers(invalid: Invalid, now: datetime | None = None) -> Headers:
    """The original headers plus the error, so the record can be understood and replayed.

    The budget: a record within the input limit is kept whole (the producer allows 256 KiB over
    that limit, far more than the ptsp-gate-* headers take). An OVERSIZED one keeps the first
    ``OVERSIZED_KEEP_BYTES`` of its value, of its headers (whole headers, in order) and of its
    key; ``ptsp-gate-truncated`` names what was cut, so no dead letter is too large to publish."""
    failed_at = (now or datetime.now(UTC)).isoformat()
    extra: Headers = [
        (dl.ERROR_CODE, invalid.code.encode()),
        (
            dl.ERROR_MESSAGE,
            invalid.message[: dl.ERROR_MESSAGE_MAX_CHARS].encode("utf-8", "replace"),
        ),
        (dl.SOURCE_TOPIC, invalid.record.topic.encode()),
        (dl.SOURCE_PARTITION, str(invalid.record.partition).encode()),
        (dl.SOURCE_OFFSET, str(invalid.record.offset).encode()),
        (dl.FAILED_AT, failed_at.encode()),
    ]
    # The outbox frames a header name in 16 bits; a longer name (which no real producer sends)
    # would stop the dead letter from being stored at all, so that header alone is left out.
    kept: Headers = []
    cut: list[str] = []  # named up to the header's limit; the rest only shortens it to "..."
    cut_chars = 0
    budget = OVERSIZED_KEEP_BYTES if invalid.code == "OVERSIZED" else None
    for k, v in invalid.record.headers:
        size = _header_size((k, v))
        if len(k.encode("utf-8", "replace")) > 0xFFFF or (budget is not None and size > budget):
            if cut_chars <= dl.TRUNCATED_MAX_BYTES:
                cut.append("header:" + k[:64])
                cut_chars += len(cut[-1]) + 1
            continue
        if budget is not None:
            budget -= size
        kept.append((k, v or b""))
    if invalid.code == "OVERSIZED":
        value = invalid.record.value or b""
        extra.append((dl.ORIGINAL_SIZE, str(len(value)).encode()))
        if len(value) > OVERSIZED_KEEP_BYTES:
            cut.insert(0, "value")
        if len(invalid.record.key or b"") > OVERSIZED_KEEP_BYTES:
            cut.insert(0, "key")
    if cut:
        named = ",".join(cut)
        if len(named) > dl.TRUNCATED_MAX_BYTES:
            named = named[: dl.TRUNCATED_MAX_BYTES].rsplit(",", 1)[0] + ",..."
        extra.append((dl.TRUNCATED, named.encode("utf-8", "replace")))
    return [*kept, *extra]


def dlq_value(invalid: Invalid) -> bytes | None:
    if invalid.code == "OVERSIZED" and invalid.record.value is not None:
        return invalid.record.value[:OVERSIZED_KEEP_BYTES]
    return invalid.record.value


def dlq_key(invalid: Invalid) -> bytes | None:
    if invalid.code == "OVERSIZED" and invalid.record.key is not None:
        return invalid.record.key[:OVERSIZED_KEEP_BYTES]
    return invalid.record.key
