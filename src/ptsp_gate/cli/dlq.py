"""`ptsp-gate dlq list | replay`: see what was dead-lettered, and re-publish records to their
source topic once the cause is fixed.

Both read the dead-letter topics without a consumer group (see `adapters.dlq_reader`), so they
never move a service's offsets. `replay` checks every selected record before publishing any; it
records each replay in PostgreSQL (`dlq_replay`) before publishing and after the broker's
acknowledgement, so replaying a record again publishes nothing, and a run interrupted between the
two is completed by the next run that selects the record.

Exit codes: 0 done (also when nothing matched, or everything selected was replayed before);
1 an error (Kafka or PostgreSQL unreachable, an address with no record, a record that cannot be
replayed, a publish that failed); 2 a usage error (arguments, or a topic this configuration does
not know).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ptsp_gate.cli.errors import CommandError, one_line
from ptsp_gate.config import Settings
from ptsp_gate.dlq.records import (
    Address,
    AddressRange,
    DeadLetter,
    matches,
    refusal,
    target_partition,
)
from ptsp_gate.observability.logging import mask_text

# Error messages are cut to this in the table; CSV and JSON carry them whole.
TABLE_MESSAGE_CHARS = 60
TABLE_KEY_CHARS = 24

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


class UsageError(ValueError):
    """The command line asks for something this configuration cannot mean: exit 2."""


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.dlq.reader import KafkaUnavailable, NoSuchRecord, quiet_client_logs

    quiet_client_logs()
    try:
        if args.action == "list":
            return await _list(args, settings)
        return await _replay(args, settings)
    except UsageError as exc:
        print(f"ptsp-gate dlq: {exc} (see --help)", file=sys.stderr)
        return 2
    except (KafkaUnavailable, NoSuchRecord) as exc:
        raise CommandError(str(exc)) from exc


# --- topics and selection ------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Selection:
    ranges: tuple[AddressRange, ...]  # by address; empty when selecting by filter
    topics: tuple[str, ...]  # the DLQ topics read
    error: str | None
    since: datetime | None


def selection(args: argparse.Namespace, settings: Settings) -> Selection:
    """What `replay` is asked to replay, checked before anything is contacted."""
    given: list[AddressRange] = list(args.addresses or ())
    offsets: list[tuple[int, int]] = list(args.offset or ())
    ranges: list[AddressRange] = []
    if offsets or args.partition is not None:
        if args.partition is None:
            raise UsageError("--offset needs --partition and --topic")
        if not offsets:
            raise UsageError("--partition needs --offset")
        if args.topic is None:
            raise UsageError("--partition and --offset need --topic")
        if given:
            raise UsageError(
                "give addresses as TOPIC/PARTITION/OFFSET or with --topic, --partition and "
                "--offset, not both"
            )
        dlq = resolve_topic(args.topic, settings)
        ranges = [AddressRange(dlq, args.partition, first, last) for first, last in offsets]
    elif given:
        if args.topic is not None:
            raise UsageError("--topic goes with --partition and --offset; an address names its own")
        ranges = [replace(r, topic=resolve_topic(r.topic, settings)) for r in given]
    if ranges and args.all:
        raise UsageError("--all selects every record: do not combine it with addresses")
    if not ranges and not args.all and args.error is None:
        raise UsageError("say which records to replay: addresses, --error CODE or --all")
    if ranges:
        topics = tuple(dict.fromkeys(r.topic for r in ranges))
    elif args.topic is not None:
        topics = (resolve_topic(args.topic, settings),)
    else:
        topics = tuple(dlq_sources(settings))
    return Selection(tuple(ranges), topics, args.error, args.since)


def _list_topics(args: argparse.Namespace, settings: Settings) -> tuple[str, ...]:
    if args.topic is not None:
        return (resolve_topic(args.topic, settings),)
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


async def _connect(dsn: str, timeout_s: float) -> Any:
    from ptsp_gate.adapters import migrations
    from ptsp_gate.adapters.postgres import connect

    try:
        conn = await asyncio.wait_for(connect(dsn), timeout_s)
    except TimeoutError:
        raise CommandError(f"PostgreSQL did not answer within {timeout_s:g} s") from None
    except Exception as exc:
        raise CommandError(f"cannot connect to PostgreSQL: {one_line(exc)}") from exc
    try:
        if await migrations.pending(conn):
            raise CommandError("database schema is behind: run `ptsp-gate migrate`")
    except BaseException:
        await conn.close()
        raise
    return conn


def _check_exist(topics: Sequence[str], partitions: Mapping[str, int]) -> None:
    missing = [t for t in topics if t not in partitions]
    if missing:
        raise CommandError(
            f"{', '.join(missing)} {'does' if len(missing) == 1 else 'do'} not exist on the cluster"
            " (ptsp-gate never creates topics)"
        )


def _operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# --- list ----------------------------------------------------------------------------------------


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.cli.commands import database
    from ptsp_gate.dlq.reader import DlqReader
    from ptsp_gate.stores import dlq_replays

    topics = _list_topics(args, settings)
    _need_kafka(settings)
    rows: list[dict[str, Any]] = []
    async with database(settings) as dsn:
        conn = await _connect(dsn, args.timeout)
        try:
            replays = await dlq_replays.for_topics(conn, topics)
        finally:
            await conn.close()
        async with DlqReader(settings, args.timeout) as reader:
            _check_exist(topics, reader.partitions)
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


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_text(text)


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
        "error_message": _masked(dead.error_message),
        "source_topic": dead.source_topic,
        "source_partition": dead.source_partition,
        "source_offset": dead.source_offset,
        "key": _masked(_text(dead.key)),
        "event_id": _masked(dead.event_id),
        "size": dead.size,
        "original_size": dead.original_size,
        "replayed_from": dead.replayed_from,
        "replay_state": replay.state if replay else None,
        "replayed_at": replay.replayed_at if replay else None,
        "replay_target": replay.target if replay else None,
        "replay_claimed_by": replay.claimed_by if replay else None,
    }


def _cut(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


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
            "key": _cut(r["key"], TABLE_KEY_CHARS),
            "size": r["size"],
            "replayed": replayed_label.get(r["replay_state"], r["replay_state"]),
            "message": _cut(r["error_message"], TABLE_MESSAGE_CHARS),
        }
        for r in shown
    ]
    replayed = sum(1 for r in rows if r["replay_state"] == "published")
    footer = f"\n{len(rows)} dead-lettered record(s), {replayed} replayed"
    if len(shown) < len(rows):
        footer += f"; showing the oldest {len(shown)} (--limit)"
    return to_table(table, TABLE_COLUMNS) + footer + "\n"


# --- replay --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What replaying the selection does to each record."""

    publish: list[tuple[DeadLetter, str, int | None]]  # (record, target topic, target partition)
    resumed: set[Address]  # among publish: claimed by a run that did not finish
    already: list[tuple[DeadLetter, Any]]  # replayed before: (record, its Replay)
    handled: list[DeadLetter]  # its ce_id was accepted already: a replay would be dropped
    refused: list[tuple[DeadLetter, str]]


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.cli.commands import database
    from ptsp_gate.dlq.reader import DlqReader
    from ptsp_gate.stores import dlq_replays

    chosen = selection(args, settings)
    _need_kafka(settings)
    async with database(settings) as dsn:
        conn = await _connect(dsn, args.timeout)
        try:
            async with DlqReader(settings, args.timeout) as reader:
                _check_exist(chosen.topics, reader.partitions)
                records = await _selected(reader, chosen)
                if not records:
                    print("Nothing to replay: no dead-lettered record matches.")
                    return 0
                if args.dry_run:
                    plan = await _plan(conn, records, settings, reader.partitions)
                    return _report_dry_run(plan)
                try:
                    async with dlq_replays.exclusive(conn):
                        plan = await _plan(conn, records, settings, reader.partitions)
                        _refuse(plan)
                        return await _publish(conn, plan, settings, args.timeout)
                except dlq_replays.ReplayBusy as exc:
                    raise CommandError(str(exc)) from exc
        finally:
            await conn.close()


