"""What `dlq list` and `dlq replay` share: the dead-letter topics a configuration knows, the
connections both hold, and how a record's text is shown."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ptsp_gate.cli.common import CommandError, database, migrated
from ptsp_gate.config import Settings
from ptsp_gate.observability.logging import mask_text

if TYPE_CHECKING:
    from ptsp_gate.dlq.reader import DlqReader
    from ptsp_gate.dlq.records import DeadLetter

# Keys are cut to this in the table and in replay's lines; CSV and JSON carry them whole.
TABLE_KEY_CHARS = 24


class UsageError(ValueError):
    """The command line asks for something this configuration cannot mean: exit 2."""


# --- topics --------------------------------------------------------------------------------------


def dlq_sources(settings: Settings) -> dict[str, str]:
    """Each configured dead-letter topic and the source topic it serves."""
    return {settings.dlq_topic(source): source for source in settings.input_topics()}


def resolve_topic(name: str, settings: Settings) -> str:
    """A DLQ topic from its own name or its source topic's."""
    sources = dlq_sources(settings)
    if name in sources:
        return name
    for dlq, source in sources.items():
        if name == source:
            return dlq
    known = ", ".join(sorted([*sources.values(), *sources]))
    raise UsageError(f"unknown topic {name!r}: this configuration knows {known}")


def dlq_topics(name: str | None, settings: Settings) -> tuple[str, ...]:
    """The DLQ topic `name` means (see `resolve_topic`); every one when None."""
    if name is not None:
        return (resolve_topic(name, settings),)
    return tuple(dlq_sources(settings))


# --- connections ---------------------------------------------------------------------------------


def _need_kafka(settings: Settings) -> None:
    from ptsp_gate.adapters import kafka

    if not settings.kafka_bootstrap_servers:
        raise CommandError(
            "KAFKA_BOOTSTRAP_SERVERS must be set (the dead-letter topics are on the services' "
            "cluster)"
        )
    try:
        kafka.security(settings)
    except ValueError as exc:  # security settings that cannot work, said in one line
        raise CommandError(str(exc)) from exc


def _check_exist(topics: Sequence[str], partitions: Mapping[str, int]) -> None:
    missing = [t for t in topics if t not in partitions]
    if missing:
        raise CommandError(
            f"{', '.join(missing)} {'does' if len(missing) == 1 else 'do'} not exist on the cluster"
            " (ptsp-gate never creates topics)"
        )


@contextlib.asynccontextmanager
async def connected(
    settings: Settings, topics: Sequence[str], timeout_s: float
) -> AsyncIterator[tuple[Any, DlqReader]]:
    """PostgreSQL (the replay ledger) and a reader of `topics`, which must exist; each gives up
    after `timeout_s` without an answer."""
    from ptsp_gate.dlq.reader import DlqReader

    _need_kafka(settings)
    async with (
        database(settings) as dsn,
        migrated(dsn, timeout_s, settings.statement_timeout_s) as conn,
        DlqReader(settings, timeout_s) as reader,
    ):
        _check_exist(topics, reader.partitions)
        yield conn, reader


# --- text ----------------------------------------------------------------------------------------


def masked(text: str | None) -> str | None:
    """NIK- and NPWP-like digit runs masked: dead letters hold whatever their producer sent."""
    return None if text is None else mask_text(text)


def shown_key(dead: DeadLetter) -> str | None:
    """The record's key as text, masked; bytes that are not printable show as '?'."""
    if dead.key is None:
        return None
    text = dead.key.decode("utf-8", "replace")
    return masked("".join(c if c.isprintable() else "?" for c in text))


def cut(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"
