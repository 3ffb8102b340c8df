"""A snapshot file's valid rows as COPY text, its bad rows to the rejects file."""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ptsp_gate.enrolment_import.errors import BadRow, BrokenFile
from ptsp_gate.enrolment_import.progress import Progress
from ptsp_gate.enrolment_import.reading import (
    LIMIT_TEXT,
    MAX_RECORD_BYTES,
    Lines,
    RecordTooLong,
    Source,
)
from ptsp_gate.enrolment_import.rejects import Rejects
from ptsp_gate.enrolment_import.rows import RowParser

# Rows per COPY message: small enough that PostgreSQL is parsing one chunk while Python
# validates the next (both cores busy), large enough that the per-message cost vanishes.
_CHUNK_ROWS = 4096


def _too_long(first: int, last: int) -> str:
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    return f"record longer than {LIMIT_TEXT}: {lines} skipped"


class Feed:
    """The file's valid rows as COPY text, chunk by chunk, counting as it goes; bad rows go to
    the rejects file. Iterate it once."""

    def __init__(
        self, source: Source, path: Path, rejects: Rejects, progress: Progress | None
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
            yield from self._chunks(Lines(self._source.stream))
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

    def _header(self, reader: Any, lines: Lines) -> RowParser:
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

    def _chunks(self, lines: Lines) -> Iterator[bytes]:
        reader = csv.reader(lines.lines(), strict=True)
        try:
            stage_line = self._header(reader, lines).stage_line
        except csv.Error as exc:
            raise BrokenFile(f"line {reader.line_num}: unreadable header: {exc}") from exc
        except RecordTooLong:
            raise BrokenFile(
                f"line {reader.line_num + 1}: the header is longer than {LIMIT_TEXT}"
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
            except RecordTooLong:
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