async def _selected(reader: Any, chosen: Selection) -> list[DeadLetter]:
    found: dict[Address, DeadLetter] = {}
    if chosen.ranges:
        by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for r in chosen.ranges:
            by_partition.setdefault((r.topic, r.partition), []).append((r.first, r.last))
        for (topic, partition), ranges in by_partition.items():
            for record in await reader.read_at(topic, partition, ranges):
                dead = DeadLetter.from_record(record)
                found[dead.address] = dead
    else:
        for topic in chosen.topics:
            async for record in reader.read_all([topic]):
                dead = DeadLetter.from_record(record)
                found[dead.address] = dead
    # Filters narrow addresses too. Re-published in DLQ order: per partition, the order they failed.
    return sorted(
        (d for d in found.values() if matches(d, error=chosen.error, since=chosen.since)),
        key=lambda d: d.address,
    )


async def _plan(
    conn: Any, records: Sequence[DeadLetter], settings: Settings, partitions: Mapping[str, int]
) -> Plan:
    from ptsp_gate.stores import dlq_replays

    sources = dlq_sources(settings)
    replays = await dlq_replays.for_addresses(conn, [d.address for d in records])
    plan = Plan([], set(), [], [], [])
    fresh: list[tuple[DeadLetter, str]] = []
    for dead in records:
        replay = replays.get(dead.address)
        if replay is not None and replay.record_digest != dead.digest:
            plan.refused.append(
                (
                    dead,
                    "the replay ledger holds another record at this address "
                    "(was the topic deleted and re-created?)",
                )
            )
            continue
        if replay is not None and replay.state == dlq_replays.PUBLISHED:
            plan.already.append((dead, replay))
            continue
        why = refusal(dead, sources=sources, partitions=partitions)
        if why is not None:
            plan.refused.append((dead, why))
            continue
        target = dead.source_topic
        assert target is not None  # refusal() checked it
        if replay is not None:
            # Claimed by a run that stopped before the broker's acknowledgement was recorded.
            plan.resumed.add(dead.address)
            plan.publish.append((dead, target, target_partition(dead, partitions[target])))
        else:
            fresh.append((dead, target))
    by_target: dict[str, list[DeadLetter]] = {}
    for dead, target in fresh:
        by_target.setdefault(target, []).append(dead)
    handled: set[tuple[str, str]] = set()
    for target, group in by_target.items():
        ids = {d.event_id for d in group if d.event_id}
        handled |= {(target, i) for i in await dlq_replays.handled(conn, target, ids)}
    for dead, target in fresh:
        if dead.event_id and (target, dead.event_id) in handled:
            plan.handled.append(dead)
        else:
            plan.publish.append((dead, target, target_partition(dead, partitions[target])))
    plan.publish.sort(key=lambda p: p[0].address)
    return plan


