"""The bulk import's row parser agrees with the EnrolmentState model (the stream's validation) on
generated rows, and its fast path with its reference checkers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from stdnum import luhn

from ptsp_gate.contract.events import EnrolmentState
from ptsp_gate.enrolment_import import FIELDS, BadRow, RowParser

from .import_support import GOOD, NIK, bad_check_digit

# The CSV's own grammar for as_of (RFC 3339 date-time, with the case-insensitive T/Z and the
# space separator RFC 3339 allows), written independently of the module's.
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
MODEL_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def reference(row: dict[str, str]) -> EnrolmentState | None:
    """What the stream would accept: the cells turned into the record's JSON by the documented
    CSV rules, validated by EnrolmentState; plus the CSV's three documented restrictions."""
    data: dict[str, Any] = dict(row)
    for name in ("workers_enrolled", "arrears_months", "version"):
        if re.fullmatch(r"[0-9]{1,4000}", row[name]):
            data[name] = int(row[name])
    for name in ("programs", "pds_flags"):
        data[name] = row[name].split("|") if row[name] else []
    data["sanction_requested"] = MODEL_BOOLEANS.get(row["sanction_requested"].lower(), "?")
    try:
        state = EnrolmentState.model_validate_json(json.dumps(data))
    except ValidationError:
        return None
    if not RFC3339.fullmatch(row["as_of"]) or "\x00" in row["npp"]:
        return None
    try:
        state.as_of.astimezone(UTC)
    except OverflowError:
        return None
    return state


def decode(line: str) -> dict[str, Any]:
    """A staged COPY line back into values, as PostgreSQL will read it."""
    parts = line.split("\t")
    assert len(parts) == 13
    fields = dict(zip(FIELDS, parts[1:], strict=True))

    def unescape(text: str) -> str:
        escapes = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
        return re.sub(r"\\[\\tnr]", lambda m: escapes[m.group()], text)

    def members(text: str) -> frozenset[str]:
        assert text[0] + text[-1] == "{}"
        inner = text[1:-1]
        return frozenset(inner.split(",")) if inner else frozenset()

    return {
        "nib": fields["nib"],
        "npwp": fields["npwp"],
        "npp": unescape(fields["npp"]),
        "status": fields["status"],
        "segment": fields["segment"],
        "programs": members(fields["programs"]),
        "workers_enrolled": int(fields["workers_enrolled"]),
        "arrears_months": int(fields["arrears_months"]),
        "pds_flags": members(fields["pds_flags"]),
        "sanction_requested": {"t": True, "f": False}[fields["sanction_requested"]],
        "as_of": datetime.fromisoformat(fields["as_of"]),
        "version": int(fields["version"]),
    }


def model_values(state: EnrolmentState) -> dict[str, Any]:
    return {
        "nib": state.nib,
        "npwp": state.npwp,
        "npp": state.npp,
        "status": state.status.value,
        "segment": state.segment.value,
        "programs": frozenset(p.value for p in state.programs),
        "workers_enrolled": state.workers_enrolled,
        "arrears_months": state.arrears_months,
        "pds_flags": frozenset(f.value for f in state.pds_flags),
        "sanction_requested": state.sanction_requested,
        "as_of": state.as_of,
        "version": state.version,
    }


# A file decoded as UTF-8 cannot hold a lone surrogate (that is a broken file, tested apart).
UTF8_CHARS = st.characters(exclude_categories=("Cs",))


def digits(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=low, max_size=high)


@st.composite
def npwp_cells(draw: st.DrawFn) -> str:
    head = draw(digits(8, 8))
    legacy = head + luhn.calc_check_digit(head) + draw(digits(6, 6))
    day = draw(st.integers(0, 75))
    nik = (
        draw(st.sampled_from(["7314", "3171", "1101", "0000", "9999", "7399"]))
        + draw(digits(2, 2))
        + f"{day:02d}{draw(st.integers(0, 13)):02d}"
        + draw(digits(2, 2))
        + draw(digits(4, 4))
    )
    return draw(
        st.sampled_from([legacy, "0" + legacy, nik, bad_check_digit(legacy, 3)])
        | digits(14, 17)
        | st.text(UTF8_CHARS, max_size=17)
    )


@st.composite
def as_of_cells(draw: st.DrawFn) -> str:
    def num(low: int, high: int, width: int) -> str:
        return f"{draw(st.integers(low, high)):0{width}d}"

    date = f"{num(0, 10000, 4)}-{num(0, 13, 2)}-{num(0, 32, 2)}"
    time_ = f"{num(0, 24, 2)}:{num(0, 60, 2)}:{num(0, 60, 2)}"
    fraction = draw(st.sampled_from(["", "."]) | digits(1, 12).map(lambda d: "." + d))
    separator = draw(st.sampled_from(["T", "t", " ", "_"]))
    offset = draw(
        st.sampled_from(["Z", "z", "", "+07", "+0700", "+07:00", "-00:00", "+24:00", "+07:60"])
        | st.builds(
            lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
            st.sampled_from("+-"),
            st.integers(0, 24),
            st.integers(0, 60),
        )
    )
    return draw(
        st.just(date + separator + time_ + fraction + offset)
        | st.sampled_from(["1751216400", "2025-06-30", "2025-06-30T00:00+07:00", ""])
        | st.text(UTF8_CHARS, max_size=30)
    )


def count_cells(high: int) -> st.SearchStrategy[str]:
    return (
        st.integers(-3, high + 3).map(str)
        | st.integers(0, high).map(lambda n: "00" + str(n))
        | st.sampled_from(["", "1.0", "+1", " 1", "1e3", "١", "²"])
        | st.integers(high - 3, high * 10 + 10).map(str)
    )


