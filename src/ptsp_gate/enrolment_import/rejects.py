"""The rejects file: the bad rows of an import with their line numbers and reasons."""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ptsp_gate.enrolment_import.errors import BrokenFile
from ptsp_gate.reports.render import spreadsheet_text


class Rejects:
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
