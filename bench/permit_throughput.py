#!/usr/bin/env python
"""Throughput and latency of the permit-checker, against a raw aiokafka pipe on the same broker.

Run by hand (not a test); see bench/README.md. One run, on one machine:

* infrastructure: a local Kafka cluster (`ptsp-gate broker`: librdkafka's mock cluster, or with
  ``--engine kafka`` Apache Kafka nodes in JVMs that are children of that process), and PostgreSQL
  from DATABASE_URL (a fresh database is created in it and dropped afterwards) or an
  EmbeddedPostgres in a temporary directory; migrations, then an enrolment projection for
  ``--employers`` NIBs loaded straight into the database (a fixed mix of states);
* N application events (``--events``) are produced once to the bench's applications topic;
* phase A (raw baseline, ``--skip-raw`` to leave out): a separate process consumes those N records
  in batches and re-produces each one to another topic, committing offsets per batch;
* phase B (throughput): ``ptsp-gate run permit-checker`` starts on the same N records (already
  waiting in the topic); decisions/s from the first decision published to the last. With
  ``--instances N`` (N > 1), N service processes share one consumer group: they are started on an
  input topic with nothing new for them, and the N events are produced again only once every
  instance is ready and holds its share of the partitions (no rebalance inside the window);
* phase C (latency, ``--skip-latency`` to leave out): with the service caught up, events at a
  fixed rate for ``--latency-seconds``, once per rate of ``--latency-rates``, one after the other;
  the latency of one event is its decision's CreateTime on the decisions topic minus its ce_time
  (= its send time). A plain consumer on the input topic measures the floor the broker alone
  imposes;
* the service (every instance, all at once) gets SIGTERM and must exit 0; a report is printed
  and saved as JSON under bench/results/ (the processes' logs next to it).

Every process it starts is stopped again on exit, Ctrl-C or SIGTERM; all traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from ptsp_gate import demo
from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings
from ptsp_gate.contract.events import EnrolmentState
from ptsp_gate.embedded.apache_kafka import KAFKA_VERSION, missing_prerequisite
from ptsp_gate.stores import enrolments

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

GOAL_RATE = 10_000  # decisions/s
GOAL_RATIO = 0.5  # ptsp-gate rate / raw pipe rate
GOAL_LATENCY_RATE = 500.0  # events/s of the phase C run the latency goal applies to
GOAL_P99_MS = 50.0  # p99 latency at GOAL_LATENCY_RATE

ENGINES = ("mock", "kafka")
DEFAULT_BROKERS = {"mock": 1, "kafka": 3}
# Three Apache Kafka JVMs need 12-20 s to format, elect a controller and register on two cores,
# longer when the machine is busy; the mock is up in well under a second.
BROKER_START_TIMEOUT_S = {"mock": 30.0, "kafka": 180.0}
SERVICE_READY_TIMEOUT_S = 60.0
# --instances: when the instances have not formed their group this long after their start (it
# takes about 9 s on the mock broker), they are all started again in a new group, at most
# GROUP_ATTEMPTS times in all. Needed for the mock's flaky SyncGroup; on Apache Kafka the group
# forms at the first attempt and the retries never start. See Run.form_group.
GROUP_FORM_S = 25.0
GROUP_ATTEMPTS = 8
STALL_TIMEOUT_S = 60.0  # no new decision (or raw-pipe progress) for this long: give up
STOP_TIMEOUT_S = 45.0  # SIGTERM to exit, for the service (its graceful timeout is 20 s) and broker
DRAIN_TIMEOUT_S = 60.0  # phase C: after the last event is sent, all its decisions must be in
SETUP_TIMEOUT_S = 120.0  # one setup step (database, producing the events, a consumer's start)

# Mock only: the mock broker keeps about 5 MiB per partition, so uncompressed, 100,000
# application events on six partitions would lose their older half before anyone reads them;
# gzip shrinks them ~10x. Apache Kafka keeps them all, and gets them as the service's own producer
# sends records, uncompressed (gzip would add decompression to phases A and B that a real input
# topic need not have).
PRELOAD_COMPRESSION: dict[str, str | None] = {"mock": "gzip", "kafka": None}
# At most this many phase C runs: each gets a letter of its own in the application ids.
MAX_LATENCY_RATES = 8
PRODUCER_MAX_BATCH_BYTES = 256 * 1024  # as the service's outbox relay (adapters/kafka.py)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A condition that ends the run early, stated in one line."""


