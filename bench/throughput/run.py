"""One whole run: the database, the stack, phases A, B and C in order, the service's shutdown; and
the entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings
from ptsp_gate.embedded import harness
from ptsp_gate.embedded.apache_kafka import missing_prerequisite
from ptsp_gate.embedded.harness import ServiceProcess

from .latency import DecisionCollector, DeliveryFloor, percentiles
from .load import PRELOAD_COMPRESSION, Event, load_enrolments
from .options import latency_run_name, parse_args, rate_label, resolve_rate
from .otlp_sink import OtlpSink
from .phases import build_events, phase_a, phase_b, phase_c, produce_events
from .probe_load import probe_load_role, start_probe_load
from .raw_pipe import raw_pipe_role
from .results import RESULTS_DIR, judge, render, save
from .scrape import consumer_batches, scrape_all, summed
from .stack import Stack, service_ports, stop_together
from .steps import SETUP_TIMEOUT_S, BenchError, say, within


def _expect(collector: DecisionCollector, events: list[Event]) -> None:
    for _key, _headers, _value, app_id, ce_ms in events:
        collector.expect(app_id, ce_ms)


async def measure(stack: Stack, result: dict[str, Any], conn: asyncpg.Connection, dsn: str) -> None:
    """The broker, then the phases, then every instance's shutdown, into `result`."""
    args = stack.args
    instances = args.instances
    await stack.start_broker()

    # One instance: the N events are produced once, before anything else, and phases A and
    # B both read them from the topic. Several: phase B must not find them waiting, or the
    # first instance to join the group would take every partition and the rebalance as the
    # others join would fall inside the measured window. Then the instances start with the
    # group's offsets committed at the end of the topic (after phase A's copy), and the
    # events are built again (same seed, fresh ce_time) and produced once every instance
    # is ready and holds its share of the partitions.
    events: list[Event] = []
    if instances == 1 or not args.skip_raw:
        events = build_events(args)
        _, seconds, used = await produce_events(stack, events)
        say(f"{args.events:,} events produced in {seconds:.1f} s to {used} partitions")

    if not args.skip_raw:
        result["phase_a"] = await phase_a(stack)

    collector = DecisionCollector(stack.bootstrap, stack.topics.decisions, args.partitions)
    sink = OtlpSink() if args.trace == "export" else None
    if instances == 1:
        _expect(collector, events)
    async with within(SETUP_TIMEOUT_S, "starting the decisions consumer"):
        await collector.start()
    try:
        ports = service_ports(args.port, instances)
        service_env = {
            **stack.env,
            "KAFKA_BOOTSTRAP_SERVERS": ",".join(stack.bootstrap),
            "DATABASE_URL": dsn,
            # The service's default log level, whatever the caller's environment says.
            "PTSP_GATE_LOG_LEVEL": "INFO",
        }
        if args.batch:
            service_env["PTSP_GATE_BATCH_MAX_RECORDS"] = str(args.batch)
        result["trace"] = args.trace
        if sink is not None:
            service_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
        result["service_settings"] = {
            k: v for k, v in sorted(service_env.items()) if k.startswith("PTSP_GATE_")
        }
        if instances == 1:
            say(f"phase B: the permit-checker on {args.events:,} waiting events (port {ports[0]})")
            services = [stack.start_service(service_env, ports[0], 0)]
            figures = await phase_b(stack, collector, services, conn)
            after_b_counts: list[int] = []
        else:
            services, figures, after_b_counts = await _phase_b_in_a_group(
                stack, result, collector, conn, env=service_env, ports=ports
            )
        await stack.wait_ready(services)
        after_b = await asyncio.to_thread(scrape_all, ports)
        figures["consumer"] = consumer_batches({}, summed(after_b))
        figures["consumer_instances"] = [consumer_batches({}, one) for one in after_b]
        result["phase_b"] = figures
        say(f"phase B: {figures['rate']:,.0f} decisions/s")

        if not args.skip_latency:
            result["phase_c"] = await _latency_runs(
                stack,
                collector,
                services,
                conn,
                ports=ports,
                after_b=after_b,
                phase_b_rate=figures["rate"],
            )
            if "group" in result:
                result["group"]["rebalanced_in_c"] = (
                    stack.assignment_counts(services) != after_b_counts
                )

        # Every instance must drain and exit 0 on SIGTERM (all signalled at once).
        stopped = stop_together(services)
        result["service_exit"] = {
            "code": next((code for code, _ in stopped if code != 0), 0),
            "seconds": max(took for _, took in stopped),
            "instances": [{"code": code, "seconds": took} for code, took in stopped],
        }
        result["duplicates"] = collector.duplicates
        result["unmatched_decisions"] = collector.unmatched
        if sink is not None:
            result["otlp_sink"] = {"requests": sink.requests, "bytes": sink.bytes}
    finally:
        await collector.stop()
        if sink is not None:
            sink.close()
    if args.profile:
        say(
            f"cProfile stats of the service{'' if instances == 1 else ' (instance 0)'}: "
            f"{args.profile}"
        )


