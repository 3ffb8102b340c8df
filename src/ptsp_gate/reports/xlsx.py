"""A spreadsheet written row by row (XlsxWriter's constant-memory mode), for officers who open
the lists in Excel. Every text is written as text, never as a formula or a link, whatever it
begins with; counts as numbers, times as dates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import xlsxwriter

# Excel's limit is 1,048,576 rows a sheet; the heading takes one.
ROWS_PER_SHEET = 1_048_575


class XlsxRows:
    def __init__(
        self, file: IO[bytes], columns: Sequence[str], headings: Sequence[str], sheet: str
    ) -> None:
        self.columns = list(columns)
        self.headings = list(headings)
        self.sheet_name = sheet
        self.book = xlsxwriter.Workbook(
            file,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        self.bold = self.book.add_format({"bold": True})
        self.when = self.book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
        self.sheets = 0
        self.row = ROWS_PER_SHEET  # start a sheet on the first row written

    def _new_sheet(self) -> None:
        self.sheets += 1
        name = self.sheet_name if self.sheets == 1 else f"{self.sheet_name} {self.sheets}"
        self.ws = self.book.add_worksheet(name[:31])
        for i, heading in enumerate(self.headings):
            self.ws.write_string(0, i, heading, self.bold)
            self.ws.set_column(i, i, max(12, min(40, len(heading) + 2)))
        self.ws.freeze_panes(1, 0)
        self.row = 0

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for record in rows:
            if self.row >= ROWS_PER_SHEET:
                self._new_sheet()
            self.row += 1
            for col, name in enumerate(self.columns):
                self._cell(self.row, col, record[name])

    def _cell(self, row: int, col: int, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            self.ws.write_boolean(row, col, value)
        elif isinstance(value, int | float):
            self.ws.write_number(row, col, value)
        elif isinstance(value, datetime):
            naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
            self.ws.write_datetime(row, col, naive, self.when)
        elif isinstance(value, list | tuple):
            self.ws.write_string(row, col, ", ".join(str(v) for v in value))
        else:
            self.ws.write_string(row, col, str(value))

    def close(self) -> None:
        if self.sheets == 0:
            self._new_sheet()
        self.book.close()
