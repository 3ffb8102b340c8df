"""Opaque keyset cursors: the last row's place in a list's order, as a URL-safe token. A token
this program did not print is refused, never trusted."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

MAX_LENGTH = 200


class BadCursor(ValueError):
    pass


def encode(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(text: str, length: int) -> list[Any]:
    """The values of a cursor of `length` values; BadCursor for anything else."""
    if len(text) > MAX_LENGTH:
        raise BadCursor("the cursor is longer than any this program prints")
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("not a cursor this program printed") from None
    if not isinstance(values, list) or len(values) != length:
        raise BadCursor("not a cursor this program printed")
    return values
