"""Phase A's baseline: a raw aiokafka consume → produce pipe, run as a child process of the bench
(``--role raw-pipe``) on the same records the service gets."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from ptsp_gate.config import Settings
from ptsp_gate.embedded.harness import Process

from .load import relay_like_producer
from .stack import Stack
from .steps import STALL_TIMEOUT_S


async def raw_pipe_role(args: argparse.Namespace) -> int:
    """Consume N records, re-produce each (key, value, headers) to another topic; per batch:
    await every delivery, then commit offsets. Writes its figures as JSON to --result-file."""
    bootstrap = args.bootstrap.split(",")
    batch = args.batch or Settings.model_fields["batch_max_records"].default
    consumer = AIOKafkaConsumer(
        args.in_topic,
        bootstrap_servers=bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = relay_like_producer(bootstrap)
    await consumer.start()
    await producer.start()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    done = 0
    first: float | None = None
    last_progress = time.monotonic()
    try:
        while done < args.events:
            records = [
                r
                for rs in (await consumer.getmany(timeout_ms=1000, max_records=batch)).values()
                for r in rs
            ]
            now = time.monotonic()
            if not records:
                if now - last_progress > STALL_TIMEOUT_S:
                    print(f"raw pipe: stalled at {done} of {args.events}", file=sys.stderr)
                    return 1
                continue
            if first is None:
                first = now
                cpu_start = resource.getrusage(resource.RUSAGE_SELF)
            futures = [
                await producer.send(args.out_topic, r.value, key=r.key, headers=list(r.headers))
                for r in records
            ]
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(records)
            last_progress = time.monotonic()
        assert first is not None
        elapsed = time.monotonic() - first
        cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await producer.stop()
        await consumer.stop()
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    figures = {"records": done, "seconds": elapsed, "rate": done / elapsed, "cpu_s": cpu}
    await asyncio.to_thread(Path(args.result_file).write_text, json.dumps(figures))
    return 0


def start_raw_pipe(stack: Stack) -> Process:
    """The raw pipe on the run's applications topic, in its own process."""
    args, topics = stack.args, stack.topics
    options = [
        "--bootstrap",
        ",".join(stack.bootstrap),
        "--in-topic",
        topics.applications,
        "--out-topic",
        topics.raw_out,
        "--group",
        topics.raw_group,
        "--events",
        str(args.events),
        "--result-file",
        str(stack.logs / "raw-pipe.json"),
    ]
    if args.batch:
        options += ["--batch", str(args.batch)]
    return stack.start_role("raw-pipe", "raw-pipe", options)
