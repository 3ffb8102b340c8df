"""What each cell of a snapshot row may hold.

Each field has a checker that returns the text COPY sends for it or raises ValueError with the
reason. They are the reference: the row parser's fast path (rows.py) falls back to them whenever
it is unsure, so it can never accept what they reject.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone

from stdnum.exceptions import ValidationError as StdnumError
from stdnum.id import npwp as stdnum_npwp

from ptsp_gate.contract.events import MAX_INT64, EnrolmentStatus, PdsFlag, Program, Segment
from ptsp_gate.observability.logging import mask_text

LIST_SEPARATOR = "|"

_MAX_REASON_VALUE = 40
# A reason names this many offending values (header cells, list members) and counts the rest.
_MAX_NAMED = 5


def quoted(value: str) -> str:
    """A value as a reason quotes it: NPWP- and NIK-like numbers masked as the logs mask them
    (a NIK in the nib column is still a NIK), then cut. The masking sees a little beyond the cut,
    so that a number running across it is masked before it is cut, not cut to a harmless-looking
    length and shown."""
    shown = mask_text(value[: _MAX_REASON_VALUE + 20])
    if len(value) > _MAX_REASON_VALUE:
        shown = shown[:_MAX_REASON_VALUE] + "…"
    return repr(shown)


def first_few(shown: Iterable[str], total: int) -> str:
    """The first _MAX_NAMED of `total` offending values, and how many more there are."""
    named = list(itertools.islice(shown, _MAX_NAMED))
    more = total - len(named)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def _digits(value: str) -> bool:
    # str.isdigit() alone also accepts other scripts' digits and superscripts.
    return value.isascii() and value.isdigit()


def _check_nib(value: str) -> str:
    if not value:
        raise ValueError("missing")
    if len(value) != 13 or not _digits(value):
        raise ValueError(f"must be 13 digits, got {quoted(value)}")
    return value


def _check_npwp(value: str) -> str:
    # The NPWP's value never goes into a reason: NPWP and NIK are personal data (see logging).
    if not value:
        raise ValueError("missing")
    if len(value) not in (15, 16) or not _digits(value):
        raise ValueError("must be 15 or 16 digits")
    try:
        stdnum_npwp.validate(value)
    except StdnumError:
        if len(value) == 16 and not value.startswith("0"):
            raise ValueError("not a valid NIK (16 digits not starting with 0)") from None
        raise ValueError("check digit is wrong") from None
    return value


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _check_npp(value: str) -> str:
    if not value:
        raise ValueError("missing")
    if len(value) > 64:
        raise ValueError(f"longer than 64 characters ({len(value)})")
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value.translate(_COPY_ESCAPES)


def _enum_checker(name: str, allowed: Sequence[str]) -> Callable[[str], str]:
    valid = frozenset(allowed)
    listing = ", ".join(allowed)

    def check(value: str) -> str:
        if not value:
            raise ValueError("missing")
        if value not in valid:
            raise ValueError(f"unknown {name} {quoted(value)} (expected one of {listing})")
        return value

    return check


def _set_checker(name: str, allowed: Sequence[str]) -> Callable[[str], str]:
    valid = frozenset(allowed)
    listing = ", ".join(allowed)

    def check(value: str) -> str:
        if not value:
            return "{}"
        members = value.split(LIST_SEPARATOR)
        unknown = [m for m in members if m not in valid]
        if unknown:
            distinct = list(dict.fromkeys(unknown))
            raise ValueError(
                f"unknown {name} {first_few(map(quoted, distinct), len(distinct))} (expected "
                f"members of {listing}, separated by '{LIST_SEPARATOR}')"
            )
        # Sorted and without duplicates, as the stream stores them (a set, in a stable order).
        return "{" + ",".join(sorted(set(members))) + "}"

    return check


def _count_checker(high: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value:
            raise ValueError("missing")
        if not _digits(value):
            raise ValueError(f"must be a whole number from 0 to {high}, got {quoted(value)}")
        # Leading zeros are harmless; int() of thousands of digits is refused, so compare lengths.
        significant = value.lstrip("0") or "0"
        if len(significant) > len(str(high)) or int(significant) > high:
            raise ValueError(f"must be at most {high}, got {quoted(value)}")
        return significant

    return check


_BOOLEANS = {"true": "t", "false": "f", "1": "t", "0": "f"}


def _check_bool(value: str) -> str:
    if not value:
        raise ValueError("missing")
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise ValueError(f"must be true or false (or 1 or 0), got {quoted(value)}") from None


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp with offset (`T`, `t` or a space between date and time; a fraction
    beyond microseconds is truncated, as the model does)."""
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError(
            f"must be an RFC 3339 timestamp with offset (2025-06-30T00:00:00+07:00), "
            f"got {quoted(value)}"
        )
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    if sign is None:
        tz: timezone = UTC
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f"offset out of range, got {quoted(value)}")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError:
        raise ValueError(f"not a valid date and time, got {quoted(value)}") from None
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range once in UTC, got {quoted(value)}") from None
    return parsed


def _check_as_of(value: str) -> str:
    if not value:
        raise ValueError("missing")
    # In UTC: timestamptz keeps only the instant, and PostgreSQL refuses to parse offsets
    # beyond ±15:59 that RFC 3339 and the model allow.
    return parse_timestamp(value).astimezone(UTC).isoformat()


CHECKERS: dict[str, Callable[[str], str]] = {
    "nib": _check_nib,
    "npwp": _check_npwp,
    "npp": _check_npp,
    "status": _enum_checker("status", [s.value for s in EnrolmentStatus]),
    "segment": _enum_checker("segment", [s.value for s in Segment]),
    "programs": _set_checker("programme", [p.value for p in Program]),
    "workers_enrolled": _count_checker(10_000_000),
    "arrears_months": _count_checker(1200),
    "pds_flags": _set_checker("PDS flag", [f.value for f in PdsFlag]),
    "sanction_requested": _check_bool,
    "as_of": _check_as_of,
    "version": _count_checker(MAX_INT64),
}
