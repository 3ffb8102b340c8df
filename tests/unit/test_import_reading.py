"""Reading snapshot files without a database: tolerated quirks, compression, line numbers, and
files too broken to import."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from ptsp_gate.enrolment_import import BrokenFile

from .import_support import cells, csv_bytes, feed


def test_bom_crlf_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbf" + csv_bytes(cells()).replace(b"\r\n", b"\r\n\r\n", 1)
    lines, recorder = feed(tmp_path, content)
    assert [line.split("\t")[0] for line in lines] == ["3"]
    assert recorder.bad == []


def test_gzip_is_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    lines, _ = feed(tmp_path, gzip.compress(csv_bytes(cells(), cells(nib="9120001234568"))))
    assert len(lines) == 2


def test_a_quoted_field_spanning_lines_keeps_the_line_where_its_record_starts(
    tmp_path: Path,
) -> None:
    content = csv_bytes(cells(npp='"two\nlines"'), cells(nib="bad"))
    lines, recorder = feed(tmp_path, content)
    assert lines[0].split("\t")[3] == "two\\nlines"
    assert recorder.bad == [(4, "nib: must be 13 digits, got 'bad'")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n\n", "is empty"),
        (csv_bytes(), "has a header but no rows"),
        (csv_bytes(cells()).replace(b"PU", b"P\xe9", 1), "line 2: not UTF-8 text (byte 0xe9)"),
        (gzip.compress(csv_bytes(cells()))[:-12], "damaged or truncated gzip"),
        (b"PK\x03\x04rest", "is a zip archive"),
    ],
)
def test_broken_files(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(BrokenFile, match=re.escape(message)):
        feed(tmp_path, content)
