"""A snapshot file's bytes and lines: gzip recognised by its magic bytes, other archives refused,
and each record kept within a byte budget, so that a hostile or broken file cannot fill the
memory."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ptsp_gate.enrolment_import.errors import BrokenFile

# A real record is a few hundred bytes; the csv module also limits each field (131,072 characters).
MAX_RECORD_BYTES = 1 << 20
LIMIT_TEXT = f"1 MiB ({MAX_RECORD_BYTES} bytes)"

_MAGIC_REFUSED = {
    b"PK\x03\x04": "a zip archive",
    b"BZh": "a bzip2 file",
    b"\xfd7zXZ": "an xz file",
    b"\x28\xb5\x2f\xfd": "a zstd file",
}


class Source:
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


class RecordTooLong(Exception):
    """A record ran past MAX_RECORD_BYTES; the rest of its last line has been read and dropped."""


class Lines:
    """The file's physical lines, decoded, for the csv reader, within a byte budget per record:
    the feed sets `left` before each record, and a line that would take the record past it is
    neither decoded nor handed on. Its rest is read (a buffer at a time) and dropped, up to the
    line break, and the iteration ends with RecordTooLong; `lines()` then starts over at the
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
                raise RecordTooLong
            self.left = left - len(piece)
            yield piece.decode()
            piece = readline(self.left + 1)