async def _phase_b_in_a_group(
    stack: Stack,
    result: dict[str, Any],
    collector: DecisionCollector,
    conn: asyncpg.Connection,
    *,
    env: dict[str, str],
    ports: Sequence[int],
) -> tuple[list[ServiceProcess], dict[str, Any], list[int]]:
    """Phase B with several instances: they form their group first, then the events come.
    Returns the instances, the figures and how many assignments each had logged after it."""
    args = stack.args
    say(
        f"phase B: {args.instances} permit-checker instances (ports "
        f"{', '.join(map(str, ports))}), group {stack.topics.service_group}"
    )
    if args.profile:
        say("--profile: instance 0 runs under cProfile, the others do not")
    services, held, retries, group = await stack.form_group(env, ports)
    result["service_settings"]["PTSP_GATE_GROUP_PERMIT_CHECKER"] = group
    joined = stack.assignment_counts(services)
    say(
        f"phase B: all {args.instances} instances ready, partitions "
        + " / ".join(",".join(map(str, sorted(h))) for h in held)
        + f"; producing {args.events:,} events"
    )
    events = build_events(args)
    _expect(collector, events)
    figures = await phase_b(
        stack, collector, services, conn, produce=lambda: produce_events(stack, events)
    )
    after_b_counts = stack.assignment_counts(services)
    result["group"] = {
        "instances": args.instances,
        "partitions": [sorted(h) for h in held],
        "name": group,
        "failed_attempts_to_form": retries,
        "rebalanced_in_b": after_b_counts != joined,
    }
    return services, figures, after_b_counts


