"""Writing a report of any size to standard output or to a file, in any of the officers'
formats, as its rows are read."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ptsp_gate.reports.labels import headings
from ptsp_gate.reports.output import atomic_file
from ptsp_gate.reports.render import TextRows
from ptsp_gate.reports.xlsx import XlsxRows

TEXT_FORMATS = ("table", "csv", "json", "jsonl")
FORMATS = (*TEXT_FORMATS, "xlsx")


async def copy_csv(
    rows: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[int]],
    *,
    columns: Sequence[str],
    language: str,
    output: Path | None,
) -> int:
    """A CSV whose rows PostgreSQL writes (`rows` hands each chunk of COPY output to the writer
    it is given), after the heading; returns the rows written."""
    heading = TextRows("csv", columns, headings(columns, language), "").begin().encode()
    with contextlib.ExitStack() as stack:
        file = sys.stdout.buffer if output is None else stack.enter_context(atomic_file(output))
        file.write(heading)

        async def emit(chunk: bytes) -> None:
            file.write(chunk)

        count = await rows(emit)
        file.flush()
    return count


async def write(
    batches: AsyncIterable[Sequence[Mapping[str, Any]]],
    *,
    fmt: str,
    columns: Sequence[str],
    language: str,
    output: Path | None,
    sheet: str,
    noun: str,
) -> int:
    """Write every row of `batches`; returns how many. An `.xlsx` needs `output`; text goes to
    `output` or, without one, to standard output."""
    titles = headings(columns, language)
    count = 0
    if fmt == "xlsx":
        if output is None:
            raise ValueError("an .xlsx report needs a file to write to")
        with atomic_file(output) as file:
            book = XlsxRows(file, columns, titles, sheet)
            async for rows in batches:
                book.add(rows)
                count += len(rows)
            book.close()
        return count
    writer = TextRows(fmt, columns, titles, noun)
    with contextlib.ExitStack() as stack:
        if output is None:
            emit = sys.stdout.write
        else:
            file = stack.enter_context(atomic_file(output))

            def emit(text: str) -> int:
                return file.write(text.encode("utf-8"))

        emit(writer.begin())
        async for rows in batches:
            emit(writer.rows(rows))
            count += len(rows)
        emit(writer.end())
    return count
