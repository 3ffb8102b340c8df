"""Errors of the command line, in a module of their own: `python -m ptsp_gate.cli.main` loads the
entry module twice (as __main__ and by name), and a class defined there would exist twice."""


class CommandError(Exception):
    """An expected failure, reported in one line."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (driver messages often span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
