"""structlog JSON logging for the services and the standard-library loggers they use."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from ptsp_gate.observability.tracing import add_trace_ids

# NPWP (15 digits, or 16 for the new form) and NIK (16 digits) are personal or tax data: never
# written to logs whole. What is masked, in any text:
# - a run of 14 or more digits (14-17 cover the identifiers with a digit more or less around them;
#   a longer run may be several glued together), so a 13-digit NIB, the public business id, stays
#   readable for tracing;
# - an NPWP in its printed form, `01.234.567.8-901.000`, with or without the branch code, with a
#   dot or a hyphen at each separator.
# All digits but the last four become `*`; separators stay. What is left can never match again,
# so masking twice changes nothing.
# (Both begin with two digits, factored out so that text without them is scanned about as fast
# as by the plain digit-run expression this replaced: every log line goes through it.)
_IDENTIFIER = re.compile(
    r"(?<!\d)\d\d(?:\d{12,}|[.-]\d{3}[.-]\d{3}[.-]\d[.-]\d{3}(?:[.-]\d{3})?)(?!\d)"
)
_SHORTEST = 14  # no shorter text can hold a match
_SENSITIVE_KEYS = frozenset({"npwp", "nik"})
# Nesting deeper than this is rendered as masked text rather than walked.
_MAX_DEPTH = 16
_SEQUENCES = (list, tuple)
_CONTAINERS = (dict, list, tuple)


def _mask_match(match: re.Match[str]) -> str:
    found = match.group()
    if found.isdigit():
        return "*" * (len(found) - 4) + found[-4:]
    hidden = sum(c.isdigit() for c in found) - 4
    out: list[str] = []
    for c in found:
        if hidden and c.isdigit():
            out.append("*")
            hidden -= 1
        else:
            out.append(c)
    return "".join(out)


def mask_text(text: str) -> str:
    """`text` with NPWP- and NIK-like numbers masked to their last four digits (see above)."""
    if len(text) < _SHORTEST or _IDENTIFIER.search(text) is None:
        return text
    return _IDENTIFIER.sub(_mask_match, text)


def _mask_key(value: str) -> str:
    return "*" * max(len(value) - 4, 0) + value[-4:]


def _masked(value: Any, depth: int) -> Any:
    """`value` with every string in it masked; containers are copied only when something in
    them changes (the caller's objects are never modified), anything else is left as it is."""
    if isinstance(value, str):
        return mask_text(value)
    if depth >= _MAX_DEPTH:
        return mask_text(str(value)) if isinstance(value, _CONTAINERS) else value
    if isinstance(value, dict):
        changed: dict[Any, Any] | None = None
        for key, item in value.items():
            if key in _SENSITIVE_KEYS and isinstance(item, str):
                new = _mask_key(item)
            elif item.__class__ is str and len(item) < _SHORTEST:
                continue
            else:
                new = _masked(item, depth + 1)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if isinstance(value, _SEQUENCES):
        items: list[Any] | None = None
        for index, item in enumerate(value):
            if item.__class__ is str and len(item) < _SHORTEST:
                continue  # the common case, a list of codes: no call
            new = _masked(item, depth + 1)
            if new is not item:
                if items is None:
                    items = list(value)
                items[index] = new
        if items is None:
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def mask_sensitive(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Runs on every line, a line per decision: a string shorter than 14 characters cannot hold
    # an NPWP or NIK, and most values are, so they skip the regular expression.
    for key, value in event.items():
        if isinstance(value, str):
            if key in _SENSITIVE_KEYS:
                event[key] = _mask_key(value)
            elif len(value) >= _SHORTEST and _IDENTIFIER.search(value):
                event[key] = _IDENTIFIER.sub(_mask_match, value)
        elif isinstance(value, _CONTAINERS):
            event[key] = _masked(value, 1)
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
        add_trace_ids,
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
    # OpenTelemetry warns, quoting it, about every malformed tracestate it parses: a sender's
    # hostile header would cost a line per record. Such a header is ignored (tracing.py).
    logging.getLogger("opentelemetry.trace.span").setLevel(logging.ERROR)


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
