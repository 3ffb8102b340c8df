"""Bulk snapshot import: a BPJS TK CSV file (optionally gzip) into the enrolment projection.

The file format
---------------
- UTF-8 (a leading byte-order mark is tolerated), RFC 4180 CSV: comma-separated, fields with
  commas, quotes or line breaks in double quotes, a quote inside doubled. gzip is recognised by
  its magic bytes, whatever the file is called.
- A header row naming exactly the twelve fields of the v1 enrolment record, in any order:
  nib, npwp, npp, status, segment, programs, workers_enrolled, arrears_months, pds_flags,
  sanction_requested, as_of, version. Then one employer per row. Blank lines are skipped.
- Limits, so that a hostile or broken file cannot stall the import or fill the memory: a header
  of at most MAX_HEADER_CELLS (64) cells, and a record (a line, or the lines a quoted field spans)
  of at most MAX_RECORD_BYTES (1 MiB). A longer record is a bad row, and the reading goes on at
  the next line: the part of a line beyond the limit is never taken for a row of its own.
- `programs` and `pds_flags` list their members separated by `|` (`JKK|JKM|JHT`); an empty cell
  is the empty set. `sanction_requested` is `true` or `false` (any case), or `1` or `0`. Counts and
  `version` are ASCII digits. `as_of` is an RFC 3339 timestamp with its offset
  (`2025-06-30T00:00:00+07:00`, `...Z`). Every other cell is taken as written (no trimming).
- Values follow the `EnrolmentState` model; the CSV is stricter in three places, on purpose:
  `as_of` must be RFC 3339 (the model also takes Unix times and other ISO 8601 forms), a cell may
  not contain a NUL character (PostgreSQL text cannot hold one), and `as_of` must stay within
  years 1–9999 once converted to UTC (otherwise it could not be read back).

What an import does
-------------------
The file is read as a stream (constant memory). Each row is validated; good rows go to a TEMP
staging table through one COPY, bad rows to a rejects CSV with their line number and reason (values
quoted in a reason are cut and have NPWP- and NIK-like numbers masked, as in the logs; cells a
spreadsheet would run as formulas are written as text, as in the reports' CSV). Then,
in the same transaction, one statement merges the newest row of each NIB into employer_enrolment
with the stream's version rule, the re-decisions run, and the import is recorded. A broken file
(header, encoding, compression) aborts before anything is committed.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import os
import re
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Protocol

import asyncpg
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.id import nik as stdnum_nik
from stdnum.id import npwp as stdnum_npwp

from ptsp_gate.contract.events import MAX_INT64, EnrolmentStatus, PdsFlag, Program, Segment
from ptsp_gate.observability.logging import mask_text
from ptsp_gate.redecide import Redecider
from ptsp_gate.reports.render import spreadsheet_text
from ptsp_gate.stores.enrolments import NEWER_VERSION_WINS

FIELDS = (
    "nib",
    "npwp",
    "npp",
    "status",
    "segment",
    "programs",
    "workers_enrolled",
    "arrears_months",
    "pds_flags",
    "sanction_requested",
    "as_of",
    "version",
)
LIST_SEPARATOR = "|"

# Rows per COPY message: small enough that PostgreSQL is parsing one chunk while Python
# validates the next (both cores busy), large enough that the per-message cost vanishes.
_CHUNK_ROWS = 4096
_CACHE_LIMIT = 4096
_NIK_CACHE_LIMIT = 65_536
_MAX_REASON_VALUE = 40
# A reason names this many offending values (header cells, list members) and counts the rest.
_MAX_NAMED = 5
# Well above the twelve fields, so that a header with a few extra columns is still told what is
# wrong with it; far below what would make checking it slow or its error line long.
MAX_HEADER_CELLS = 64
# A real record is a few hundred bytes; the csv module also limits each field (131,072 characters).
MAX_RECORD_BYTES = 1 << 20
_LIMIT_TEXT = f"1 MiB ({MAX_RECORD_BYTES} bytes)"


class ImportFailed(Exception):
    """The import did not commit; the message is one line for the operator."""


class BrokenFile(ImportFailed):
    """The file as a whole cannot be read: header, encoding, compression, I/O."""


class BadRow(ValueError):
    """One row is invalid; the message says why (several reasons joined by '; ')."""


# --- validating one row -----------------------------------------------------------------------
#
# Each field has a checker that returns the text COPY sends for it or raises ValueError with the
# reason. They are the reference. `RowParser.stage_line` first tries an inlined fast path (no
# function call per field, caches for the few distinct values of the enumerated fields) and falls
# back to the checkers whenever it is unsure, so it can never accept what they reject.


def _show(value: str) -> str:
    """A value as a reason quotes it: NPWP- and NIK-like numbers masked as the logs mask them
    (a NIK in the nib column is still a NIK), then cut. The masking sees a little beyond the cut,
    so that a number running across it is masked before it is cut, not cut to a harmless-looking
    length and shown."""
    shown = mask_text(value[: _MAX_REASON_VALUE + 20])
    if len(value) > _MAX_REASON_VALUE:
        shown = shown[:_MAX_REASON_VALUE] + "…"
    return repr(shown)


def _some(shown: Iterable[str], total: int) -> str:
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
        raise ValueError(f"must be 13 digits, got {_show(value)}")
    return value


def _luhn_table(doubled: tuple[bool, bool, bool]) -> dict[str, int]:
    def weight(digit: int, double: bool) -> int:
        return (2 * digit - 9 if digit >= 5 else 2 * digit) if double else digit

    return {
        f"{a}{b}{c}": weight(a, doubled[0]) + weight(b, doubled[1]) + weight(c, doubled[2])
        for a in range(10)
        for b in range(10)
        for c in range(10)
    }


# The Luhn sum of a 9-digit number (check digit last) in three 3-digit lookups: from the right,
# every second digit is doubled, so the chunks alternate plain-doubled-plain and the reverse.
_LUHN_OUTER = _luhn_table((False, True, False))
_LUHN_MIDDLE = _luhn_table((True, False, True))


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
            raise ValueError(f"unknown {name} {_show(value)} (expected one of {listing})")
        return value

    return check


_check_status = _enum_checker("status", [s.value for s in EnrolmentStatus])
_check_segment = _enum_checker("segment", [s.value for s in Segment])


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
                f"unknown {name} {_some(map(_show, distinct), len(distinct))} (expected members "
                f"of {listing}, separated by '{LIST_SEPARATOR}')"
            )
        # Sorted and without duplicates, as the stream stores them (a set, in a stable order).
        return "{" + ",".join(sorted(set(members))) + "}"

    return check


_check_programs = _set_checker("programme", [p.value for p in Program])
_check_pds_flags = _set_checker("PDS flag", [f.value for f in PdsFlag])


def _count_checker(high: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value:
            raise ValueError("missing")
        if not _digits(value):
            raise ValueError(f"must be a whole number from 0 to {high}, got {_show(value)}")
        # Leading zeros are harmless; int() of thousands of digits is refused, so compare lengths.
        significant = value.lstrip("0") or "0"
        if len(significant) > len(str(high)) or int(significant) > high:
            raise ValueError(f"must be at most {high}, got {_show(value)}")
        return significant

    return check


_check_workers = _count_checker(10_000_000)
_check_arrears = _count_checker(1200)
_check_version = _count_checker(MAX_INT64)

_BOOLEANS = {"true": "t", "false": "f", "1": "t", "0": "f"}


def _check_bool(value: str) -> str:
    if not value:
        raise ValueError("missing")
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise ValueError(f"must be true or false (or 1 or 0), got {_show(value)}") from None


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
            f"got {_show(value)}"
        )
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    if sign is None:
        tz: timezone = UTC
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f"offset out of range, got {_show(value)}")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError:
        raise ValueError(f"not a valid date and time, got {_show(value)}") from None
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range once in UTC, got {_show(value)}") from None
    return parsed


def _check_as_of(value: str) -> str:
    if not value:
        raise ValueError("missing")
    # In UTC: timestamptz keeps only the instant, and PostgreSQL refuses to parse offsets
    # beyond ±15:59 that RFC 3339 and the model allow.
    return parse_timestamp(value).astimezone(UTC).isoformat()


_CHECKERS: dict[str, Callable[[str], str]] = {
    "nib": _check_nib,
    "npwp": _check_npwp,
    "npp": _check_npp,
    "status": _check_status,
    "segment": _check_segment,
    "programs": _check_programs,
    "workers_enrolled": _check_workers,
    "arrears_months": _check_arrears,
    "pds_flags": _check_pds_flags,
    "sanction_requested": _check_bool,
    "as_of": _check_as_of,
    "version": _check_version,
}
# Fields with few distinct values: their checked text is memoised.
_CACHED = ("status", "segment", "programs", "pds_flags", "sanction_requested", "as_of")


def _nik_place_known(nik: str) -> bool:
    # Asked through the public API with a birth date that is always real (1 January 1900/2000),
    # so that only the place decides.
    return bool(stdnum_nik.is_valid(nik[:6] + "010100" + nik[12:]))


def _nik_birth_date_real(nik: str) -> bool:
    try:
        stdnum_nik.get_birth_date(nik)
    except StdnumError:
        return False
    return True


def read_header(cells: Sequence[str]) -> tuple[int, ...]:
    """The position of each of FIELDS in the file's header; BrokenFile if the header is not
    exactly the twelve fields in some order. Linear in the header's length, and the message
    names at most a few offending cells, whatever the header holds."""
    expected = f" (expected: {','.join(FIELDS)})"
    if len(cells) > MAX_HEADER_CELLS:
        raise BrokenFile(
            f"wrong header: {len(cells)} columns, more than the {MAX_HEADER_CELLS} a header may "
            f"have" + expected
        )
    names = [c.strip() for c in cells]
    counts = Counter(names)
    unknown = [n for n in counts if n not in FIELDS]  # each once, in the header's order
    missing = [f for f in FIELDS if f not in counts]
    repeated = [f for f in FIELDS if counts[f] > 1]
    problems = []
    if unknown:
        problems.append("unknown column(s) " + _some(map(_show, unknown), len(unknown)))
    if missing:
        problems.append("missing column(s) " + ", ".join(missing))
    if repeated:
        problems.append("repeated column(s) " + ", ".join(repeated))
    if problems:
        raise BrokenFile("wrong header: " + "; ".join(problems) + expected)
    position = {name: index for index, name in enumerate(names)}
    return tuple(position[f] for f in FIELDS)


class RowParser:
    """Turns the cells of one data row into a line for the staging COPY, or raises BadRow."""

    def __init__(self, header: Sequence[str]) -> None:
        self.positions = read_header(header)
        self.width = len(header)
        self._pick = itemgetter(*self.positions)
        self._caches: dict[str, dict[str, str]] = {name: {} for name in _CACHED}
        self._nik_places: dict[str, bool] = {}
        self._nik_births: dict[str, bool] = {}

    def stage_line(self, cells: Sequence[str], line: int) -> str:
        """`line`, then the twelve fields in FIELDS order, tab-separated (COPY text format)."""
        if len(cells) == self.width:
            fast = self._fast(cells)
            if fast is not None:
                return f"{line}\t{fast}"
        else:
            raise BadRow(f"has {len(cells)} fields, the header has {self.width}")
        return f"{line}\t{self._checked(cells)}"

    def _fast(self, cells: Sequence[str]) -> str | None:
        (
            nib,
            npwp,
            npp,
            status,
            segment,
            programs,
            workers,
            arrears,
            pds_flags,
            sanction,
            as_of,
            version,
        ) = self._pick(cells)
        caches = self._caches
        if len(nib) != 13 or not (nib.isdigit() and nib.isascii()):
            return None
        if not (npwp.isdigit() and npwp.isascii()):
            return None
        n = len(npwp)
        if n == 15 or (n == 16 and npwp[0] == "0"):
            first = n - 15  # a leading 0 adds nothing to a Luhn sum
            if (
                _LUHN_OUTER[npwp[first : first + 3]]
                + _LUHN_MIDDLE[npwp[first + 3 : first + 6]]
                + _LUHN_OUTER[npwp[first + 6 : first + 9]]
            ) % 10:
                return None
        elif not self._nik_ok(npwp):
            return None
        if not (0 < len(npp) <= 64 and npp.isprintable() and "\\" not in npp):
            return None
        # Without leading zeros the text is already what the reference sends; 18 digits can
        # never exceed the bigint range, so `version` needs no conversion at all.
        if not (workers.isdigit() and workers.isascii() and len(workers) <= 8):
            return None
        if not (arrears.isdigit() and arrears.isascii() and len(arrears) <= 4):
            return None
        if not (version.isdigit() and version.isascii() and len(version) <= 18):
            return None
        if (
            (workers[0] == "0" and len(workers) > 1)
            or (arrears[0] == "0" and len(arrears) > 1)
            or (version[0] == "0" and len(version) > 1)
        ):
            return None
        if int(workers) > 10_000_000 or int(arrears) > 1200:
            return None
        status_text = caches["status"].get(status)
        segment_text = caches["segment"].get(segment)
        programs_text = caches["programs"].get(programs)
        pds_text = caches["pds_flags"].get(pds_flags)
        sanction_text = caches["sanction_requested"].get(sanction)
        as_of_text = caches["as_of"].get(as_of)
        if (
            status_text is None
            or segment_text is None
            or programs_text is None
            or pds_text is None
            or sanction_text is None
            or as_of_text is None
        ):
            return None
        return (
            f"{nib}\t{npwp}\t{npp}\t{status_text}\t{segment_text}\t{programs_text}\t{workers}"
            f"\t{arrears}\t{pds_text}\t{sanction_text}\t{as_of_text}\t{version}"
        )

    def _nik_ok(self, value: str) -> bool:
        # python-stdnum accepts a NIK when its place of registration [0:4] is known and its
        # birth date [6:12] is real, each on its own: memoised separately, both stay small while
        # NIKs themselves never repeat.
        if len(value) != 16 or value[0] == "0":
            return False
        place = self._nik_places.get(value[:4])
        if place is None:
            place = self._nik_places[value[:4]] = _nik_place_known(value)
        born = self._nik_births.get(value[6:12])
        if born is None:
            if len(self._nik_births) >= _NIK_CACHE_LIMIT:
                self._nik_births.clear()
            born = self._nik_births[value[6:12]] = _nik_birth_date_real(value)
        return place and born

    def _checked(self, cells: Sequence[str]) -> str:
        texts: list[str] = []
        reasons: list[str] = []
        for name, value in zip(FIELDS, self._pick(cells), strict=True):
            try:
                text = _CHECKERS[name](value)
            except ValueError as exc:
                reasons.append(f"{name}: {exc}")
                continue
            texts.append(text)
            cache = self._caches.get(name)
            if cache is not None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[value] = text
        if reasons:
            raise BadRow("; ".join(reasons))
        return "\t".join(texts)


# --- reading the file -------------------------------------------------------------------------

_MAGIC_REFUSED = {
    b"PK\x03\x04": "a zip archive",
    b"BZh": "a bzip2 file",
    b"\xfd7zXZ": "an xz file",
    b"\x28\xb5\x2f\xfd": "a zstd file",
}


class _Source:
    """The file's bytes, decompressed if gzip, with how far into the file on disk we are."""

    def __init__(self, path: Path) -> None:
        self.name = os.path.abspath(path)
        try:
            self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise BrokenFile(f"cannot open {path}: {exc.strerror or exc}") from exc
        try:
            self.size = os.fstat(self._raw.fileno()).st_size
            magic = self._raw.read(4)
            self._raw.seek(0)
        except OSError as exc:
            self._raw.close()
            raise BrokenFile(f"cannot read {path}: {exc.strerror or exc}") from exc
        for prefix, what in _MAGIC_REFUSED.items():
            if magic.startswith(prefix):
                self._raw.close()
                raise BrokenFile(f"{path} is {what}; expected CSV, optionally gzip-compressed")
        self.compressed = magic.startswith(b"\x1f\x8b")
        self.stream: IO[bytes] = (
            # BufferedReader over GzipFile: its readline (and so iteration) runs in C.
            io.BufferedReader(gzip.GzipFile(fileobj=self._raw, mode="rb"), 1 << 16)
            if self.compressed
            else self._raw
        )

    def position(self) -> int:
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        self.stream.close()
        self._raw.close()


