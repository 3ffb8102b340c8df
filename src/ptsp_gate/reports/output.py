"""Where a report goes: standard output, or a file that appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[IO[bytes]]:
    """A new file at `target`, written beside it under a temporary name and renamed into place
    when the block ends cleanly, removed otherwise: an interrupted export never leaves half a
    spreadsheet where the last good one was. Readable by its owner only (the lists name
    employers), whatever the umask."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with open(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the whole file is on disk before it takes the name
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