def list_cells(members: list[str]) -> st.SearchStrategy[str]:
    tokens = st.sampled_from([*members, "", "jkk", "X", f"{members[0]} "])
    return st.lists(tokens, max_size=6).map("|".join) | st.sampled_from(
        [";".join(members[:2]), ",".join(members[:2])]
    )


WILD = {
    "nib": digits(13, 13) | digits(12, 14) | st.text(UTF8_CHARS, max_size=14),
    "npwp": npwp_cells(),
    "npp": st.text(UTF8_CHARS, max_size=70)
    | st.sampled_from(["NPP1", "a\tb", "a\\b", "a\nb", "a\x00b", "", "😀" * 64]),
    "status": st.sampled_from(["ACTIVE", "INACTIVE", "NOT_REGISTERED", "active", "", "X"]),
    "segment": st.sampled_from(["PU", "BPU", "JAKON", "pu", "", "PU "]),
    "programs": list_cells(["JKK", "JKM", "JHT", "JP", "JKP"]),
    "workers_enrolled": count_cells(10_000_000),
    "arrears_months": count_cells(1200),
    "pds_flags": list_cells(["WORKERS", "WAGES", "PROGRAM"]),
    "sanction_requested": st.sampled_from(
        ["true", "false", "TRUE", "False", "1", "0", "yes", "", "t", "2"]
    ),
    "as_of": as_of_cells(),
    "version": count_cells(2**63 - 1) | digits(1, 25),
}


@st.composite
def valid_as_of(draw: st.DrawFn) -> str:
    offset = timedelta(minutes=draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1)))
    moment = draw(st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)))
    local = moment.astimezone(timezone(offset))
    text = local.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt ")) + local.strftime("%H:%M:%S")
    if local.microsecond or draw(st.booleans()):
        text += "." + f"{local.microsecond:06d}" + draw(digits(0, 3))
    if offset == timedelta(0) and draw(st.booleans()):
        return text + draw(st.sampled_from("Zz"))
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def valid_npwp(draw: st.DrawFn) -> str:
    head = draw(digits(8, 8))
    legacy = head + luhn.calc_check_digit(head) + draw(digits(6, 6))
    birth = draw(st.dates(datetime(1950, 1, 1).date(), datetime(2010, 12, 31).date()))
    day = birth.day + draw(st.sampled_from([0, 40]))
    nik = (
        draw(st.sampled_from(["7314", "3171", "1101", "3273"]))
        + draw(digits(2, 2))
        + f"{day:02d}{birth.month:02d}{birth.year % 100:02d}"
        + draw(digits(4, 4))
    )
    return draw(st.sampled_from([legacy, "0" + legacy, nik]))


def members(allowed: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(allowed), max_size=len(allowed) + 1).map("|".join)


VALID = {
    "nib": digits(13, 13),
    "npwp": valid_npwp(),
    "npp": st.from_regex(r"NPP[0-9]{8}", fullmatch=True)
    | st.text(
        st.characters(exclude_characters="\x00", exclude_categories=("Cs",)),
        min_size=1,
        max_size=64,
    ),
    "status": st.sampled_from(["ACTIVE", "INACTIVE", "NOT_REGISTERED"]),
    "segment": st.sampled_from(["PU", "BPU", "JAKON"]),
    "programs": members(["JKK", "JKM", "JHT", "JP", "JKP"]),
    "workers_enrolled": st.integers(0, 10_000_000).map(str),
    "arrears_months": st.integers(0, 1200).map(str),
    "pds_flags": members(["WORKERS", "WAGES", "PROGRAM"]),
    "sanction_requested": st.sampled_from(["true", "false", "TRUE", "False", "1", "0"]),
    "as_of": valid_as_of(),
    "version": (st.integers(0, 10**6) | st.integers(0, 2**63 - 1)).map(str),
}


@st.composite
def rows(draw: st.DrawFn) -> dict[str, str]:
    """A valid row with up to two fields drawn from the wild: most rows sit near the boundary
    between accepted and refused, where disagreements would hide."""
    row = {name: draw(strategy) for name, strategy in VALID.items()}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        row[name] = draw(WILD[name])
    return row


ROWS = rows()
AGREEMENT = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(ROWS)
@example({**GOOD})
@example({**GOOD, "npwp": NIK})
@example({**GOOD, "as_of": "0001-01-01T00:00:00+01:00"})
@example({**GOOD, "npp": "a\x00b"})
def test_the_parser_agrees_with_the_model(row: dict[str, str]) -> None:
    parser = RowParser(FIELDS)
    expected = reference(row)
    try:
        line = parser.stage_line([row[f] for f in FIELDS], 9)
    except BadRow:
        assert expected is None, "refused a row the model accepts"
        return
    assert expected is not None, "accepted a row the model refuses"
    got = decode(line)
    want = model_values(expected)
    assert got == want


@AGREEMENT
@given(st.lists(ROWS, min_size=1, max_size=4))
def test_the_fast_path_says_what_the_checkers_say(rows: list[dict[str, str]]) -> None:
    # Caches fill as rows go by; whatever the fast path returns must be the checkers' answer.
    parser = RowParser(FIELDS)
    for row in rows:
        values = [row[f] for f in FIELDS]
        try:
            checked: str | None = parser._checked(values)
        except BadRow:
            checked = None
        fast = parser._fast(values)
        if fast is not None:
            assert fast == checked
