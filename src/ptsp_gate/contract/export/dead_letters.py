"""Dead letters in the AsyncAPI document: the ptsp-gate-* headers added to the original ones
(names, codes and budgets from contract.dead_letter), and the original key and value."""

from __future__ import annotations

from typing import Final

from ptsp_gate.contract import dead_letter
from ptsp_gate.contract.dead_letter import ERROR_CODE_MEANINGS, OVERSIZED_KEEP_BYTES
from ptsp_gate.contract.export.json_schema import JsonObject

_HEADERS: Final[dict[str, JsonObject]] = {
    dead_letter.ERROR_CODE: {
        "type": "string",
        "enum": list(dead_letter.ERROR_CODES),
        "description": "Why the record was dead-lettered; one of these stable codes:\n\n"
        + "\n".join(f"- `{code}`: {text}" for code, text in ERROR_CODE_MEANINGS.items()),
    },
    dead_letter.ERROR_MESSAGE: {
        "type": "string",
        "description": (
            "Human-readable detail of the failure for operators, possibly truncated. Not a "
            "stable interface: match on ptsp-gate-error-code instead."
        ),
    },
    dead_letter.SOURCE_TOPIC: {
        "type": "string",
        "description": "Topic the original record was consumed from.",
    },
    dead_letter.SOURCE_PARTITION: {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "Partition of the original record, as a decimal integer in UTF-8 text.",
    },
    dead_letter.SOURCE_OFFSET: {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": "Offset of the original record, as a decimal integer in UTF-8 text.",
    },
    dead_letter.FAILED_AT: {
        "type": "string",
        "format": "date-time",
        "description": "When ptsp-gate rejected the record: RFC 3339 timestamp with offset.",
    },
    dead_letter.ORIGINAL_SIZE: {
        "type": "string",
        "pattern": "^[0-9]+$",
        "description": (
            "Only with OVERSIZED: the size in bytes of the original value, as a decimal integer "
            "in UTF-8 text."
        ),
    },
    dead_letter.TRUNCATED: {
        "type": "string",
        "description": (
            "Only with OVERSIZED, when something was cut to keep the dead letter publishable: "
            f"comma-separated, `value` (only its first {OVERSIZED_KEEP_BYTES} bytes are kept), "
            "`key` (likewise) and `header:NAME` for each original header left out (headers are "
            f"kept whole, in order, within {OVERSIZED_KEEP_BYTES} bytes). At most "
            f"{dead_letter.TRUNCATED_MAX_BYTES} bytes; a list cut short ends in `...`."
        ),
    },
}


def dead_letter_components() -> dict[str, JsonObject]:
    """The schemas of a dead letter's headers, key and value, by component name."""
    return {
        "DeadLetterHeaders": {
            "type": "object",
            "description": (
                "All headers of the original record, in order and unchanged (including its ce_* "
                "attributes and content-type, whatever their bytes; a null header value becomes "
                "empty), followed by these ptsp-gate-* headers (UTF-8 text)."
            ),
            "required": list(dead_letter.REQUIRED_HEADERS),
            "properties": _HEADERS,
        },
        "DeadLetterKey": {
            "description": "The original record's key, unchanged (normally the employer NIB)."
        },
        "DeadLetterPayload": {
            "description": (
                "The original record value, byte for byte (truncated to its first "
                f"{OVERSIZED_KEEP_BYTES} bytes for OVERSIZED): not necessarily JSON nor UTF-8, "
                "and absent when the original was a tombstone."
            )
        },
    }
