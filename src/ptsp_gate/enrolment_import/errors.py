"""How an import fails: as a whole (nothing committed) or one row at a time."""

from __future__ import annotations


class ImportFailed(Exception):
    """The import did not commit; the message is one line for the operator."""


class BrokenFile(ImportFailed):
    """The file as a whole cannot be read: header, encoding, compression, I/O."""


class BadRow(ValueError):
    """One row is invalid; the message says why (several reasons joined by '; ')."""
