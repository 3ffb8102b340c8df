"""The command line: options, their checks, and the phase C rates they give."""

from __future__ import annotations

import argparse
import math

from ptsp_gate.embedded.apache_kafka import KAFKA_VERSION

ENGINES = ("mock", "kafka")
DEFAULT_BROKERS = {"mock": 1, "kafka": 3}
# At most this many phase C runs: each gets a letter of its own in the application ids.
MAX_LATENCY_RATES = 8
ROLES = ("bench", "raw-pipe", "probe-load")
TRACE_MODES = ("off", "headers", "export")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="permit_throughput.py",
        description="Throughput and latency of ptsp-gate's permit-checker vs a raw aiokafka pipe.",
    )
    add = p.add_argument
    # One option a line or two, in the order --help lists them. Kept out of the formatter's
    # one-keyword-a-line layout, in which the options could not be read at a glance.
    # fmt: off
    add("--events", type=int, default=100_000, help="events for phases A and B")
    add("--engine", choices=ENGINES, default="mock", help=(
        "the broker: mock (librdkafka's mock cluster, the default) or kafka (Apache Kafka "
        "nodes, needs Java 17+ and the Apache Kafka that scripts/setup installs)"))
    add("--brokers", type=int, default=None,
        help="nodes of the cluster, 1 to 9 (default: 1 with mock, 3 with kafka)")
    add("--partitions", type=int, default=6, help="partitions of every bench topic")
    add("--batch", type=int, default=None, help=(
        "PTSP_GATE_BATCH_MAX_RECORDS for the service and max_records of the raw pipe "
        "(default: the service's default, 1000)"))
    add("--employers", type=int, default=10_000, help="distinct NIBs (max 999999)")
    add("--latency-rate", type=float, default=None, help=(
        "events/s in phase C (default: half the phase B rate); the one-rate form of "
        "--latency-rates"))
    add("--latency-rates", metavar="R[,R...]", default=None, help=(
        "run phase C once per rate, one after the other; each rate is events/s or 'half' "
        "(half the phase B rate), e.g. 500,half (default: half)"))
    add("--latency-seconds", type=float, default=15.0, help="length of phase C")
    add("--latency-tick-ms", type=float, default=20.0,
        help="phase C sends the events due every this many ms, in one burst (see README)")
    add("--probe-callers", type=int, default=0, metavar="N", help=(
        "run each phase C rate twice, the second time with N clients calling /ready of "
        "the instances, each once per --probe-interval (probes, load balancers, people)"))
    add("--probe-interval", type=float, default=1.0, metavar="SECONDS",
        help="how often each --probe-callers client calls /ready (default 1; 0: without pause)")
    add("--skip-raw", action="store_true", help="leave out phase A")
    add("--skip-latency", action="store_true", help="leave out phase C")
    add("--instances", type=int, default=1, help=(
        "permit-checker processes in phases B and C, all in one consumer group (at most "
        "--partitions)"))
    add("--port", type=int, default=0,
        help="service HTTP port; instance i gets port + i (default: free ones)")
    add("--profile", metavar="FILE", help=(
        "run the service (instance 0 only) under cProfile and write its stats to FILE "
        "(slows it down: the figures of such a run are not the service's throughput)"))
    add("--seed", type=int, default=20_260_101, help="seed of the event mix")
    add("--trace", choices=TRACE_MODES, default="off", help=(
        "off: events without trace context; headers: every event carries a traceparent, which "
        "the service carries on (no exporter); export: the same, and the service exports its "
        "spans over OTLP/HTTP to a sink in the bench that discards them"))
    # fmt: on
    # Internal: the raw pipe and the probe load run as child processes of the bench.
    add("--role", choices=ROLES, default="bench", help=argparse.SUPPRESS)
    internal = (
        "--probe-ports",
        "--bootstrap",
        "--in-topic",
        "--out-topic",
        "--group",
        "--result-file",
    )
    for flag in internal:
        add(flag, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.events < 1:
        p.error("--events must be at least 1")
    if not 1 <= args.partitions <= 64:
        p.error("--partitions must be between 1 and 64")
    if not 1 <= args.instances <= args.partitions:
        # An instance without a partition would idle, and the bench could not tell it from one
        # that has not joined the group yet.
        p.error("--instances must be between 1 and --partitions")
    if args.port and not 1 <= args.port <= 65_535 - args.instances + 1:
        p.error("--port + --instances - 1 must be a port number")
    if args.batch is not None and not 1 <= args.batch <= 10_000:
        p.error("--batch must be between 1 and 10000")
    if not 1 <= args.employers <= 999_999:
        p.error("--employers must be between 1 and 999999")
    if args.brokers is None:
        args.brokers = DEFAULT_BROKERS[args.engine]
    if not 1 <= args.brokers <= 9:
        p.error("--brokers must be between 1 and 9")
    if args.latency_rate is not None and args.latency_rates is not None:
        p.error("give --latency-rate or --latency-rates, not both")
    if args.latency_rate is not None:
        if args.latency_rate <= 0:
            p.error("--latency-rate must be positive")
        args.latency_rates = [args.latency_rate]
    else:
        try:
            args.latency_rates = parse_rates(
                "half" if args.latency_rates is None else args.latency_rates
            )
        except ValueError as exc:
            p.error(f"--latency-rates: {exc}")
    if args.latency_seconds <= 0:
        p.error("--latency-seconds must be positive")
    if not 0 <= args.probe_callers <= 10_000:
        p.error("--probe-callers must be between 0 and 10000")
    if not 0 <= args.probe_interval <= 60:
        p.error("--probe-interval must be between 0 and 60")
    if not 1 <= args.latency_tick_ms <= 1000:
        p.error("--latency-tick-ms must be between 1 and 1000")
    return args


RateSpec = float | str  # events/s, or "half": half the phase B rate


def parse_rates(text: str) -> list[RateSpec]:
    """'500,half' -> [500.0, 'half']."""
    rates: list[RateSpec] = []
    for item in text.split(","):
        word = item.strip().lower()
        if word == "half":
            rates.append("half")
            continue
        try:
            rate = float(word)
        except ValueError:
            raise ValueError(f"{item.strip()!r} is neither a number nor 'half'") from None
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"{item.strip()!r}: a rate must be positive")
        rates.append(rate)
    if len(rates) > MAX_LATENCY_RATES:
        raise ValueError(f"at most {MAX_LATENCY_RATES} rates")
    return rates


def resolve_rate(spec: RateSpec, phase_b_rate: float) -> float:
    return phase_b_rate / 2 if spec == "half" else float(spec)


def rate_label(spec: RateSpec) -> str:
    return "half" if spec == "half" else f"{float(spec):g}"


def latency_run_name(index: int, runs: int) -> str:
    """C with one rate (as before there were several); C1, C2, ... with several."""
    return "C" if runs == 1 else f"C{index + 1}"


def latency_run_letter(index: int) -> str:
    """The phase letter in the application ids of phase C run `index`: C, D, E, ..."""
    return chr(ord("C") + index)


def engine_name(engine: str, brokers: int) -> str:
    nodes = f"{brokers} {'node' if brokers == 1 else 'nodes'}"
    if engine == "kafka":
        return f"Apache Kafka {KAFKA_VERSION}, {nodes}"
    return f"librdkafka mock cluster, {brokers} broker{'' if brokers == 1 else 's'}"
