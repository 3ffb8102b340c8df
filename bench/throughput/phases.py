"""The measured phases: A (the raw pipe), B (the service on a backlog) and C (the service fed at a
fixed rate)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from ptsp_gate.embedded.harness import Process

from .cpu import CpuSnapshot, PostgresCpu, cpu_figures
from .latency import DecisionCollector, percentiles, wait_for_decisions
from .load import PRELOAD_COMPRESSION, Event, make_event, preload
from .options import latency_run_letter
from .raw_pipe import start_raw_pipe
from .stack import Stack
from .steps import SETUP_TIMEOUT_S, BenchError, check_alive, say, wait_until, within

DRAIN_TIMEOUT_S = 60.0  # phase C: after the last event is sent, all its decisions must be in


def build_events(args: argparse.Namespace) -> list[Event]:
    """The N phase-B events; the same seed gives the same ones (but ce_time = now)."""
    rng = random.Random(args.seed)
    traced = args.trace != "off"
    return [make_event(rng, args.employers, i, "B", traced) for i in range(args.events)]


async def produce_events(stack: Stack, events: list[Event]) -> tuple[float, float, int]:
    """The events to the applications topic (see load.preload)."""
    async with within(SETUP_TIMEOUT_S + len(events) / 1000, "producing the events"):
        return await preload(
            stack.bootstrap,
            stack.topics.applications,
            events,
            stack.args.partitions,
            PRELOAD_COMPRESSION[stack.args.engine],
        )


async def phase_a(stack: Stack) -> dict[str, Any]:
    """The raw aiokafka pipe, in its own process, on the same N records."""
    say("phase A: raw aiokafka pipe")
    pipe = start_raw_pipe(stack)
    await wait_until(
        lambda: not pipe.running(),
        max(120.0, stack.args.events / 200),
        "the raw pipe's end",
    )
    if pipe.returncode != 0:
        raise BenchError(f"raw pipe exited with {pipe.returncode}:\n{pipe.tail()}")
    figures: dict[str, Any] = json.loads((stack.logs / "raw-pipe.json").read_text())
    say(f"phase A: {figures['rate']:,.0f} records/s")
    return figures


async def phase_b(
    stack: Stack,
    collector: DecisionCollector,
    services: Sequence[Process],
    conn: asyncpg.Connection,
    produce: Callable[[], Coroutine[Any, Any, tuple[float, float, int]]] | None = None,
) -> dict[str, Any]:
    """Decisions/s on the backlog, from the first decision published to the last. With
    `produce`, the events are produced now (the services are already running)."""
    pg_cpu = PostgresCpu(conn)
    broker = stack.broker
    assert broker is not None
    snaps: dict[str, CpuSnapshot] = {}

    async def snapshot(name: str) -> None:
        snaps[name] = await CpuSnapshot.take(services, broker, pg_cpu)

    spawned = time.monotonic()
    producing = asyncio.create_task(produce(), name="produce") if produce else None

    def produced_ok() -> None:
        if producing is None or not producing.done() or producing.cancelled():
            return
        exc = producing.exception()
        if isinstance(exc, BenchError):
            raise exc
        if exc is not None:
            raise BenchError(f"producing phase B's events: {exc!r}") from exc

    try:
        await wait_for_decisions(
            collector,
            "B",
            stack.args.events,
            services,
            timeout=max(180.0, stack.args.events / 100),
            on_first=lambda: snapshot("first"),
            check=produced_ok,
        )
        await snapshot("last")
        produced = await producing if producing is not None else None
    finally:
        if producing is not None and not producing.done():
            producing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producing
    stats = collector.phase("B")
    assert stats.first_ms is not None
    assert stats.last_ms is not None
    span = max(stats.last_ms - stats.first_ms, 1) / 1000
    first, last = snaps["first"], snaps["last"]
    figures = {
        "decisions": stats.received,
        "seconds": span,
        "rate": stats.received / span,
        "spawn_to_last_decision_s": last.wall - spawned,
        **cpu_figures(first, last),
        "latency_ms": percentiles(stats.latencies_ms),
    }
    if produced is not None:
        # The services ran before the events were produced: this span is from the start of
        # production, which may overlap the window's start (the bench's CPU too).
        began, took, used = produced
        del figures["spawn_to_last_decision_s"]
        figures["produce_to_last_decision_s"] = last.wall - began
        figures["produced"] = {
            "seconds": took,
            "partitions": used,
            "first_decision_after_s": first.wall - began,
            "overlap_with_window_s": max(0.0, began + took - first.wall),
        }
    return figures


async def phase_c(
    stack: Stack,
    collector: DecisionCollector,
    services: Sequence[Process],
    conn: asyncpg.Connection,
    *,
    rate: float,
    index: int = 0,
) -> dict[str, Any]:
    """Events at a fixed rate, ce_time = send time; latency = decision CreateTime − ce_time.
    Run `index` of several has application ids and a seed of its own.

    Every tick, the events due by then are built (ce_time = now) and handed to the producer
    in one burst, so each partition gets one record batch per tick (see README: the mock
    broker serves one record batch per partition per fetch; on Apache Kafka the bursts do no
    harm, they are what a producer with a linger of one tick would send)."""
    args = stack.args
    phase = latency_run_letter(index)
    pg_cpu = PostgresCpu(conn)
    broker = stack.broker
    assert broker is not None
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    await producer.start()
    cpu_before = await CpuSnapshot.take(services, broker, pg_cpu)
    rng = random.Random(args.seed + 1 + index)
    total = max(1, int(rate * args.latency_seconds))
    tick = args.latency_tick_ms / 1000
    loop = asyncio.get_running_loop()
    sent = 0
    futures = []
    try:
        started = loop.time()
        ticks = 0
        while sent < total:
            collector.check()
            check_alive(services)
            due = min(total, int((loop.time() - started) * rate) + 1)
            while sent < due:
                key, headers, value, app_id, ce_ms = make_event(
                    rng, args.employers, sent, phase, args.trace != "off"
                )
                collector.expect(app_id, ce_ms)
                futures.append(
                    await producer.send(stack.topics.applications, value, key=key, headers=headers)
                )
                sent += 1
            ticks += 1
            await asyncio.sleep(max(0.0, started + ticks * tick - loop.time()))
        produced_in = loop.time() - started
        async with within(SETUP_TIMEOUT_S, "delivering phase C's events"):
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    await wait_for_decisions(collector, phase, total, services, timeout=DRAIN_TIMEOUT_S)
    cpu_after = await CpuSnapshot.take(services, broker, pg_cpu)
    stats = collector.phase(phase)
    drift = stats.drift()
    return {
        "id_letter": phase,
        "rate": rate,
        "seconds": args.latency_seconds,
        "tick_ms": args.latency_tick_ms,
        "sent": total,
        "achieved_rate": total / produced_in if produced_in > 0 else 0.0,
        "latency_ms": percentiles(stats.latencies_ms),
        "median_first_third_ms": drift[0] if drift else None,
        "median_last_third_ms": drift[1] if drift else None,
        "kept_up": drift is None or drift[1] <= max(2 * drift[0], drift[0] + 250),
        # From the first event sent to the last decision in: production and drain.
        "cpu": cpu_figures(cpu_before, cpu_after),
    }
