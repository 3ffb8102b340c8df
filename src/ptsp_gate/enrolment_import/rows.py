"""One data row of a snapshot file into a line for the staging COPY, or the reasons it is bad.

`RowParser.stage_line` first tries an inlined fast path (no function call per field, caches for
the few distinct values of the enumerated fields) and falls back to the cell checkers
(cells.py) whenever it is unsure, so it can never accept what they reject.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from operator import itemgetter

from stdnum.exceptions import ValidationError as StdnumError
from stdnum.id import nik as stdnum_nik

from ptsp_gate.contract.events import ENROLMENT_FIELDS
from ptsp_gate.enrolment_import.cells import CHECKERS, first_few, quoted
from ptsp_gate.enrolment_import.errors import BadRow, BrokenFile

# The header names exactly the twelve fields of the v1 enrolment record, in any order.
FIELDS = ENROLMENT_FIELDS
# Well above the twelve fields, so that a header with a few extra columns is still told what is
# wrong with it; far below what would make checking it slow or its error line long.
MAX_HEADER_CELLS = 64

_CACHE_LIMIT = 4096
_NIK_CACHE_LIMIT = 65_536
# Fields with few distinct values: their checked text is memoised.
_CACHED = ("status", "segment", "programs", "pds_flags", "sanction_requested", "as_of")


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
        problems.append("unknown column(s) " + first_few(map(quoted, unknown), len(unknown)))
    if missing:
        problems.append("missing column(s) " + ", ".join(missing))
    if repeated:
        problems.append("repeated column(s) " + ", ".join(repeated))
    if problems:
        raise BrokenFile("wrong header: " + "; ".join(problems) + expected)
    position = {name: index for index, name in enumerate(names)}
    return tuple(position[f] for f in FIELDS)


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
                text = CHECKERS[name](value)
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
