"""Failures the consumer loop treats specially."""

from __future__ import annotations

from ptsp_gate.adapters.postgres import TRANSIENT_DB_ERRORS


class TransientFailure(RuntimeError):
    """The batch could not be committed for a reason that may pass; retry it, skip nothing."""


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a timeout, a lock: the infrastructure's, whatever the records. Retried
    until it passes, never dead-lettered."""
    return isinstance(exc, (TransientFailure, *TRANSIENT_DB_ERRORS))
