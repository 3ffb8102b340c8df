"""The pieces of `ptsp-gate enrolment import` that need no database: where the rejects go and
how progress is drawn."""

from __future__ import annotations

import io
from pathlib import Path

from ptsp_gate.cli.enrolment import default_rejects_path, make_progress


def test_rejects_go_beside_the_file_by_default() -> None:
    assert default_rejects_path(Path("/data/s.csv.gz")) == Path("/data/s.csv.gz.rejects.csv")


def test_progress_lines_are_quiet_for_a_short_import_and_list_bad_rows() -> None:
    out = io.StringIO()
    progress = make_progress("auto", out)  # not a terminal: lines
    progress.reading(10, 50, 100)
    for line in range(2, 15):
        progress.rejected(line, "nib: missing")
    progress.merging(10)
    progress.close()
    text = out.getvalue().splitlines()
    assert text[:2] == ["line 2: nib: missing", "line 3: nib: missing"]
    assert len(text) == 11
    assert text[-1] == "... and 3 more bad row(s): see the rejects file"


def test_progress_bar_redraws_one_line() -> None:
    out = io.StringIO()
    progress = make_progress("bar", out)
    progress.reading(1000, 25, 100)
    progress.close()
    text = out.getvalue()
    assert text.startswith("\r[")
    assert "1,000 rows" in text
    assert "25%" in text
    assert text.endswith("\r\x1b[K")
    assert "\n" not in text


def test_progress_none_prints_only_bad_rows() -> None:
    out = io.StringIO()
    progress = make_progress("none", out)
    progress.reading(1000, 25, 100)
    progress.rejected(7, "status: missing")
    progress.merging(1000)
    progress.close()
    assert out.getvalue() == "line 7: status: missing\n"