def _where(target: str, partition: int | None) -> str:
    return f"{target} (partition {partition})" if partition is not None else f"{target} (by key)"


def _describe(dead: DeadLetter) -> str:
    parts = [dead.error_code or "no error code"]
    key = _masked(_text(dead.key))
    if key:
        parts.append(f"key {_cut(key, TABLE_KEY_CHARS)}")
    return ", ".join(parts)


def _report_skips(plan: Plan) -> None:
    for dead, replay in plan.already:
        when = replay.replayed_at.isoformat(timespec="seconds") if replay.replayed_at else "?"
        print(f"already replayed  {dead.address} -> {replay.target} at {when}")
    for dead in plan.handled:
        print(
            f"already handled   {dead.address}: ce_id {_masked(dead.event_id)} was accepted on "
            f"{dead.source_topic}; a replay would be dropped as a duplicate"
        )


def _report_dry_run(plan: Plan) -> int:
    for dead, target, partition in plan.publish:
        note = " (completing an interrupted replay)" if dead.address in plan.resumed else ""
        where = _where(target, partition)
        print(f"would replay      {dead.address} -> {where}: {_describe(dead)}{note}")
    _report_skips(plan)
    print(
        f"dry run: would replay {len(plan.publish)}, already replayed {len(plan.already)}, "
        f"already handled {len(plan.handled)}; nothing was published"
    )
    _refuse(plan)
    return 0


def _refuse(plan: Plan) -> None:
    """Nothing is published when any selected record cannot be: the operator narrows the
    selection knowing exactly what is left out."""
    if not plan.refused:
        return
    lines = [f"cannot replay {dead.address}: {why}" for dead, why in plan.refused]
    for line in lines[:-1]:
        print(f"ptsp-gate dlq: {line}", file=sys.stderr)
    raise CommandError(f"{lines[-1]}; nothing was published")


async def _publish(conn: Any, plan: Plan, settings: Settings, timeout_s: float) -> int:
    from ptsp_gate.adapters import kafka
    from ptsp_gate.dlq.reader import bounded
    from ptsp_gate.stores import dlq_replays

    _report_skips(plan)
    if not plan.publish:
        print(
            f"replayed 0, already replayed {len(plan.already)}, already handled {len(plan.handled)}"
        )
        return 0
    producer = kafka.make_producer(settings)
    await bounded("cannot connect to Kafka to publish", producer.start(), timeout_s)
    sent: list[tuple[DeadLetter, asyncio.Future[Any]]] = []
    failures: list[str] = []
    try:
        await dlq_replays.claim(
            conn,
            [(d, t) for d, t, _ in plan.publish if d.address not in plan.resumed],
            _operator(),
        )

        async def send_all() -> None:
            for dead, target, partition in plan.publish:
                future = await producer.send(
                    target,
                    value=dead.value,
                    key=dead.key,
                    headers=dead.replay_headers(),
                    partition=partition,
                )
                sent.append((dead, future))

        try:
            await asyncio.wait_for(send_all(), timeout_s)
        except TimeoutError:
            failures.append(f"Kafka did not take the records within {timeout_s:g} s")
        except Exception as exc:
            failures.append(one_line(exc))
        if sent:
            await asyncio.wait([f for _, f in sent], timeout=timeout_s)
        published: list[tuple[Address, str, int, int]] = []
        for dead, future in sent:
            if future.done() and not future.cancelled() and future.exception() is None:
                meta = future.result()
                published.append((dead.address, meta.topic, meta.partition, meta.offset))
                target = f"{meta.topic}/{meta.partition}/{meta.offset}"
                note = " (completed an interrupted replay)" if dead.address in plan.resumed else ""
                print(f"replayed          {dead.address} -> {target}{note}")
            elif future.done() and not future.cancelled():
                failures.append(f"{dead.address}: {one_line(future.exception() or Exception())}")
            else:
                failures.append(f"no acknowledgement within {timeout_s:g} s")
        await dlq_replays.finish(conn, published)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), timeout_s)
    unconfirmed = len(plan.publish) - len(published)
    print(
        f"replayed {len(published)}, already replayed {len(plan.already)}, "
        f"already handled {len(plan.handled)}"
    )
    if unconfirmed:
        detail = f" ({failures[0]})" if failures else ""
        raise CommandError(
            f"{unconfirmed} record(s) not confirmed published{detail}; they stay claimed "
            "(`dlq list` shows them in progress): run the same replay again to complete them"
        )
    return 0
