"""`ptsp-gate dlq replay`: re-publish dead-lettered records to their source topic, each once.

Every selected record is checked before any is published, and nothing is published while any of
them cannot be. Each replay is recorded in PostgreSQL (`dlq_replay`) before publishing and after
the broker's acknowledgement: a record replayed before is not published again, and one claimed by
a run that stopped in between is completed by the next run that selects it.
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

from ptsp_gate.cli.common import CommandError, one_line
from ptsp_gate.cli.dlq_common import (
    TABLE_KEY_CHARS,
    UsageError,
    connected,
    cut,
    dlq_sources,
    dlq_topics,
    masked,
    resolve_topic,
    shown_key,
)
from ptsp_gate.config import Settings
from ptsp_gate.dlq.records import (
    Address,
    AddressRange,
    DeadLetter,
    matches,
    refusal,
    target_partition,
)

# --- selection -----------------------------------------------------------------------------------


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
    else:
        topics = dlq_topics(args.topic, settings)
    return Selection(tuple(ranges), topics, args.error, args.since)


# --- planning ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What replaying the selection does to each record."""

    publish: list[tuple[DeadLetter, str, int | None]]  # (record, target topic, target partition)
    resumed: set[Address]  # among publish: claimed by a run that did not finish
    already: list[tuple[DeadLetter, Any]]  # replayed before: (record, its Replay)
    handled: list[DeadLetter]  # its ce_id was accepted already: a replay would be dropped
    refused: list[tuple[DeadLetter, str]]


async def replay(args: argparse.Namespace, settings: Settings) -> int:
    from ptsp_gate.stores import dlq_replays

    chosen = selection(args, settings)
    async with connected(settings, chosen.topics, args.timeout) as (conn, reader):
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
    key = shown_key(dead)
    if key:
        parts.append(f"key {cut(key, TABLE_KEY_CHARS)}")
    return ", ".join(parts)


def _report_skips(plan: Plan) -> None:
    for dead, replay in plan.already:
        when = replay.replayed_at.isoformat(timespec="seconds") if replay.replayed_at else "?"
        print(f"already replayed  {dead.address} -> {replay.target} at {when}")
    for dead in plan.handled:
        print(
            f"already handled   {dead.address}: ce_id {masked(dead.event_id)} was accepted on "
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


def _operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