# --------------------------------------------------------------------------------------------
# Options


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="permit_throughput.py",
        description="Throughput and latency of ptsp-gate's permit-checker vs a raw aiokafka pipe.",
    )
    p.add_argument("--events", type=int, default=100_000, help="events for phases A and B")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="mock",
        help="the broker: mock (librdkafka's mock cluster, the default) or kafka (Apache Kafka "
        "nodes, needs Java 17+ and the Apache Kafka that scripts/setup installs)",
    )
    p.add_argument(
        "--brokers",
        type=int,
        default=None,
        help="nodes of the cluster, 1 to 9 (default: 1 with mock, 3 with kafka)",
    )
    p.add_argument("--partitions", type=int, default=6, help="partitions of every bench topic")
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="PTSP_GATE_BATCH_MAX_RECORDS for the service and max_records of the raw pipe "
        "(default: the service's default, 1000)",
    )
    p.add_argument("--employers", type=int, default=10_000, help="distinct NIBs (max 999999)")
    p.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="events/s in phase C (default: half the phase B rate); the one-rate form of "
        "--latency-rates",
    )
    p.add_argument(
        "--latency-rates",
        metavar="R[,R...]",
        default=None,
        help="run phase C once per rate, one after the other; each rate is events/s or 'half' "
        "(half the phase B rate), e.g. 500,half (default: half)",
    )
    p.add_argument("--latency-seconds", type=float, default=15.0, help="length of phase C")
    p.add_argument(
        "--latency-tick-ms",
        type=float,
        default=20.0,
        help="phase C sends the events due every this many ms, in one burst (see README)",
    )
    p.add_argument(
        "--probe-callers",
        type=int,
        default=0,
        metavar="N",
        help="run each phase C rate twice, the second time with N clients calling /ready of "
        "the instances, each once per --probe-interval (probes, load balancers, people)",
    )
    p.add_argument(
        "--probe-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often each --probe-callers client calls /ready (default 1; 0: without pause)",
    )
    p.add_argument("--skip-raw", action="store_true", help="leave out phase A")
    p.add_argument("--skip-latency", action="store_true", help="leave out phase C")
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        help="permit-checker processes in phases B and C, all in one consumer group (at most "
        "--partitions)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=0,
        help="service HTTP port; instance i gets port + i (default: free ones)",
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="run the service (instance 0 only) under cProfile and write its stats to FILE "
        "(slows it down: the figures of such a run are not the service's throughput)",
    )
    p.add_argument("--seed", type=int, default=20_260_101, help="seed of the event mix")
    # Internal: the raw pipe runs as a child process of the bench.
    p.add_argument(
        "--role",
        choices=("bench", "raw-pipe", "probe-load"),
        default="bench",
        help=argparse.SUPPRESS,
    )
    p.add_argument("--probe-ports", help=argparse.SUPPRESS)
    p.add_argument("--bootstrap", help=argparse.SUPPRESS)
    p.add_argument("--in-topic", help=argparse.SUPPRESS)
    p.add_argument("--out-topic", help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--result-file", help=argparse.SUPPRESS)
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


# --------------------------------------------------------------------------------------------
# Processes and CPU accounting


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the state (field 3) on; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; the fields after it are fixed.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc (None when it is gone or unreadable)."""
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# A process as /proc names it over time: a pid may be reused, a pid with its start time is not.
ProcessKey = tuple[int, int]


def process_tree(root: int) -> dict[ProcessKey, float]:
    """CPU seconds of `root` and of every live descendant, by (pid, start time).

    /proc/<pid>/task/*/children needs CONFIG_PROC_CHILDREN, which not every kernel has, so the
    parent links come from one scan of /proc instead."""
    stats: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields is not None:
                stats[int(entry.name)] = fields
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    tree: dict[ProcessKey, float] = {}
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        fields = stats[pid]
        tree[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        todo.extend(children.get(pid, ()))
    return tree


def tree_delta(before: dict[ProcessKey, float], after: dict[ProcessKey, float]) -> float | None:
    """CPU the tree spent between two snapshots: a process that started in between counts whole,
    one that ended in between is lost (with Apache Kafka that is a node dying, which fails the
    run anyway)."""
    if not after:
        return None
    return sum(cpu - before.get(key, 0.0) for key, cpu in after.items())


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Child:
    """A subprocess in its own session (Ctrl-C reaches only the bench, which then stops it)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.terminated_at: float | None = None  # monotonic time of the SIGTERM
        self.exited_at: float | None = None  # monotonic time its exit was first seen
        # Every descendant seen by tree_cpu(): the broker's JVMs are gone from /proc once they
        # have stopped, and stop() checks that none outlived the child.
        self.descendants: set[ProcessKey] = set()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is not None and self.exited_at is None:
            self.exited_at = time.monotonic()
        return code

    def alive(self) -> bool:
        return self.poll() is None

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def tree_cpu(self) -> dict[ProcessKey, float]:
        """CPU seconds of the child and of its live descendants (see process_tree)."""
        tree = process_tree(self.pid)
        self.descendants.update(key for key in tree if key[0] != self.pid)
        return tree

    def leftovers(self) -> list[int]:
        """Descendants seen earlier that still run (not merely wait to be reaped)."""
        alive = []
        for pid, started in sorted(self.descendants):
            fields = _stat(pid)
            if fields is not None and int(fields[19]) == started and fields[0] not in "ZX":
                alive.append(pid)
        return alive

    def kill_leftovers(self, grace: float = 5.0) -> None:
        """SIGKILL to descendants that outlive the child by `grace` seconds (a JVM killed by its
        parent-death signal needs a moment to go)."""
        deadline = time.monotonic() + grace
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.leftovers():
            say(f"{self.name}: pid {pid} ({process_name(pid)}) outlived it; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:]) or "(no output)"

    def terminate(self) -> None:
        """SIGTERM, once (a second one makes uvicorn give up its graceful shutdown)."""
        if self.terminated_at is None and self.alive():
            self.terminated_at = time.monotonic()
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> tuple[int, float]:
        """SIGTERM (unless sent already), wait until `timeout` after it, SIGKILL if needed;
        returns (exit code, seconds from the SIGTERM to the exit)."""
        self.terminate()
        if self.alive():
            assert self.terminated_at is not None
            try:
                self.popen.wait(max(0.0, self.terminated_at + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {timeout:.0f} s of SIGTERM; killing it")
                self.popen.kill()
                self.popen.wait(10)
            self.poll()
        self.kill_leftovers()
        self._log.close()
        assert self.exited_at is not None
        return self.popen.returncode, self.exited_at - (self.terminated_at or self.exited_at)


def stop_together(
    children: Sequence[Child], timeout: float = STOP_TIMEOUT_S
) -> list[tuple[int, float]]:
    """SIGTERM to all at once (service instances stopped one by one would hand their partitions
    to the others in a rebalance), then wait for all; (exit code, seconds) of each."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + timeout
    while any(child.alive() for child in children) and time.monotonic() < deadline:
        time.sleep(0.02)  # poll all, so that each one's exit time is seen when it happens
    return [child.stop(timeout) for child in children]


def check_alive(children: Sequence[Child]) -> None:
    """A BenchError with the log tail of the first child that has exited."""
    for child in children:
        if not child.alive():
            raise BenchError(
                f"{child.name} exited with code {child.popen.returncode}:\n{child.tail()}"
            )


def tails(children: Sequence[Child], lines: int = 5) -> str:
    if len(children) == 1:
        return children[0].tail(lines)
    return "\n".join(f"--- {child.name}:\n{child.tail(lines)}" for child in children)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_ports(first: int, instances: int) -> list[int]:
    """`first`, `first` + 1, ... or, when `first` is 0, distinct free ports."""
    if first:
        return [first + i for i in range(instances)]
    ports: list[int] = []
    while len(ports) < instances:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# Sums over all label sets of a few of the service's Prometheus series.
SCRAPED = {
    "records": "faststream_received_messages_total",
    "batches": "faststream_received_processed_messages_duration_seconds_count",
    "handler_s": "faststream_received_processed_messages_duration_seconds_sum",
    "retries": "ptsp_gate_transient_failures_total",
    "published": "ptsp_gate_outbox_published_total",
}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    totals = dict.fromkeys(SCRAPED, 0.0)
    by_name = {name: key for key, name in SCRAPED.items()}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in by_name:
            totals[by_name[name]] += float(line.rsplit(" ", 1)[1])
    return totals


def scrape_all(ports: Sequence[int]) -> list[dict[str, float]]:
    """One scrape per instance."""
    return [scrape(port) for port in ports]


def summed(scrapes: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: sum(one.get(key, 0.0) for one in scrapes) for key in SCRAPED}


def consumer_batches(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the service's consumer did between two scrapes: batches, mean size, mean handling."""
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    return {
        "records": d["records"],
        "batches": d["batches"],
        "mean_records": d["records"] / d["batches"] if d["batches"] else 0.0,
        "mean_handler_ms": 1000 * d["handler_s"] / d["batches"] if d["batches"] else 0.0,
        "retries": d["retries"],
        "published": d["published"],
    }


# FastStream logs every assignment its consumer gets (not the revocations):
#   Consumer <member id> assigned to partitions: (TopicPartition(topic='t', partition=3), ...)
ASSIGNED_LINE = "assigned to partitions:"


def assignments(log_path: Path, topic: str) -> list[frozenset[int]]:
    """The partitions of `topic` in each assignment a service instance logged, oldest first."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    pattern = re.compile(r"topic='" + re.escape(topic) + r"', partition=(\d+)\)")
    return [
        frozenset(int(n) for n in pattern.findall(line))
        for line in text.splitlines()
        if ASSIGNED_LINE in line
    ]


def latest_assignment(log_path: Path, topic: str) -> frozenset[int] | None:
    """The partitions an instance holds now, as far as its log says (None: none logged yet)."""
    logged = assignments(log_path, topic)
    return logged[-1] if logged else None


def read_bootstrap_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


class PostgresCpu:
    """CPU of the PostgreSQL processes that serve the bench's database (its backends, and the
    server's background processes), by pid from pg_stat_activity; only when those pids are this
    machine's postgres processes (not when the server runs elsewhere)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def snapshot(self) -> dict[int, float]:
        # This database's backends and the server's background processes (no database).
        rows = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL"
        )
        pids = [r["pid"] for r in rows]
        out: dict[int, float] = {}
        for pid in pids:
            if not process_name(pid).startswith("postgres"):
                continue
            cpu = cpu_seconds(pid)
            if cpu is not None:
                out[pid] = cpu
        return out

    @staticmethod
    def delta(before: dict[int, float], after: dict[int, float]) -> float | None:
        if not after:
            return None  # another machine or container: pids are not ours to read
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --------------------------------------------------------------------------------------------
# Workload: employers with a fixed mix of enrolment states, applications spread over them


def _employer_kind(n: int) -> int:
    return n % 20


def enrolment_for(n: int, now: datetime) -> dict[str, Any] | None:
    """The employer's enrolment record (None: no record). 60 % of employers are in order, 30 %
    have a blocking problem, 10 % are pending (stale record or none)."""
    kind = _employer_kind(n)
    if kind < 12:
        return demo.enrolment(n, now=now)
    variants: dict[int, dict[str, Any]] = {
        12: {"status": "INACTIVE"},
        13: {"arrears": 3},
        14: {"sanction": True},
        15: {"pds": ("WAGES",)},
        16: {"status": "NOT_REGISTERED", "programs": (), "enrolled": 0},
        17: {"programs": ("JKK", "JKM", "JHT"), "enrolled": 12},
        18: {"age_days": 200},
    }
    if kind in variants:
        return demo.enrolment(n, now=now, **variants[kind])
    return None


def application_for(n: int, seq: int, phase: str, now: datetime) -> dict[str, Any]:
    kind = _employer_kind(n)
    scale, workers = ("KECIL", 20) if kind == 17 else ("MIKRO", 3)
    action = "RENEWAL" if seq % 10 == 9 else "NEW"
    data = demo.application(n, scale=scale, workers=workers, action=action, now=now)
    data["application_id"] = application_id(phase, seq)
    return data


def application_id(phase: str, seq: int) -> str:
    return f"BENCH-{phase}{seq:08d}"


def phase_of(app_id: str) -> str:
    return app_id[6:7]


def ce_time_ms(headers: list[tuple[str, bytes]]) -> int:
    for k, v in headers:
        if k == "ce_time":
            return int(datetime.fromisoformat(v.decode()).timestamp() * 1000)
    raise ValueError("event without ce_time")


Event = tuple[bytes, list[tuple[str, bytes]], bytes, str, int]  # key, headers, value, id, ce_ms


def make_event(rng: random.Random, employers: int, seq: int, phase: str) -> Event:
    """One application event exactly as demo.application_record builds it; ce_time = now."""
    n = rng.randint(1, employers)
    data = application_for(n, seq, phase, datetime.now(UTC))
    key, headers, value = demo.application_record(data)
    return key, headers, value, data["application_id"], ce_time_ms(headers)


async def load_enrolments(conn: asyncpg.Connection, employers: int) -> int:
    now = datetime.now(UTC)
    states = []
    for n in range(1, employers + 1):
        record = enrolment_for(n, now)
        if record is not None:
            states.append(EnrolmentState.model_validate_json(json.dumps(record)))
    for i in range(0, len(states), 5000):
        chunk = states[i : i + 5000]
        await enrolments.apply_newer(conn, chunk, "bench", [None] * len(chunk))
    return len(states)


# --------------------------------------------------------------------------------------------
# Phase A, child side: the raw aiokafka pipe


async def probe_load_role(args: argparse.Namespace) -> int:
    """N clients, each on its own keep-alive connection, calling GET /ready once per
    --probe-interval (starts spread over the interval), over the given ports, until SIGTERM;
    writes how many answers of each status to --result-file. A process of its own, so the load
    costs the bench's producer nothing."""
    ports = [int(p) for p in args.probe_ports.split(",")]
    statuses: Counter[str] = Counter()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def client(port: int, offset: float) -> None:
        request = f"GET /ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        await asyncio.sleep(offset)
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                while not stop.is_set():
                    writer.write(request)
                    status = (await reader.readline()).split(b" ")[1].decode()
                    length = 0
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    await reader.readexactly(length)
                    statuses[status] += 1
                    if args.probe_interval:
                        await asyncio.sleep(args.probe_interval)
                writer.close()
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
                statuses["error"] += 1
                await asyncio.sleep(0.1)

    spread = args.probe_interval / max(args.probe_callers, 1)
    tasks = [
        asyncio.create_task(client(ports[i % len(ports)], i * spread))
        for i in range(args.probe_callers)
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(Path(args.result_file).write_text, json.dumps(dict(statuses)))
    return 0


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
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
    )
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


# --------------------------------------------------------------------------------------------
# The bench's view of the decisions topic


@dataclass
class PhaseStats:
    received: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    samples: list[tuple[int, int]] = field(default_factory=list)  # (ce_time, latency), ms

    @property
    def latencies_ms(self) -> list[int]:
        return [latency for _, latency in self.samples]

    def drift(self) -> tuple[float, float] | None:
        """Median latency of the first and of the last third of the events, in send order: a
        service that keeps up has both about equal, one falling behind a growing second."""
        if len(self.samples) < 30:
            return None
        ordered = [latency for _, latency in sorted(self.samples)]
        third = len(ordered) // 3
        return _median(ordered[:third]), _median(ordered[-third:])


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[len(ordered) // 2])


class DeliveryFloor:
    """A plain aiokafka consumer (default fetch settings, like the service's) on the input topic
    during a phase C run: receive time − ce_time is the latency the broker alone adds. The mock
    broker answers a Fetch that finds no data only after fetch_max_wait_ms (500 ms by default)
    even when data arrives meanwhile, so on it this floor is about 250 ms median, 500 ms at worst;
    Apache Kafka answers as soon as data arrives."""

    def __init__(self, bootstrap: list[str], topic: str, partitions: int) -> None:
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.latencies_ms: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_end(*self._tps)
        for tp in self._tps:  # resolve the positions now, before phase C's first event
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(), name="delivery-floor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now_ms = int(time.time() * 1000)
            for records in batch.values():
                for r in records:
                    self.latencies_ms.append(now_ms - ce_time_ms(list(r.headers)))


class DecisionCollector:
    """Reads the decisions topic from its beginning in a background task; matches each decision
    to the event it answers by ce_subject (= application_id)."""

    def __init__(self, bootstrap: list[str], topic: str, partitions: int) -> None:
        self._topic = topic
        self._partitions = partitions
        # "none": if the mock broker's retention ever dropped decisions before we read them, fail
        # loudly instead of silently skipping to the oldest record still there. (Apache Kafka
        # drops nothing this young; there the setting is merely never used.)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
        )
        self.sent_ms: dict[str, int] = {}  # application_id -> ce_time (ms)
        self.seen: set[str] = set()
        self.phases: dict[str, PhaseStats] = {}
        self.duplicates = 0
        self.unmatched = 0
        self._task: asyncio.Task[None] | None = None

    def expect(self, app_id: str, ce_ms: int) -> None:
        self.sent_ms[app_id] = ce_ms

    def phase(self, name: str) -> PhaseStats:
        return self.phases.setdefault(name, PhaseStats())

    async def start(self) -> None:
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run(), name="decision-collector")

    def check(self) -> None:
        """Raise what stopped the collector, if it stopped."""
        if self._task is not None and self._task.done():
            exc = self._task.exception()
            if isinstance(exc, OffsetOutOfRangeError):
                raise BenchError(
                    "the bench's consumer fell behind the broker's retention on the decisions "
                    "topic (the mock broker keeps about 5 MiB per partition); use more "
                    "--partitions"
                ) from exc
            raise BenchError(f"decision collector stopped: {exc!r}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                for r in records:
                    self._one(r.headers, r.timestamp)

    def _one(self, headers: Any, timestamp_ms: int) -> None:
        app_id = next((v.decode() for k, v in headers if k == "ce_subject"), None)
        if app_id is None or app_id not in self.sent_ms:
            self.unmatched += 1
            return
        if app_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(app_id)
        stats = self.phase(phase_of(app_id))
        stats.received += 1
        if stats.first_ms is None or timestamp_ms < stats.first_ms:
            stats.first_ms = timestamp_ms
        if stats.last_ms is None or timestamp_ms > stats.last_ms:
            stats.last_ms = timestamp_ms
        sent = self.sent_ms[app_id]
        stats.samples.append((sent, timestamp_ms - sent))


async def wait_for_decisions(
    collector: DecisionCollector,
    phase: str,
    expected: int,
    services: Sequence[Child],
    *,
    timeout: float,
    on_first: Callable[[], Any] | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Until `expected` decisions of the phase are in; fails on a stall, a timeout or any service
    instance exiting. `on_first` runs (awaited) as soon as the first decision is seen; `check`
    (raising what went wrong) on every round."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stats = collector.phase(phase)
    last_count, last_change = -1, loop.time()
    first_done = on_first is None
    while stats.received < expected:
        collector.check()
        check_alive(services)
        if check is not None:
            check()
        now = loop.time()
        if stats.received != last_count:
            last_count, last_change = stats.received, now
        if now - last_change > STALL_TIMEOUT_S:
            raise BenchError(
                f"phase {phase}: no new decision for {STALL_TIMEOUT_S:.0f} s "
                f"({stats.received} of {expected}); service log:\n{tails(services)}"
            )
        if now > deadline:
            raise BenchError(
                f"phase {phase}: {stats.received} of {expected} decisions after {timeout:.0f} s"
            )
        if not first_done and stats.received > 0:
            first_done = True
            assert on_first is not None
            await on_first()
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Infrastructure


def with_database(dsn: str, name: str) -> str:
    """The same server and credentials, another database (URL or unix-socket form)."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def start_embedded_postgres(data_dir: Path) -> tuple[Any, str]:
    from ptsp_gate.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres()
    return pg, pg.start(data_dir)


def start_broker(env: dict[str, str], args: argparse.Namespace, workdir: Path, logs: Path) -> Child:
    """`ptsp-gate broker`; with engine kafka its nodes are JVMs started as its children, which it
    stops on SIGTERM."""
    partitions = args.partitions
    return Child(
        "broker",
        [
            sys.executable,
            "-m",
            "ptsp_gate.cli.main",
            "broker",
            "--engine",
            args.engine,
            "--brokers",
            str(args.brokers),
            "--partitions",
            str(partitions),
            "--bootstrap-file",
            str(workdir / "bootstrap"),
        ],
        env,
        logs / "broker.log",
    )


def start_service(
    env: dict[str, str], port: int, profile: str | None, logs: Path, name: str = "permit-checker"
) -> Child:
    python = [sys.executable]
    if profile:
        python += ["-m", "cProfile", "-o", str(Path(profile).resolve())]
    argv = [
        *python,
        "-m",
        "ptsp_gate.cli.main",
        "run",
        "permit-checker",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    return Child(name, argv, env, logs / f"{name}.log")


def start_role(name: str, role: str, options: list[str], env: dict[str, str], logs: Path) -> Child:
    """This script again, in another role, as a child process logging to logs/NAME.log."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", role, *options]
    return Child(name, argv, env, logs / f"{name}.log")


def start_raw_pipe(
    args: argparse.Namespace, bootstrap: list[str], topics: Topics, logs: Path
) -> Child:
    options = [
        "--bootstrap",
        ",".join(bootstrap),
        "--in-topic",
        topics.applications,
        "--out-topic",
        topics.raw_out,
        "--group",
        topics.raw_group,
        "--events",
        str(args.events),
        "--result-file",
        str(logs / "raw-pipe.json"),
    ]
    if args.batch:
        options += ["--batch", str(args.batch)]
    return start_role("raw-pipe", "raw-pipe", options, dict(os.environ), logs)


def start_probe_load(
    ports: Sequence[int], callers: int, interval: float, logs: Path, index: int
) -> Child:
    options = [
        "--probe-ports",
        ",".join(map(str, ports)),
        "--probe-callers",
        str(callers),
        "--probe-interval",
        str(interval),
        "--result-file",
        str(logs / f"probe-load-{index}.json"),
    ]
    return start_role(f"probe-load-{index}", "probe-load", options, dict(os.environ), logs)


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def applications(self) -> str:
        return f"{self.prefix}.applications"

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def raw_out(self) -> str:
        return f"{self.prefix}.raw-pipe-out"

    @property
    def raw_group(self) -> str:
        return f"{self.prefix}.raw-pipe"

    @property
    def service_group(self) -> str:
        return f"{self.prefix}.permit-checker"

    def env(self) -> dict[str, str]:
        """Settings for every process. `ptsp-gate broker` pre-creates the applications, enrolment
        and decisions topics and both DLQs; the permit-checker never touches the enrolment topic,
        so that name is given to the raw pipe's output topic, which then exists with the same
        partition count as the others. On Apache Kafka that topic is compacted, as the enrolment
        topic must be; every record has a key, and no segment fills up in a run, so the cleaner
        never runs on it."""
        return {
            "PTSP_GATE_TOPIC_APPLICATIONS": self.applications,
            "PTSP_GATE_TOPIC_DECISIONS": self.decisions,
            "PTSP_GATE_TOPIC_ENROLMENT": self.raw_out,
            "PTSP_GATE_GROUP_PERMIT_CHECKER": self.service_group,
            "PTSP_GATE_GROUP_ENROLMENT_SYNC": f"{self.prefix}.enrolment-sync",
        }


@contextlib.asynccontextmanager
async def within(seconds: float, what: str) -> AsyncIterator[None]:
    """A bounded step: a BenchError naming it when it takes longer than `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise BenchError(f"{what} took longer than {seconds:.0f} s") from None


async def wait_until(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    child: Child | Sequence[Child] = (),
    state: Callable[[], str] | None = None,
) -> Any:
    """Until `check` (run in a thread) returns something true; fails when a watched child exits
    or after `timeout` (saying what `state` returns, if given)."""
    children = [child] if isinstance(child, Child) else list(child)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        for c in children:
            if not c.alive():
                raise BenchError(f"{c.name} exited ({c.popen.returncode}):\n{c.tail()}")
        if loop.time() > deadline:
            raise BenchError(
                f"{what} not within {timeout:.0f} s" + (f": {state()}" if state else "")
            )
        await asyncio.sleep(0.1)


async def commit_end_offsets(bootstrap: list[str], topic: str, group: str, partitions: int) -> None:
    """Commit the topic's current end offsets for `group` (which has no member yet): its consumers
    then start after every record already in the topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.commit(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def preload(
    bootstrap: list[str],
    topic: str,
    events: list[Event],
    partitions: int,
    compression: str | None,
) -> tuple[float, float, int]:
    """Produce the events (see PRELOAD_COMPRESSION) and check the broker kept them all (records
    already in the topic may go: nobody reads them again; only the mock broker drops any).
    Returns when production started (time.monotonic()), how long it took and how many partitions
    got events."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        before = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        compression_type=compression,
    )
    await producer.start()
    started = time.monotonic()
    try:
        for i in range(0, len(events), 5000):
            futures = [
                await producer.send(topic, value, key=key, headers=headers)
                for key, headers, value, _, _ in events[i : i + 5000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    kept = sum(max(0, end[tp] - max(begin[tp], before[tp])) for tp in tps)
    if kept != len(events) or sum(end[tp] - before[tp] for tp in tps) != len(events):
        raise BenchError(
            f"the broker kept {kept} of {len(events)} records (the mock broker's retention is "
            "about 5 MiB per partition): use more --partitions or fewer --events"
        )
    return started, elapsed, sum(1 for tp in tps if end[tp] > before[tp])


# --------------------------------------------------------------------------------------------
# Report


def percentiles(values: list[int]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return float(ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))])

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": float(ordered[-1])}


def _fmt_ms(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 10_000 else f"{ms:.0f} ms"


def _fmt_lat(p: dict[str, float] | None, keys: tuple[str, ...]) -> str:
    if p is None:
        return "(none)"
    return "  ".join(f"{k} {_fmt_ms(p[k])}" for k in keys)


def _cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _batches(c: dict[str, float] | None) -> str:
    if not c:
        return ""
    return (
        f"; consumer: {c['batches']:,.0f} batches of {c['mean_records']:,.0f} records, "
        f"{c['mean_handler_ms']:.1f} ms each"
        + (f", {c['retries']:.0f} retries" if c["retries"] else "")
    )


def _per_instance(values: list[float], fmt: str) -> str:
    return " + ".join(format(v, fmt) for v in values)


def _group_lines(r: dict[str, Any]) -> list[str]:
    """With several instances: how the group split the partitions and the work."""
    grp, b = r.get("group"), r["phase_b"]
    if not grp:
        return []
    per = b.get("consumer_instances") or []
    rebalanced = [p for p in ("b", "c") if grp.get(f"rebalanced_in_{p}")]
    lines = [
        f"group       {grp['instances']} instances, partitions "
        + " / ".join(",".join(map(str, ps)) for ps in grp["partitions"])
        + "; records in B "
        + " / ".join(f"{one['records']:,.0f}" for one in per)
        + "; decisions published (outbox relay) "
        + " / ".join(f"{one['published']:,.0f}" for one in per)
        + "; "
        + (
            "REBALANCED during phase " + " and ".join(p.upper() for p in rebalanced)
            if rebalanced
            else "no rebalance during the phases"
        )
        + (
            f"; formed at attempt {grp['failed_attempts_to_form'] + 1} (see README)"
            if grp.get("failed_attempts_to_form")
            else ""
        )
    ]
    produced = b.get("produced")
    if produced:
        lines.append(
            f"produced B  {r['setup']['events']:,} events in {produced['seconds']:.1f} s once all "
            f"instances held their partitions; first decision after "
            f"{produced['first_decision_after_s']:.1f} s, production overlaps the window's first "
            f"{produced['overlap_with_window_s']:.1f} s"
        )
    return lines


def _label(text: str) -> str:
    """The report's first column, 12 characters wide."""
    return f"{text:<11} "


def _probes(c: dict[str, Any]) -> str:
    if not c.get("probe_callers"):
        return ""
    answers = c.get("probe_answers") or {}
    total = sum(answers.values())
    return (
        f"; {c['probe_callers']} clients calling /ready: {total / c['seconds']:,.0f} answers/s"
        + (f", {answers.get('error', 0):,} errors" if answers.get("error") else "")
    )


def _latency_lines(c: dict[str, Any]) -> list[str]:
    """The lines of one phase C run; labelled C, or C1, C2, ... with several rates."""
    name = c["name"]
    rate = f"{c['rate']:,.0f}/s" + (" (half of B)" if c["rate_spec"] == "half" else "")
    lines = [
        _label(f"latency {name}")
        + _fmt_lat(c["latency_ms"], ("p50", "p95", "p99", "max"))
        + f"   ({c['sent']:,} events at {rate} for {c['seconds']:g} s"
        + _batches(c.get("consumer"))
        + _probes(c)
        + ")",
        _label(f"floor {name}")
        + _fmt_lat(c["broker_floor_ms"], ("p50", "p95", "p99", "max"))
        + "   (plain consumer on the same broker: what the broker's fetch adds)",
    ]
    if c["median_first_third_ms"] is not None:
        lines.append(
            _label(f"keeps up {name}")
            + f"{'yes' if c['kept_up'] else 'NO'} (median latency, first third "
            f"{_fmt_ms(c['median_first_third_ms'])}, last third "
            f"{_fmt_ms(c['median_last_third_ms'])})"
        )
    return lines


def render(r: dict[str, Any]) -> str:
    m, s, b, c = r["machine"], r["setup"], r["phase_b"], r.get("phase_c") or []
    raw = r.get("phase_a")
    g = r["goals"]
    instances = s.get("instances", 1)
    several = instances > 1
    profiled = (
        f"  [instance 0 of {instances} under cProfile: not a throughput figure]"
        if several
        else "  [service under cProfile: not a throughput figure]"
    )
    cores = f"{b['service_cores']:.2f} cores"
    if several:
        cores += ": " + _per_instance(b["instances_cores"], ".2f")
    lines = [
        f"ptsp-gate permit-checker benchmark  {r['started_at']}"
        + (profiled if s["profiled"] else ""),
        f"machine     {m['nproc']} CPUs, Python {m['python']}, {m['platform']}",
        f"broker      {engine_name(s.get('engine', 'mock'), s.get('brokers', 1))}"
        + (
            f" (replication {s['replication']}, min.insync.replicas {s['min_insync']})"
            if s.get("engine") == "kafka"
            else ""
        ),
        f"setup       N={s['events']:,} events, {s['partitions']} partitions, {instances} "
        f"{'instances' if several else 'instance'}, batch {s['batch']}, "
        f"{s['employers']:,} employers, PostgreSQL {s['postgres']}",
        "raw pipe    "
        + (
            f"{raw['rate']:>9,.0f} rec/s   ({raw['seconds']:.2f} s, cpu {raw['cpu_s']:.1f} s)"
            if raw
            else "(skipped)"
        ),
        f"ptsp-gate   {b['rate']:>9,.0f} dec/s   ({b['seconds']:.2f} s first→last decision"
        + _batches(b.get("consumer"))
        + ")",
        f"cpu B       service {_cpu(b['service_cpu_s'])} ({cores}), "
        f"postgres {_cpu(b['postgres_cpu_s'])}, broker {_cpu(b['broker_cpu_s'])}"
        + (f" ({b['broker_processes']} processes)" if b.get("broker_processes", 1) > 1 else "")
        + f", bench {_cpu(b['bench_cpu_s'])}, over {b['cpu_window_s']:.1f} s",
        *_group_lines(r),
        "ratio       " + (f"{r['ratio']:.2f} (ptsp-gate / raw pipe)" if r.get("ratio") else "n/a"),
        f"goals       ≥{GOAL_RATE:,} decisions/s: {g['rate']}   ratio ≥ {GOAL_RATIO}: {g['ratio']}"
        f"   p99 ≤ {GOAL_P99_MS:.0f} ms at {GOAL_LATENCY_RATE:.0f} events/s: {g['latency']}",
        "outcomes    " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["outcomes"].items())),
        "latency B   "
        + _fmt_lat(b["latency_ms"], ("p50", "p99", "max"))
        + (
            "   (N produced at once after the instances joined: mostly waiting behind the backlog)"
            if several
            else "   (N queued before the start: mostly waiting behind the backlog)"
        ),
    ]
    for run in c:
        lines += _latency_lines(run)
    if r.get("duplicates"):
        lines.append(f"duplicates  {r['duplicates']:,} decisions seen twice on the topic")
    stop = r["service_exit"]
    exit_code = stop["code"]
    verdict = "PASS" if exit_code == 0 else "FAIL"
    if several:
        codes = ", ".join(str(one["code"]) for one in stop["instances"])
        shutdown = (
            f"shutdown    {instances} instances exit {codes} after SIGTERM "
            f"(slowest {stop['seconds']:.1f} s): {verdict}"
        )
    else:
        shutdown = (
            f"shutdown    service exit {exit_code} after SIGTERM "
            f"({stop['seconds']:.1f} s): {verdict}"
        )
    lines += [
        shutdown,
        f"results     {r['results_file']}  (logs: {r['logs']})",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The run


class Run:
    """One benchmark run: what it started, what it measured."""

    def __init__(self, args: argparse.Namespace, workdir: Path, logs: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.logs = logs
        self.topics = Topics(f"bench-{uuid.uuid4().hex[:6]}")
        self.env = {**os.environ, **self.topics.env()}
        self.children: list[Child] = []
        self.services: list[Child] = []  # the permit-checker instances, also in `children`
        self.result: dict[str, Any] = {}
        self.bootstrap: list[str] = []

    def stop_children(self) -> None:
        # The service instances first and together, then the rest (the broker last).
        stop_together([s for s in self.services if s.alive()])
        for child in reversed(self.children):
            if child.alive():
                child.stop()

    def start(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def start_service(self, env: dict[str, str], port: int, index: int) -> Child:
        """Instance `index`; only instance 0 runs under cProfile (with --profile)."""
        args = self.args
        name = "permit-checker" if args.instances == 1 else f"permit-checker-{index}"
        profile = args.profile if index == 0 else None
        service = self.start(start_service(env, port, profile, self.logs, name))
        self.services.append(service)
        return service

    async def start_broker(self) -> Child:
        args = self.args
        broker = self.start(start_broker(self.env, args, self.workdir, self.logs))
        text = await wait_until(
            lambda: read_bootstrap_file(self.workdir / "bootstrap"),
            BROKER_START_TIMEOUT_S[args.engine],
            "the broker's bootstrap address",
            broker,
        )
        self.bootstrap = str(text).split(",")
        # The nodes are up now: note their pids, so that none can outlive the run unseen.
        processes = len(broker.tree_cpu())
        say(
            f"broker ({engine_name(args.engine, args.brokers)}, {processes} process"
            f"{'' if processes == 1 else 'es'}) at {text} (pid {broker.pid}), "
            f"topics {self.topics.prefix}.*"
        )
        return broker

    def build_events(self) -> list[Event]:
        """The N phase-B events; the same seed gives the same ones (but ce_time = now)."""
        rng = random.Random(self.args.seed)
        return [make_event(rng, self.args.employers, i, "B") for i in range(self.args.events)]

    async def produce(self, events: list[Event]) -> tuple[float, float, int]:
        async with within(SETUP_TIMEOUT_S + len(events) / 1000, "producing the events"):
            return await preload(
                self.bootstrap,
                self.topics.applications,
                events,
                self.args.partitions,
                PRELOAD_COMPRESSION[self.args.engine],
            )

    async def phases(self, conn: asyncpg.Connection, dsn: str) -> None:
        args = self.args
        instances = args.instances
        broker = await self.start_broker()

        # One instance: the N events are produced once, before anything else, and phases A and
        # B both read them from the topic. Several: phase B must not find them waiting, or the
        # first instance to join the group would take every partition and the rebalance as the
        # others join would fall inside the measured window. Then the instances start with the
        # group's offsets committed at the end of the topic (after phase A's copy), and the
        # events are built again (same seed, fresh ce_time) and produced once every instance
        # is ready and holds its share of the partitions.
        events: list[Event] = []
        after_b_counts: list[int] = []
        if instances == 1 or not args.skip_raw:
            events = self.build_events()
            _, seconds, used = await self.produce(events)
            say(f"{args.events:,} events produced in {seconds:.1f} s to {used} partitions")

        if not args.skip_raw:
            self.result["phase_a"] = await self.phase_a()

        collector = DecisionCollector(self.bootstrap, self.topics.decisions, args.partitions)
        if instances == 1:
            for _key, _headers, _value, app_id, ce_ms in events:
                collector.expect(app_id, ce_ms)
        async with within(SETUP_TIMEOUT_S, "starting the decisions consumer"):
            await collector.start()
        try:
            ports = service_ports(args.port, instances)
            service_env = {
                **self.env,
                "KAFKA_BOOTSTRAP_SERVERS": ",".join(self.bootstrap),
                "DATABASE_URL": dsn,
                # The service's default log level, whatever the caller's environment says.
                "PTSP_GATE_LOG_LEVEL": "INFO",
            }
            if args.batch:
                service_env["PTSP_GATE_BATCH_MAX_RECORDS"] = str(args.batch)
            self.result["service_settings"] = {
                k: v for k, v in sorted(service_env.items()) if k.startswith("PTSP_GATE_")
            }
            if instances == 1:
                say(
                    f"phase B: the permit-checker on {args.events:,} waiting events "
                    f"(port {ports[0]})"
                )
                services = [self.start_service(service_env, ports[0], 0)]
                phase_b = await self.phase_b(collector, services, broker, conn)
            else:
                say(
                    f"phase B: {instances} permit-checker instances (ports "
                    f"{', '.join(map(str, ports))}), group {self.topics.service_group}"
                )
                if args.profile:
                    say("--profile: instance 0 runs under cProfile, the others do not")
                services, held, retries, group = await self.form_group(service_env, ports)
                self.result["service_settings"]["PTSP_GATE_GROUP_PERMIT_CHECKER"] = group
                joined = self.assignment_counts(services)
                say(
                    f"phase B: all {instances} instances ready, partitions "
                    + " / ".join(",".join(map(str, sorted(h))) for h in held)
                    + f"; producing {args.events:,} events"
                )
                events = self.build_events()
                for _key, _headers, _value, app_id, ce_ms in events:
                    collector.expect(app_id, ce_ms)
                phase_b = await self.phase_b(
                    collector, services, broker, conn, produce=lambda: self.produce(events)
                )
                after_b_counts = self.assignment_counts(services)
                self.result["group"] = {
                    "instances": instances,
                    "partitions": [sorted(h) for h in held],
                    "name": group,
                    "failed_attempts_to_form": retries,
                    "rebalanced_in_b": after_b_counts != joined,
                }
            await wait_until(
                lambda: all(http_ok(f"http://127.0.0.1:{port}/ready") for port in ports),
                SERVICE_READY_TIMEOUT_S,
                "the service's /ready",
                services,
            )
            after_b = await asyncio.to_thread(scrape_all, ports)
            phase_b["consumer"] = consumer_batches({}, summed(after_b))
            phase_b["consumer_instances"] = [consumer_batches({}, one) for one in after_b]
            self.result["phase_b"] = phase_b
            say(f"phase B: {phase_b['rate']:,.0f} decisions/s")

            if not args.skip_latency:
                # One run per rate, one after the other; each waits for all its decisions, so
                # the next one starts with the service caught up again.
                runs: list[dict[str, Any]] = []
                self.result["phase_c"] = runs
                before_c = after_b
                plan = [
                    (spec, callers)
                    for spec in args.latency_rates
                    for callers in ((0, args.probe_callers) if args.probe_callers else (0,))
                ]
                for index, (spec, callers) in enumerate(plan):
                    rate = resolve_rate(spec, phase_b["rate"])
                    name = latency_run_name(index, len(plan))
                    say(
                        f"phase {name}: {rate:,.0f} events/s"
                        + (" (half the phase B rate)" if spec == "half" else "")
                        + f" for {args.latency_seconds:g} s"
                        + (f", {callers} clients calling /ready" if callers else "")
                    )
                    floor = DeliveryFloor(self.bootstrap, self.topics.applications, args.partitions)
                    async with within(SETUP_TIMEOUT_S, "starting the delivery-floor consumer"):
                        await floor.start()
                    probes = (
                        self.start(
                            start_probe_load(ports, callers, args.probe_interval, self.logs, index)
                        )
                        if callers
                        else None
                    )
                    try:
                        phase_c = await self.phase_c(
                            collector, services, broker, conn, rate=rate, index=index
                        )
                    finally:
                        await floor.stop()
                        if probes is not None:
                            probes.stop()
                    phase_c["probe_callers"] = callers
                    if probes is not None:
                        answers = self.logs / f"probe-load-{index}.json"
                        phase_c["probe_answers"] = (
                            json.loads(answers.read_text()) if answers.exists() else None
                        )
                    phase_c["name"] = name
                    phase_c["rate_spec"] = rate_label(spec)
                    phase_c["broker_floor_ms"] = percentiles(floor.latencies_ms)
                    after_c = await asyncio.to_thread(scrape_all, ports)
                    phase_c["consumer"] = consumer_batches(summed(before_c), summed(after_c))
                    phase_c["consumer_instances"] = [
                        consumer_batches(before, after)
                        for before, after in zip(before_c, after_c, strict=True)
                    ]
                    before_c = after_c
                    runs.append(phase_c)
                    lat = phase_c["latency_ms"] or {}
                    say(
                        f"phase {name}: p50 {lat.get('p50', 0):.0f} ms, "
                        f"p99 {lat.get('p99', 0):.0f} ms at {rate:,.0f} events/s"
                    )
                if "group" in self.result:
                    self.result["group"]["rebalanced_in_c"] = (
                        self.assignment_counts(services) != after_b_counts
                    )

            # Every instance must drain and exit 0 on SIGTERM (all signalled at once).
            stopped = stop_together(services)
            self.result["service_exit"] = {
                "code": next((code for code, _ in stopped if code != 0), 0),
                "seconds": max(took for _, took in stopped),
                "instances": [{"code": code, "seconds": took} for code, took in stopped],
            }
            self.result["duplicates"] = collector.duplicates
            self.result["unmatched_decisions"] = collector.unmatched
        finally:
            await collector.stop()
        if args.profile:
            say(
                f"cProfile stats of the service{'' if instances == 1 else ' (instance 0)'}: "
                f"{args.profile}"
            )

    def assignment_counts(self, services: Sequence[Child]) -> list[int]:
        """How many assignments each instance has logged so far (a new one: a rebalance)."""
        return [len(assignments(s.log_path, self.topics.applications)) for s in services]

    async def form_group(
        self, env: dict[str, str], ports: Sequence[int]
    ) -> tuple[list[Child], list[frozenset[int]], int, str]:
        """Start the instances together and wait until every one answers /ready with 200 and the
        partitions their latest logged assignments hold are all of the topic's, each exactly once
        (no member still waiting for the rebalance its arrival started, none holding partitions
        it is about to lose). Returns the instances, their partitions, the failed attempts and
        the group's name.

        The mock broker's group coordinator fails a member's SyncGroup when the leader's arrives
        first (see README): that member's consumer never starts, although its process stays up
        and ready. When the group has not formed GROUP_FORM_S after the start, all instances are
        stopped and started again, in a new group (so that no member of the failed round is left
        in it), at most GROUP_ATTEMPTS times in all. On Apache Kafka the group forms at the first
        attempt; a retry there is worth a look at the instances' logs."""
        args = self.args
        topic = self.topics.applications
        every = frozenset(range(args.partitions))
        services: list[Child] = []

        def look() -> tuple[list[bool], list[frozenset[int] | None]]:
            ready = [http_ok(f"http://127.0.0.1:{port}/ready") for port in ports]
            return ready, [latest_assignment(s.log_path, topic) for s in services]

        def state(ready: list[bool], held: list[frozenset[int] | None]) -> str:
            return "; ".join(
                f"{s.name} {'ready' if r else 'not ready'}, partitions "
                + (
                    "none logged; its log ends:\n"
                    + "\n".join(line[:300] for line in s.tail(3).splitlines())
                    + "\n"
                    if h is None
                    else ",".join(map(str, sorted(h))) or "none"
                )
                for s, r, h in zip(services, ready, held, strict=True)
            )

        failed = ""
        for attempt in range(1, GROUP_ATTEMPTS + 1):
            group = self.topics.service_group
            if attempt > 1:
                group += f".{attempt}"
            async with within(SETUP_TIMEOUT_S, "committing the group's offsets"):
                await commit_end_offsets(self.bootstrap, topic, group, args.partitions)
            group_env = {**env, "PTSP_GATE_GROUP_PERMIT_CHECKER": group}
            services = [self.start_service(group_env, port, i) for i, port in enumerate(ports)]
            started = time.monotonic()
            while True:
                check_alive(services)
                ready, held = await asyncio.to_thread(look)
                got = [h for h in held if h]
                if (
                    all(ready)
                    and len(got) == len(held)
                    and sum(map(len, got)) == len(every)
                    and frozenset().union(*got) == every
                ):
                    return services, got, attempt - 1, group
                if time.monotonic() - started > GROUP_FORM_S:
                    break
                await asyncio.sleep(0.1)
            failed = state(ready, held)
            cause = (
                "the mock broker's group coordinator, see README"
                if args.engine == "mock"
                else "unexpected on Apache Kafka: see the instances' logs"
            )
            say(
                f"the {len(services)} instances did not form a group within "
                f"{GROUP_FORM_S:.0f} s (attempt {attempt} of {GROUP_ATTEMPTS}; {cause})"
                + ("; starting them again in a new group" if attempt < GROUP_ATTEMPTS else "")
            )
            await asyncio.to_thread(stop_together, services)
            for old in services:
                self.services.remove(old)
                with contextlib.suppress(OSError):
                    old.log_path.rename(old.log_path.with_name(f"{old.name}.failed-{attempt}.log"))
        raise BenchError(
            f"the instances did not form a group in {GROUP_ATTEMPTS} attempts; the last one: "
            + failed
        )

    async def phase_a(self) -> dict[str, Any]:
        """The raw aiokafka pipe, in its own process, on the same N records."""
        say("phase A: raw aiokafka pipe")
        pipe = self.start(start_raw_pipe(self.args, self.bootstrap, self.topics, self.logs))
        await wait_until(
            lambda: pipe.popen.poll() is not None,
            max(120.0, self.args.events / 200),
            "the raw pipe's end",
        )
        if pipe.popen.returncode != 0:
            raise BenchError(f"raw pipe exited with {pipe.popen.returncode}:\n{pipe.tail()}")
        figures: dict[str, Any] = json.loads((self.logs / "raw-pipe.json").read_text())
        say(f"phase A: {figures['rate']:,.0f} records/s")
        return figures

    async def phase_b(
        self,
        collector: DecisionCollector,
        services: Sequence[Child],
        broker: Child,
        conn: asyncpg.Connection,
        produce: Callable[[], Coroutine[Any, Any, tuple[float, float, int]]] | None = None,
    ) -> dict[str, Any]:
        """Decisions/s on the backlog, from the first decision published to the last. With
        `produce`, the events are produced now (the services are already running)."""
        pg_cpu = PostgresCpu(conn)
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
                self.args.events,
                services,
                timeout=max(180.0, self.args.events / 100),
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
        self,
        collector: DecisionCollector,
        services: Sequence[Child],
        broker: Child,
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
        phase = latency_run_letter(index)
        pg_cpu = PostgresCpu(conn)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=0
        )
        await producer.start()
        cpu_before = await CpuSnapshot.take(services, broker, pg_cpu)
        rng = random.Random(self.args.seed + 1 + index)
        total = max(1, int(rate * self.args.latency_seconds))
        tick = self.args.latency_tick_ms / 1000
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
                        rng, self.args.employers, sent, phase
                    )
                    collector.expect(app_id, ce_ms)
                    futures.append(
                        await producer.send(
                            self.topics.applications, value, key=key, headers=headers
                        )
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
            "seconds": self.args.latency_seconds,
            "tick_ms": self.args.latency_tick_ms,
            "sent": total,
            "achieved_rate": total / produced_in if produced_in > 0 else 0.0,
            "latency_ms": percentiles(stats.latencies_ms),
            "median_first_third_ms": drift[0] if drift else None,
            "median_last_third_ms": drift[1] if drift else None,
            "kept_up": drift is None or drift[1] <= max(2 * drift[0], drift[0] + 250),
            # From the first event sent to the last decision in: production and drain.
            "cpu": cpu_figures(cpu_before, cpu_after),
        }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
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

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ptsp-bench-")))
        run = Run(args, workdir, logs)
        result = run.result
        result["started_at"] = started_at.isoformat(timespec="seconds")
        result["machine"] = {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        }

        # PostgreSQL: a fresh database on DATABASE_URL's server, or on an embedded server.
        server_dsn = os.environ.get("DATABASE_URL") or ""
        pg_kind = "DATABASE_URL"
        if not server_dsn:
            say("starting the embedded PostgreSQL")
            pg, server_dsn = await asyncio.to_thread(start_embedded_postgres, workdir / "pgdata")
            stack.callback(pg.stop)
            pg_kind = "embedded"
        stack.callback(run.stop_children)  # runs before pg.stop
        db_name = f"ptsp_gate_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{db_name}"')
            pg_version = await admin.fetchval("SHOW server_version")
        finally:
            await admin.close()
        dsn = with_database(server_dsn, db_name)
        try:
            conn = await connect(dsn)
            try:
                async with within(
                    SETUP_TIMEOUT_S + args.employers / 1000, "preparing the database"
                ):
                    await migrations.migrate(conn)
                    loaded = await load_enrolments(conn, args.employers)
                say(f"database {db_name}: migrated, {loaded:,} enrolment records loaded")
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
                await run.phases(conn, dsn)
                result["outcomes"] = {
                    r["outcome"]: r["n"]
                    for r in await conn.fetch(
                        "SELECT outcome, count(*) AS n FROM compliance_decision GROUP BY outcome"
                    )
                }
            finally:
                await conn.close()
        finally:
            run.stop_children()
            admin = await asyncpg.connect(server_dsn)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            finally:
                await admin.close()

    raw = result.get("phase_a")
    rate = result["phase_b"]["rate"]
    result["ratio"] = rate / raw["rate"] if raw else None
    result["goals"] = {
        "rate": "PASS" if rate >= GOAL_RATE else "MISS",
        "ratio": "n/a" if raw is None else ("PASS" if result["ratio"] >= GOAL_RATIO else "MISS"),
        "latency": latency_goal(result.get("phase_c") or []),
    }
    path = RESULTS_DIR / f"{stamp}.json"
    result["results_file"] = str(path.relative_to(BENCH_DIR.parent))
    result["logs"] = str(logs.relative_to(BENCH_DIR.parent))
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def latency_goal(runs: Sequence[dict[str, Any]]) -> str:
    """PASS/MISS for the p99 goal, from the runs at exactly GOAL_LATENCY_RATE (every one must
    meet it); n/a without such a run."""
    at_goal = [
        run
        for run in runs
        if run["rate_spec"] != "half" and math.isclose(run["rate"], GOAL_LATENCY_RATE)
    ]
    if not at_goal:
        return f"n/a (no run at {GOAL_LATENCY_RATE:.0f}/s)"
    met = all(
        run["latency_ms"] is not None and run["latency_ms"]["p99"] <= GOAL_P99_MS for run in at_goal
    )
    return "PASS" if met else "MISS"


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far of everything that shares the machine during a phase."""

    service: list[float | None]  # per instance
    broker: dict[ProcessKey, float]  # `ptsp-gate broker` and its JVMs, if any
    postgres: dict[int, float]
    bench: float
    wall: float

    @classmethod
    async def take(
        cls, services: Sequence[Child], broker: Child, pg_cpu: PostgresCpu
    ) -> CpuSnapshot:
        return cls(
            service=[s.cpu() for s in services],
            broker=await asyncio.to_thread(broker.tree_cpu),
            postgres=await pg_cpu.snapshot(),
            bench=_self_cpu(),
            wall=time.monotonic(),
        )


def cpu_figures(first: CpuSnapshot, last: CpuSnapshot) -> dict[str, Any]:
    wall = last.wall - first.wall
    per_instance = [_delta(a, b) for a, b in zip(first.service, last.service, strict=True)]
    service_cpu = None if None in per_instance else sum(c or 0.0 for c in per_instance)
    return {
        "cpu_window_s": wall,
        "service_cpu_s": service_cpu,
        "service_cores": (service_cpu or 0.0) / wall if wall > 0 else 0.0,
        "instances_cpu_s": per_instance,
        "instances_cores": [(c or 0.0) / wall if wall > 0 else 0.0 for c in per_instance],
        "postgres_cpu_s": PostgresCpu.delta(first.postgres, last.postgres),
        "broker_cpu_s": tree_delta(first.broker, last.broker),
        "broker_processes": len(last.broker),
        "bench_cpu_s": last.bench - first.bench,
    }


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# --------------------------------------------------------------------------------------------
# Entry point


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


if __name__ == "__main__":
    raise SystemExit(main())
