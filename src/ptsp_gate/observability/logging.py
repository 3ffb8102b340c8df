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


def _mask_text(text: str) -> str:
    return _LONG_DIGITS.sub(lambda m: "*" * len(m.group(1)) + m.group(2), text)


def mask_sensitive(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key in _SENSITIVE_KEYS and isinstance(value, str):
            event[key] = "*" * max(len(value) - 4, 0) + value[-4:]
        elif isinstance(value, str) and key != "nib":
            event[key] = _mask_text(value)
    return event


def configure(level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            mask_sensitive,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every reconnect attempt at ERROR during an outage; one line a minute is enough.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
