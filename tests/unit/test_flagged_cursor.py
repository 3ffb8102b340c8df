"""The flagged list's page cursor: opaque, round-trips, and anything else is refused cleanly."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptsp_gate.stores.officer_queries import BadCursor, FlaggedCursor


def test_a_cursor_round_trips():
    cursor = FlaggedCursor("7314", datetime(2026, 5, 1, 8, 30, tzinfo=UTC), "9120000000001")
    assert FlaggedCursor.decode(cursor.encode()) == cursor
    assert "7314" not in cursor.encode()  # opaque: nobody builds one by hand


@pytest.mark.parametrize(
    "text",
    [
        "",
        "%%%",
        "bm90IGpzb24",  # "not json"
        "WyI3MzE0Il0",  # ["7314"]: too few parts
        "WyI3MzE0IiwgIm5vdCBhIGRhdGUiLCAiMSJd",  # a date that is not one
        "WyI3MzE0IiwgIjIwMjYtMDEtMDFUMDA6MDA6MDAiLCAiMSJd",  # a date without an offset
        "A" * 201,
        "\x00\udcff",
    ],
)
def test_anything_else_is_refused(text):
    with pytest.raises(BadCursor):
        FlaggedCursor.decode(text)


@given(st.text(max_size=300))
def test_no_text_makes_decoding_raise_anything_but_bad_cursor(text):
    with contextlib.suppress(BadCursor):
        FlaggedCursor.decode(text)