async def _latency_runs(
    stack: Stack,
    collector: DecisionCollector,
    services: Sequence[ServiceProcess],
    conn: asyncpg.Connection,
    *,
    ports: Sequence[int],
    after_b: list[dict[str, float]],
    phase_b_rate: float,
) -> list[dict[str, Any]]:
    """Phase C: one run per rate (and, with --probe-callers, each again under probe load), one
    after the other; each waits for all its decisions, so the next one starts with the service
    caught up again."""
    args = stack.args
    runs: list[dict[str, Any]] = []
    before_c = after_b
    plan = [
        (spec, callers)
        for spec in args.latency_rates
        for callers in ((0, args.probe_callers) if args.probe_callers else (0,))
    ]
    for index, (spec, callers) in enumerate(plan):
        rate = resolve_rate(spec, phase_b_rate)
        name = latency_run_name(index, len(plan))
        say(
            f"phase {name}: {rate:,.0f} events/s"
            + (" (half the phase B rate)" if spec == "half" else "")
            + f" for {args.latency_seconds:g} s"
            + (f", {callers} clients calling /ready" if callers else "")
        )
        floor = DeliveryFloor(stack.bootstrap, stack.topics.applications, args.partitions)
        async with within(SETUP_TIMEOUT_S, "starting the delivery-floor consumer"):
            await floor.start()
        probes = (
            start_probe_load(stack, ports, callers, args.probe_interval, index) if callers else None
        )
        try:
            figures = await phase_c(stack, collector, services, conn, rate=rate, index=index)
        finally:
            await floor.stop()
            if probes is not None:
                stop_together([probes])
        figures["probe_callers"] = callers
        if probes is not None:
            answers = stack.logs / f"probe-load-{index}.json"
            figures["probe_answers"] = json.loads(answers.read_text()) if answers.exists() else None
        figures["name"] = name
        figures["rate_spec"] = rate_label(spec)
        figures["broker_floor_ms"] = percentiles(floor.latencies_ms)
        after_c = await asyncio.to_thread(scrape_all, ports)
        figures["consumer"] = consumer_batches(summed(before_c), summed(after_c))
        figures["consumer_instances"] = [
            consumer_batches(before, after) for before, after in zip(before_c, after_c, strict=True)
        ]
        before_c = after_c
        runs.append(figures)
        lat = figures["latency_ms"] or {}
        say(
            f"phase {name}: p50 {lat.get('p50', 0):.0f} ms, "
            f"p99 {lat.get('p99', 0):.0f} ms at {rate:,.0f} events/s"
        )
    return runs


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """One run; its result, also saved under RESULTS_DIR with the processes' logs."""
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    logs = RESULTS_DIR / f"{stamp}.logs"
    logs.mkdir(exist_ok=True)

    if args.engine == "kafka":
        # Before anything is started: the broker would fail with the same reason, later.
        why = missing_prerequisite()
        if why:
            raise BenchError(f"--engine kafka: {why}")

    result: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
    }
    # PostgreSQL: a fresh database on DATABASE_URL's server, or on an embedded server.
    if not os.environ.get("DATABASE_URL"):
        say("starting the embedded PostgreSQL")
    with (
        tempfile.TemporaryDirectory(prefix="ptsp-bench-") as workdir,
        harness.postgres_server(Path(workdir) / "pgdata") as (server_dsn, pg_kind),
    ):
        stack = Stack(args, Path(workdir), logs)
        async with harness.fresh_database(server_dsn, "ptsp_gate_bench") as dsn:
            try:
                await _on_database(stack, result, dsn, pg_kind)
            finally:
                stack.stop()  # before the database is dropped
    judge(result)
    save(result, stamp, logs)
    return result


async def _on_database(stack: Stack, result: dict[str, Any], dsn: str, pg_kind: str) -> None:
    args = stack.args
    conn = await connect(dsn)
    try:
        async with within(SETUP_TIMEOUT_S + args.employers / 1000, "preparing the database"):
            await migrations.migrate(conn)
            loaded = await load_enrolments(conn, args.employers)
        pg_version = await conn.fetchval("SHOW server_version")
        say(f"database {harness.database_name(dsn)}: migrated, {loaded:,} enrolment records loaded")
        result["setup"] = {
            "engine": args.engine,
            "brokers": args.brokers,
            **(
                {"replication": min(3, args.brokers), "min_insync": min(2, args.brokers)}
                if args.engine == "kafka"
                else {}
            ),
            "preload_compression": PRELOAD_COMPRESSION[args.engine],
            "events": args.events,
            "partitions": args.partitions,
            "instances": args.instances,
            "batch": args.batch or Settings().batch_max_records,
            "employers": args.employers,
            "enrolment_records": loaded,
            "postgres": f"{pg_version} ({pg_kind})",
            "profiled": bool(args.profile),
        }
        await measure(stack, result, conn, dsn)
        result["outcomes"] = {
            r["outcome"]: r["n"]
            for r in await conn.fetch(
                "SELECT outcome, count(*) AS n FROM compliance_decision GROUP BY outcome"
            )
        }
    finally:
        await conn.close()


@contextlib.contextmanager
def sigterm_cancels(task: asyncio.Task[Any]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def amain(args: argparse.Namespace) -> int:
    if args.role == "raw-pipe":
        return await raw_pipe_role(args)
    if args.role == "probe-load":
        return await probe_load_role(args)
    task = asyncio.current_task()
    assert task is not None
    with sigterm_cancels(task):
        try:
            result = await bench(args)
        except BenchError as exc:
            say(f"FAILED: {exc}")
            return 1
    print(render(result))
    failed = result["service_exit"]["code"] != 0
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; everything it started is stopped")
        return 130
