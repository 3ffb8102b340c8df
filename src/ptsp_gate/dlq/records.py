"""Dead-lettered records as an operator sees them, and what replaying one publishes.

Pure: no I/O. A record in `<source>.dlq` is the original key, value and headers plus the headers
`intake.dlq_headers` appends; replaying it publishes the original back to its source topic, with a
`ptsp-gate-replayed-from` header naming the DLQ record it came from.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ptsp_gate.contract.cloudevents import EnvelopeError, Headers, decode, pack_headers
from ptsp_gate.contract.dead_letter import (
    ADDED_HEADERS,
    ERROR_CODE,
    ERROR_CODES,
    ERROR_MESSAGE,
    FAILED_AT,
    ORIGINAL_SIZE,
    REPLAYED_FROM,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TRUNCATED,
)

__all__ = ["ERROR_CODES", "REPLAYED_FROM"]

# Kafka topic names are [a-zA-Z0-9._-], so '/' cannot be part of one.
_ADDRESS = re.compile(r"([A-Za-z0-9._-]+)/([0-9]+)/([0-9]+)(?:-([0-9]+))?")
_MAX_INT32 = 2**31 - 1


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """Where a record is: the key of a replay."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class AddressRange:
    """`TOPIC/PARTITION/FIRST[-LAST]` as given on the command line (topic not yet resolved)."""

    topic: str
    partition: int
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> AddressRange:
        match = _ADDRESS.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not TOPIC/PARTITION/OFFSET[-LAST]")
        topic, partition, first, last = match.groups()
        return cls.of(
            topic, int(partition), offset_range(first if last is None else f"{first}-{last}")
        )

    @classmethod
    def of(cls, topic: str, partition: int, offsets: tuple[int, int]) -> AddressRange:
        if partition > _MAX_INT32:
            raise ValueError(f"partition {partition} is out of range")
        return cls(topic, partition, offsets[0], offsets[1])


def offset_range(text: str) -> tuple[int, int]:
    """`O` or `FIRST-LAST` (inclusive) as a pair; offsets are never negative."""
    first_text, dash, last_text = text.partition("-")
    if not first_text.isascii() or not first_text.isdigit():
        raise ValueError(f"{text!r} is not an offset or a range FIRST-LAST of offsets")
    if dash and (not last_text.isascii() or not last_text.isdigit()):
        raise ValueError(f"{text!r} is not an offset or a range FIRST-LAST of offsets")
    first = int(first_text)
    last = int(last_text) if dash else first
    if last < first:
        raise ValueError(f"range {text!r} ends before it starts")
    return first, last


@dataclass(frozen=True, slots=True)
class DeadLetter:
    address: Address
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @classmethod
    def from_record(cls, record: Any) -> DeadLetter:
        """From a Kafka ConsumerRecord (or anything with its attributes)."""
        return cls(
            Address(record.topic, record.partition, record.offset),
            record.key,
            record.value,
            tuple((k, v or b"") for k, v in record.headers),
            record.timestamp,
        )

    def header(self, name: str) -> str | None:
        # The last one: dead-lettering appends, so a stray earlier copy cannot shadow it.
        for key, value in reversed(self.headers):
            if key == name:
                return value.decode("utf-8", "replace")
        return None

    @property
    def error_code(self) -> str | None:
        return self.header(ERROR_CODE)

    @property
    def error_message(self) -> str | None:
        return self.header(ERROR_MESSAGE)

    @property
    def source_topic(self) -> str | None:
        return self.header(SOURCE_TOPIC) or None

    @property
    def source_partition(self) -> int | None:
        return _int(self.header(SOURCE_PARTITION))

    @property
    def source_offset(self) -> int | None:
        return _int(self.header(SOURCE_OFFSET))

    @property
    def original_size(self) -> int | None:
        return _int(self.header(ORIGINAL_SIZE))

    @property
    def replayed_from(self) -> str | None:
        return self.header(REPLAYED_FROM)

    @property
    def failed_at(self) -> datetime:
        """When it was dead-lettered; the record's Kafka timestamp if the header is unusable."""
        raw = self.header(FAILED_AT)
        if raw:
            try:
                parsed = datetime.fromisoformat(raw)
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def size(self) -> int:
        return len(self.value or b"")

    @property
    def truncated(self) -> bool:
        original = self.original_size
        return self.header(TRUNCATED) is not None or (original is not None and original > self.size)

    @property
    def event_id(self) -> str | None:
        """The ce_id the services see (binary or structured mode), or None when unreadable."""
        try:
            return decode(self.original_headers(), self.value, parse_data=False).id
        except EnvelopeError:
            return None

    def original_headers(self) -> Headers:
        return [(k, v) for k, v in self.headers if k not in ADDED_HEADERS]

    def replay_headers(self) -> Headers:
        return [*self.original_headers(), (REPLAYED_FROM, str(self.address).encode())]

    @property
    def digest(self) -> str:
        """Of key, value and headers: tells this record from another at the same address."""
        h = hashlib.sha256()
        for part in (self.key, self.value):
            h.update(b"\x00" if part is None else b"\x01" + struct.pack(">I", len(part)) + part)
        h.update(pack_headers(list(self.headers)))
        return h.hexdigest()


def _int(raw: str | None) -> int | None:
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def refusal(
    dead: DeadLetter,
    *,
    sources: Mapping[str, str],
    partitions: Mapping[str, int],
) -> str | None:
    """Why the record cannot be replayed, or None when it can.

    `sources` maps each configured DLQ topic to its source topic; `partitions` is every topic on
    the cluster with its partition count.
    """
    source = dead.source_topic
    if source is None:
        return f"it has no {SOURCE_TOPIC} header, so where it came from is unknown"
    if source not in sources.values():
        known = ", ".join(sorted(sources.values()))
        return f"its source topic {source!r} is not an input topic of this configuration ({known})"
    if sources.get(dead.address.topic) != source:
        return f"its source topic {source!r} does not dead-letter to {dead.address.topic}"
    if source not in partitions:
        return f"its source topic {source} does not exist on the cluster"
    if dead.value is None:
        # On a compacted topic (the enrolment stream) a tombstone deletes the employer's record.
        return "it has no value (a tombstone); replaying it could delete a compacted record"
    if dead.error_code == "ID_CONFLICT":
        return (
            "its ce_id belongs to another event already decided (ID_CONFLICT): its producer "
            "must send it again under a new ce_id"
        )
    if dead.truncated:
        return (
            f"parts of it were not kept ({dead.header(TRUNCATED) or 'value'}; OVERSIZED): "
            "the original must be sent again by its producer"
        )
    return None


def target_partition(dead: DeadLetter, partition_count: int) -> int | None:
    """The partition it was read from, so it rejoins its key's other events; None (partition by
    key) when that is unknown or no longer exists."""
    partition = dead.source_partition
    if partition is None or partition >= partition_count:
        return None
    return partition


def matches(dead: DeadLetter, *, error: str | None = None, since: datetime | None = None) -> bool:
    if error is not None and dead.error_code != error:
        return False
    return since is None or dead.failed_at >= since
