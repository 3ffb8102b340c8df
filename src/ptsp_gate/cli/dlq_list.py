"""`ptsp-gate dlq list`: the dead-lettered records, oldest first, with whether each was replayed;
NIK- and NPWP-like digit runs masked in every format."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ptsp_gate.cli.dlq_common import (
    TABLE_KEY_CHARS,
    connected,
    cut,
    dlq_topics,
    masked,
    shown_key,
)
from ptsp_gate.config import Settings
from ptsp_gate.dlq.records import DeadLetter, matches

# Error messages are cut to this in the table; CSV and JSON carry them whole.
TABLE_MESSAGE_CHARS = 60

LIST_COLUMNS = (
    "address",
    "dlq_topic",
    "dlq_partition",
    "dlq_offset",
    "failed_at",
    "error_code",
    "error_message",
    "source_topic",
    "source_partition",
    "source_offset",
    "key",
    "event_id",
    "size",
    "original_size",
    "replayed_from",
    "replay_state",
    "replayed_at",
    "replay_target",
    "replay_claimed_by",
)
TABLE_COLUMNS = ("address", "failed_at", "error", "source", "key", "size", "replayed", "message")


async def list_records(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.stores import dlq_replays

    topics = dlq_topics(args.topic, settings)
    rows: list[dict[str, Any]] = []
    async with connected(settings, topics, args.timeout) as (conn, reader):
        replays = await dlq_replays.for_topics(conn, topics)
        for topic in topics:
            async for record in reader.read_all([topic]):
                dead = DeadLetter.from_record(record)
                if matches(dead, error=args.error, since=args.since):
                    rows.append(list_row(dead, replays.get(dead.address)))
    rows.sort(key=lambda r: (r["failed_at"], r["dlq_topic"], r["dlq_partition"], r["dlq_offset"]))
    sys.stdout.write(
        render_list(rows, args.format, args.limit, filtered=bool(args.error or args.since))
    )
    return 0


def list_row(dead: DeadLetter, replay: Any) -> dict[str, Any]:
    """One record as listed: NIK- and NPWP-like digit runs masked in every text field."""
    if replay is not None and replay.record_digest != dead.digest:
        replay = None  # a replay of another record that once had this address
    return {
        "address": str(dead.address),
        "dlq_topic": dead.address.topic,
        "dlq_partition": dead.address.partition,
        "dlq_offset": dead.address.offset,
        "failed_at": dead.failed_at,
        "error_code": dead.error_code,
        "error_message": masked(dead.error_message),
        "source_topic": dead.source_topic,
        "source_partition": dead.source_partition,
        "source_offset": dead.source_offset,
        "key": shown_key(dead),
        "event_id": masked(dead.event_id),
        "size": dead.size,
        "original_size": dead.original_size,
        "replayed_from": dead.replayed_from,
        "replay_state": replay.state if replay else None,
        "replayed_at": replay.replayed_at if replay else None,
        "replay_target": replay.target if replay else None,
        "replay_claimed_by": replay.claimed_by if replay else None,
    }


def render_list(rows: Sequence[dict[str, Any]], fmt: str, limit: int | None, filtered: bool) -> str:
    from ptsp_gate.reports.render import to_csv, to_json, to_table

    shown = list(rows[:limit]) if limit else list(rows)
    if fmt == "json":
        return to_json([{c: r[c] for c in LIST_COLUMNS} for r in shown]) + "\n"
    if fmt == "csv":
        return to_csv(shown, LIST_COLUMNS)
    if not rows:
        return "No dead-lettered records" + (" match." if filtered else ".") + "\n"
    replayed_label = {"published": "yes", "claimed": "in progress", None: "no"}
    table = [
        {
            "address": r["address"],
            "failed_at": r["failed_at"],
            "error": r["error_code"],
            "source": (
                f"{r['source_topic']}/{r['source_partition']}/{r['source_offset']}"
                if r["source_topic"]
                else "?"
            ),
            "key": cut(r["key"], TABLE_KEY_CHARS),
            "size": r["size"],
            "replayed": replayed_label.get(r["replay_state"], r["replay_state"]),
            "message": cut(r["error_message"], TABLE_MESSAGE_CHARS),
        }
        for r in shown
    ]
    replayed = sum(1 for r in rows if r["replay_state"] == "published")
    footer = f"\n{len(rows)} dead-lettered record(s), {replayed} replayed"
    if len(shown) < len(rows):
        footer += f"; showing the oldest {len(shown)} (--limit)"
    return to_table(table, TABLE_COLUMNS) + footer + "\n"
