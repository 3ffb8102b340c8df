"""Explicit bounds on untrusted JSON, checked before any parser sees it.

A producer can send JSON that is valid yet unusable: arrays nested a thousand deep make Python's
parser raise ``RecursionError`` (an interpreter limit, not a parse error), and a number of
thousands of digits hits the interpreter's integer-conversion limit (``ValueError``) or costs
quadratic time. No event of the contract nests deeper than a few levels or carries a number
longer than a date, so both are refused here, with a reason, whatever parser runs next.

The check strips string literals first (so brackets and digits inside text do not count), which
is one regular-expression pass at C speed; only a value with more opening brackets than the depth
limit is walked bracket by bracket.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40

# A string literal, or an unterminated one up to the end: always consumes what it starts, so the
# scan stays linear on hostile input (possessive quantifiers: no backtracking).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+"?', re.DOTALL)
_LONG_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_NUMBER_CHARS + 1))
# Python's parsers accept NaN and Infinity; JSON and PostgreSQL's jsonb do not.
_NON_FINITE = re.compile(rb"NaN|Infinity")
# A UTF-16 surrogate escaped alone (not as a high-low pair): valid JSON text, but no character,
# so PostgreSQL's jsonb and any UTF-8 encoder refuse it. (Text that spells a backslash and then
# such an escape, `\\ud800`, is refused too: no identifier or name of the contract holds one.)
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonLimitError(ValueError):
    """The JSON exceeds a bound; the message says which, in one line."""


def check(raw: bytes) -> None:
    bare = _STRING.sub(b'""', raw)
    if _LONG_NUMBER.search(bare):
        raise JsonLimitError(f"a number is longer than {MAX_NUMBER_CHARS} characters")
    if _NON_FINITE.search(bare):
        raise JsonLimitError("NaN and Infinity are not JSON numbers")
    if b"\\u" in raw and _LONE_SURROGATE.search(raw):
        raise JsonLimitError("a string holds a lone UTF-16 surrogate escape")
    if bare.count(b"[") + bare.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    for bracket in bare.translate(None, _NOT_BRACKETS):
        if bracket in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise JsonLimitError(f"nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def loads(raw: bytes) -> Any:
    """Parse UTF-8 JSON within the bounds. Raises ``JsonLimitError``, ``UnicodeDecodeError`` or
    ``json.JSONDecodeError`` (all ``ValueError``), nothing else."""
    check(raw)
    # Decode explicitly: json.loads(bytes) would also accept UTF-16/32 (RFC 8259: UTF-8 only).
    return json.loads(raw.decode("utf-8"), parse_float=_finite)


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: a float would become Infinity when written out again
        raise JsonLimitError(f"the number {text[:20]} is out of range")
    return value
