"""The dead-letter part of the v1 contract: the headers a dead letter carries, its error codes,
and how much of an oversized record it keeps. Pure constants; intake writes them, the DLQ tools
read them, the schema export documents them.
"""

from __future__ import annotations

from typing import Final

from ptsp_gate.contract import json_limits
from ptsp_gate.contract.events import CE_TYPE_APPLICATION, CE_TYPE_RENEWAL

# Headers added to the original ones (names as they appear on the record).
ERROR_CODE: Final = "ptsp-gate-error-code"
ERROR_MESSAGE: Final = "ptsp-gate-error-message"
SOURCE_TOPIC: Final = "ptsp-gate-source-topic"
SOURCE_PARTITION: Final = "ptsp-gate-source-partition"
SOURCE_OFFSET: Final = "ptsp-gate-source-offset"
FAILED_AT: Final = "ptsp-gate-failed-at"
ORIGINAL_SIZE: Final = "ptsp-gate-original-size"
TRUNCATED: Final = "ptsp-gate-truncated"
# Added by `ptsp-gate dlq replay` to a record it publishes again.
REPLAYED_FROM: Final = "ptsp-gate-replayed-from"

REQUIRED_HEADERS: Final = (
    ERROR_CODE,
    ERROR_MESSAGE,
    SOURCE_TOPIC,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
    FAILED_AT,
)
# Everything dead-lettering adds to the original headers; a replay takes them off again (and an
# earlier replay's marker, which the new one replaces).
ADDED_HEADERS: Final = frozenset({*REQUIRED_HEADERS, ORIGINAL_SIZE, TRUNCATED, REPLAYED_FROM})

# Bounds of what a dead letter keeps.
ERROR_MESSAGE_MAX_CHARS: Final = 1000
TRUNCATED_MAX_BYTES: Final = 1000
# The head of an oversized record kept in the DLQ (of its value, of its key, and of its headers):
# enough to identify it, small enough to publish.
OVERSIZED_KEEP_BYTES: Final = 64 * 1024
# What a header costs in a record beyond its name's and value's bytes (two length varints, up to
# five bytes each): a million empty headers are megabytes on the wire, not nothing.
HEADER_OVERHEAD_BYTES: Final = 10

# Stable codes of the `ptsp-gate-error-code` dead-letter header (also the `error` label of
# `ptsp_gate_dlq_messages_total`).
ERROR_CODE_MEANINGS: Final[dict[str, str]] = {
    "MALFORMED_ENVELOPE": (
        "Not a usable CloudEvent: a required attribute (ce_specversion, ce_id, ce_source, "
        "ce_type) is missing, empty, too long or not UTF-8; the specversion is not 1.0; the "
        "content-type is neither application/json nor application/cloudevents+json; ce_time is "
        "not an RFC 3339 timestamp with an offset; the record is a tombstone (no value); or a "
        "structured-mode event is not a JSON object or carries data_base64 instead of data."
    ),
    "MALFORMED_JSON": "The record value (or structured-mode envelope) is not UTF-8 JSON.",
    "UNKNOWN_TYPE": "ce_type is not one of the event types accepted on the topic.",
    "SCHEMA_VIOLATION": (
        "The data does not validate against the payload schema of its event type (missing or "
        "mistyped fields, unknown enum values, identifiers failing their checks: NIB, NPWP/NIK, "
        "KBLI, region code), or contains a NUL character (\\u0000), or its JSON nests deeper "
        f"than {json_limits.MAX_DEPTH} levels, has a number longer than "
        f"{json_limits.MAX_NUMBER_CHARS} characters or out of range (1e400), NaN or Infinity, "
        "or a lone UTF-16 surrogate escape (\\ud800 without its pair)."
    ),
    "OVERSIZED": (
        "The record (key, value and headers) is larger than the configured maximum event size. "
        f"Only the first {OVERSIZED_KEEP_BYTES} bytes of the value and of the key, and the "
        f"headers that fit in {OVERSIZED_KEEP_BYTES} bytes, are kept in the dead letter; the "
        "ptsp-gate-original-size header gives the original value's size and "
        "ptsp-gate-truncated names what was cut."
    ),
    "TYPE_ACTION_MISMATCH": (
        "The data's `action` disagrees with ce_type (NEW requires "
        f"{CE_TYPE_APPLICATION}, RENEWAL requires {CE_TYPE_RENEWAL})."
    ),
    "PROCESSING_FAILED": (
        "The record could not be handled, even alone, outside its batch, while PostgreSQL and "
        "Kafka answered (the database refused it, or deciding it failed). It is dead-lettered "
        "rather than retried for ever; transient database or broker outages never lead here "
        "(they are retried). No decision answers it: the event may be valid, and replaying the "
        "dead letter once the cause is fixed decides it."
    ),
    "ID_CONFLICT": (
        "A valid event under a ce_id that an event with other content already used (the data "
        "differs byte for byte). A REJECTED decision answers it when its application_id can be "
        "read; a byte-identical redelivery is absorbed instead. Resend it under a new ce_id."
    ),
}

ERROR_CODES: Final = tuple(ERROR_CODE_MEANINGS)
