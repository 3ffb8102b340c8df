"""The progress an import reports as it goes."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """What an import reports while it runs (the command line draws it)."""

    def reading(self, rows: int, done_bytes: int, total_bytes: int) -> None: ...

    def rejected(self, line: int, reason: str) -> None: ...

    def merging(self, rows: int) -> None: ...
