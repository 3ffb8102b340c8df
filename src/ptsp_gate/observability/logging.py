"""structlog JSON logging for the services and the standard-library loggers they use."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# NPWP (15/16 digits) and NIK (16 digits) are personal or tax data: never written to logs whole.
_LONG_DIGITS = re.compile(r"(?<!\d)(\d{11,12})(\d{4})(?!\d)")
_SENSITIVE_KEYS = {"npwp", "nik"}


def mask_text(text: str) -> str:
    return _LONG_DIGITS.sub(lambda m: "*" * len(m.group(1)) + m.group(2), text)


def mask_sensitive(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Runs on every line, a line per decision: a string shorter than 15 characters cannot hold
    # an NPWP or NIK, and most values are, so they skip the regular expression.
    for key, value in event.items():
        if not isinstance(value, str):
            continue
        if key in _SENSITIVE_KEYS:
            event[key] = "*" * max(len(value) - 4, 0) + value[-4:]
        elif len(value) >= 15 and key != "nib" and _LONG_DIGITS.search(value):
            event[key] = mask_text(value)
    return event


def _head_first(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put the fields a reader scans for first, whichever path the line came by."""
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    head = {k: event.pop(k) for k in ("timestamp", "level", "logger", "event") if k in event}
    head.update(event)
    return head


def configure(level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Any] = [structlog.processors.format_exc_info, mask_sensitive, _head_first, renderer]
    # Our own lines skip the standard library's LogRecord machinery: at a line per decision, that
    # machinery cost more than the decision. Foreign loggers (FastStream, aiokafka, uvicorn) go
    # through the root handler below and come out in the same shape.
    structlog.configure(
        processors=[*shared, *tail],
        logger_factory=structlog.WriteLoggerFactory(file=_stream),  # type: ignore[arg-type]
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(_stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every reconnect attempt at ERROR during an outage; one line a minute is enough.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))


class _Stream:
    """Standard error as it is at each write (not when logging was configured), so a replaced
    stream, such as a test's capture, is followed and a closed one is never written to."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_stream = _Stream()


def get_logger(name: str) -> Any:
    # Lazy: a logger made at import time follows the configuration made later by configure().
    return structlog.get_logger(logger_name=name)