# --- progress and results ---------------------------------------------------------------------


class Progress(Protocol):
    """What an import reports while it runs (the command line draws it)."""

    def reading(self, rows: int, done_bytes: int, total_bytes: int) -> None: ...

    def rejected(self, line: int, reason: str) -> None: ...

    def merging(self, rows: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ImportResult:
    import_id: int
    source_file: str
    rows_read: int
    rows_applied: int
    rows_stale: int
    rows_rejected: int
    redecisions: int
    seconds: float
    rejects_file: Path | None
    region_code: str | None
    complete_as_of: datetime | None
    # False when --complete met a region already complete as of a later date.
    snapshot_recorded: bool


class _Rejects:
    """Bad rows, written to a temporary file beside the target and moved there on success, so
    a failed import leaves an earlier rejects file as it was. People open it in a spreadsheet:
    its text cells go through the reports' spreadsheet_text, so a cell of the imported file such
    as `=HYPERLINK(...)` is shown, not run (the line number, a number, is written as one)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._file: IO[str] | None = None
        self._name = ""
        self._writer: Any = None
        self._header: list[str] = []

    def set_header(self, header: Sequence[str]) -> None:
        self._header = list(header)

    def write(self, line: int, reason: str, cells: Sequence[str]) -> None:
        if self._writer is None:
            try:
                fd, name = tempfile.mkstemp(
                    prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent
                )
            except OSError as exc:
                raise BrokenFile(f"cannot write rejects to {self.target}: {exc}") from exc
            self._name = name
            self._file = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", *map(spreadsheet_text, self._header)])
        self._writer.writerow([line, spreadsheet_text(reason), *map(spreadsheet_text, cells)])

    def commit(self) -> Path | None:
        if self._file is None:
            return None
        self._file.close()
        self._file = None
        os.replace(self._name, self.target)
        return self.target

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            with contextlib.suppress(OSError):
                os.unlink(self._name)
            self._file = None


class _RecordTooLong(Exception):
    """A record ran past MAX_RECORD_BYTES; the rest of its last line has been read and dropped."""


class _Lines:
    """The file's physical lines, decoded, for the csv reader, within a byte budget per record:
    the feed sets `left` before each record, and a line that would take the record past it is
    neither decoded nor handed on. Its rest is read (a buffer at a time) and dropped, up to the
    line break, and the iteration ends with _RecordTooLong; `lines()` then starts over at the
    next line. So no line longer than the budget is ever held whole, and the part of a line
    beyond the limit is never parsed as a row of its own."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._readline = stream.readline
        self.left = MAX_RECORD_BYTES
        self._at_start = True

    def lines(self) -> Iterator[str]:
        readline = self._readline
        piece = readline(self.left + 1)
        if self._at_start:
            # The byte-order mark goes before decoding, so that a quoted first cell parses.
            self._at_start = False
            piece = piece.removeprefix(b"\xef\xbb\xbf")
        while piece:
            left = self.left
            if len(piece) > left:
                while piece and not piece.endswith(b"\n"):
                    piece = readline(MAX_RECORD_BYTES)
                raise _RecordTooLong
            self.left = left - len(piece)
            yield piece.decode()
            piece = readline(self.left + 1)


def _too_long(first: int, last: int) -> str:
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    return f"record longer than {_LIMIT_TEXT}: {lines} skipped"


class _Feed:
    """The file's valid rows as COPY text, chunk by chunk, counting as it goes; bad rows go to
    the rejects file. Iterate it once."""

    def __init__(
        self, source: _Source, path: Path, rejects: _Rejects, progress: Progress | None
    ) -> None:
        self._source = source
        self._path = path
        self._rejects = rejects
        self._progress = progress
        self.read = 0
        self.staged = 0
        self.rejected = 0
        self._line = 0  # the last physical line the csv reader has consumed

    def __iter__(self) -> Iterator[bytes]:
        path = self._path
        try:
            # Line by line (readline, bytes.decode, csv, all in C, with one generator step per
            # line between them to keep each record within MAX_RECORD_BYTES): a decoding error
            # names its line, and memory stays bounded whatever the file holds.
            yield from self._chunks(_Lines(self._source.stream))
        except UnicodeDecodeError as exc:
            bad = exc.object[exc.start : exc.start + 1].hex()
            raise BrokenFile(
                f"line {self._line + 1}: not UTF-8 text (byte 0x{bad}); "
                "save the file as UTF-8 and import it again"
            ) from exc
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise BrokenFile(f"{path}: damaged or truncated gzip data ({exc})") from exc
        except OSError as exc:
            raise BrokenFile(f"cannot read {path}: {exc.strerror or exc}") from exc
        if self.read == 0:
            raise BrokenFile(f"{path} has a header but no rows")
        if self._progress is not None:
            self._progress.reading(self.read, self._source.size, self._source.size)

    def _header(self, reader: Any, lines: _Lines) -> RowParser:
        while True:
            lines.left = MAX_RECORD_BYTES
            cells = next(reader, None)
            if cells is None:
                break
            self._line = reader.line_num
            if cells:
                self._rejects.set_header(cells)
                return RowParser(cells)
        raise BrokenFile(f"{self._path} is empty: expected a header row, then one employer per row")

    def _chunks(self, lines: _Lines) -> Iterator[bytes]:
        reader = csv.reader(lines.lines(), strict=True)
        try:
            stage_line = self._header(reader, lines).stage_line
        except csv.Error as exc:
            raise BrokenFile(f"line {reader.line_num}: unreadable header: {exc}") from exc
        except _RecordTooLong:
            raise BrokenFile(
                f"line {reader.line_num + 1}: the header is longer than {_LIMIT_TEXT}"
            ) from None
        # reader.line_num counts the lines of the current reader; a new one starts after a
        # record that was too long.
        base = 0
        chunk: list[str] = []
        while True:
            line = self._line + 1  # where the record starts: a quoted field may span lines
            lines.left = MAX_RECORD_BYTES
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # A malformed record (stray quote, NUL byte): a bad row; the reader goes on.
                self._line = base + reader.line_num
                self._reject(line, f"malformed CSV: {exc}", [])
                continue
            except _RecordTooLong:
                # The line that took it past the limit was dropped to its end: go on after it,
                # with a new reader (the old one's lines have ended).
                self._line = base = base + reader.line_num + 1
                self._reject(line, _too_long(line, self._line), [])
                reader = csv.reader(lines.lines(), strict=True)
                continue
            self._line = base + reader.line_num
            if not cells:
                continue
            try:
                chunk.append(stage_line(cells, line))
            except BadRow as exc:
                self._reject(line, str(exc), cells)
                continue
            if len(chunk) >= _CHUNK_ROWS:
                yield self._flush(chunk)
        if chunk:
            yield self._flush(chunk)

    def _flush(self, chunk: list[str]) -> bytes:
        data = ("\n".join(chunk) + "\n").encode()
        self.staged += len(chunk)
        self.read += len(chunk)
        chunk.clear()
        if self._progress is not None:
            self._progress.reading(self.read, self._source.position(), self._source.size)
        return data

    def _reject(self, line: int, reason: str, cells: Sequence[str]) -> None:
        self.read += 1
        self.rejected += 1
        self._rejects.write(line, reason, cells)
        if self._progress is not None:
            self._progress.rejected(line, reason)


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


# --- the database side ------------------------------------------------------------------------

_STAGING = """
CREATE TEMP TABLE enrolment_staging (
    line                bigint NOT NULL,
    nib                 text NOT NULL,
    npwp                text NOT NULL,
    npp                 text NOT NULL,
    status              text NOT NULL,
    segment             text NOT NULL,
    programs            text[] NOT NULL,
    workers_enrolled    integer NOT NULL,
    arrears_months      integer NOT NULL,
    pds_flags           text[] NOT NULL,
    sanction_requested  boolean NOT NULL,
    as_of               timestamptz NOT NULL,
    version             bigint NOT NULL
) ON COMMIT DROP
"""
_STAGING_COLUMNS = ("line", *FIELDS)
_RECORD = ", ".join(FIELDS)

# One set-wise statement. The version rule is the stream's (enrolment_store.apply_newer): the
# ON CONFLICT ... WHERE keeps it whichever path wrote first, and in READ COMMITTED it is checked
# against the row as committed by a concurrent writer. Within the file the highest version of a
# NIB wins, the first of equal versions (as if applied in file order). Rows go in NIB order, so
# two imports take their row locks in the same order.
#
# Only changed employers with some PENDING or BLOCKED decision can have an open application to
# re-decide (the re-decider's own condition is narrower: latest decision PENDING or BLOCKED,
# within the window); filtering here keeps a million-row import from shipping a million NIBs
# back and forth for nothing. A semi-join, not `IN (subquery)`: once the decisions outgrow
# work_mem, that becomes a linear search per row, while a hash join only spills.
_MERGE = f"""
WITH newest AS (
    SELECT DISTINCT ON (nib) line, {_RECORD}
    FROM enrolment_staging
    ORDER BY nib, version DESC, line
), applied AS (
    INSERT INTO employer_enrolment ({_RECORD}, source, source_event_id, updated_at)
    SELECT {_RECORD}, 'import', $1::text || line, now() FROM newest
    {NEWER_VERSION_WINS}
    RETURNING nib
)
SELECT (SELECT count(*) FROM applied) AS applied,
       coalesce(
           (SELECT array_agg(a.nib) FROM applied a WHERE EXISTS (
               SELECT FROM compliance_decision d
               WHERE d.nib = a.nib AND d.outcome IN ('PENDING', 'BLOCKED'))),
           '{{}}') AS open_nibs
"""

_SNAPSHOT = """
INSERT INTO region_snapshot (region_code, complete_as_of, source_file, rows_in_file)
SELECT $1, max(as_of), $2, $3 FROM enrolment_staging
ON CONFLICT (region_code) DO UPDATE SET
    complete_as_of = EXCLUDED.complete_as_of, source_file = EXCLUDED.source_file,
    rows_in_file = EXCLUDED.rows_in_file, recorded_at = now()
WHERE region_snapshot.complete_as_of <= EXCLUDED.complete_as_of
RETURNING complete_as_of
"""

_RECORD_IMPORT = """
INSERT INTO enrolment_import (id, source_file, region_code, complete, rows_read, rows_applied,
    rows_stale, rows_rejected, redecisions, started_at, finished_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())
"""

_MERGE_ATTEMPTS = 5


async def _merge(conn: asyncpg.Connection, event_prefix: str) -> tuple[int, list[str]]:
    # The stream upserts its batches in arrival order, so a batch and the import can each hold a
    # row the other wants. PostgreSQL then aborts one of them; when it is the import, undo just
    # the merge (a savepoint) and run it again rather than lose the whole file.
    for attempt in range(1, _MERGE_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                row = await conn.fetchrow(_MERGE, event_prefix)
        except asyncpg.DeadlockDetectedError:
            if attempt == _MERGE_ATTEMPTS:
                raise
            continue
        assert row is not None
        return int(row["applied"]), list(row["open_nibs"])
    raise AssertionError("unreachable")


async def import_snapshot(
    conn: asyncpg.Connection,
    path: Path,
    *,
    redecider: Redecider,
    rejects_file: Path,
    region: str | None = None,
    complete: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ImportResult:
    """Import one snapshot file in one transaction. Raises ImportFailed (BrokenFile for an
    unreadable file) and database errors; either way nothing has changed."""
    if complete and not region:
        raise ImportFailed("--complete needs --region: the region the snapshot lists completely")
    t0 = time.perf_counter()
    started = clock()
    rejects = _Rejects(rejects_file)
    source = _Source(path)
    source_file = source.name
    feed = _Feed(source, path, rejects, progress)
    try:
        import_id = int(
            await conn.fetchval("SELECT nextval(pg_get_serial_sequence('enrolment_import', 'id'))")
        )
        async with conn.transaction():
            # The merge sorts the whole file by NIB: a million rows sort in memory (about 230 MB)
            # rather than through temp files, about 1.5 s faster; larger files still spill.
            await conn.execute("SET LOCAL work_mem = '256MB'")
            await conn.execute(_STAGING)
            await conn.copy_to_table(
                "enrolment_staging", source=_aiter(iter(feed)), columns=_STAGING_COLUMNS
            )
            if complete and feed.rejected:
                # A complete snapshot turns "no record" into NOT_REGISTERED: employers whose rows
                # were rejected would be blocked for the file's mistakes. The rejects file is
                # kept: it lists the rows to fix.
                rejects.commit()
                raise ImportFailed(
                    f"--complete: {feed.rejected} row(s) rejected, so the snapshot is not "
                    f"complete (fix the rows listed in {rejects_file} and import again)"
                )
            if progress is not None:
                progress.merging(feed.staged)
            applied, open_nibs = await _merge(conn, f"import:{import_id}:")
            complete_as_of, recorded = (
                await _record_snapshot(conn, region, source_file, feed.read)
                if complete and region
                else (None, False)
            )
            redecisions = await _redecide(conn, open_nibs, redecider, clock())
            await conn.execute(
                _RECORD_IMPORT,
                import_id,
                source_file,
                region,
                complete,
                feed.read,
                applied,
                feed.staged - applied,
                feed.rejected,
                redecisions,
                started,
            )
        rejects_path = rejects.commit()
    except BaseException:
        # The file broke part-way or the database failed: a partial list of rejects would
        # mislead, and an earlier rejects file stays as it was.
        rejects.discard()
        raise
    finally:
        source.close()
    return ImportResult(
        import_id=import_id,
        source_file=source_file,
        rows_read=feed.read,
        rows_applied=applied,
        rows_stale=feed.staged - applied,
        rows_rejected=feed.rejected,
        redecisions=redecisions,
        seconds=time.perf_counter() - t0,
        rejects_file=rejects_path,
        region_code=region,
        complete_as_of=complete_as_of,
        snapshot_recorded=recorded,
    )


async def _record_snapshot(
    conn: asyncpg.Connection, region: str, source_file: str, rows: int
) -> tuple[datetime, bool]:
    """The region's completeness date, and whether this file set it: an older snapshot loaded
    after a newer one does not move the date back."""
    recorded = await conn.fetchval(_SNAPSHOT, region, source_file, rows)
    if recorded is not None:
        return recorded, True
    kept = await conn.fetchval(
        "SELECT complete_as_of FROM region_snapshot WHERE region_code = $1", region
    )
    return kept, False


async def _redecide(
    conn: asyncpg.Connection, nibs: Sequence[str], redecider: Redecider, now: datetime
) -> int:
    if not nibs:
        return 0
    from ptsp_gate.stores.unit_of_work import PostgresStore

    return len(await redecider.employers(PostgresStore(conn), nibs, now))
