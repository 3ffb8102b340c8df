"""Failures the consumer loop treats specially."""


class TransientFailure(RuntimeError):
    """The batch could not be committed for a reason that may pass; retry it, skip nothing."""
