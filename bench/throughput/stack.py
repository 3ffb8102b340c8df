"""The processes a run starts, over the harness (`ptsp_gate.embedded.harness`): the broker, the
service instances (formed into one consumer group when there are several) and the bench's own
roles; and stopping them all again."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ptsp_gate.embedded import harness
from ptsp_gate.embedded.harness import Process, ServiceProcess

from .cpu import ProcessTree
from .load import commit_end_offsets
from .options import engine_name
from .scrape import assignments, latest_assignment
from .steps import SETUP_TIMEOUT_S, BenchError, check_alive, say, wait_until, within

# The script every role runs in: this one again, as a child process.
ENTRY = Path(__file__).resolve().parent.parent / "permit_throughput.py"

# Three Apache Kafka JVMs need 12-20 s to format, elect a controller and register on two cores,
# longer when the machine is busy; the mock is up in well under a second.
BROKER_START_TIMEOUT_S = {"mock": 30.0, "kafka": 180.0}
SERVICE_READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 45.0  # SIGTERM to exit, for the service (its graceful timeout is 20 s) and broker
# --instances: when the instances have not formed their group this long after their start (it
# takes about 9 s on the mock broker), they are all started again in a new group, at most
# GROUP_ATTEMPTS times in all. Needed for the mock's flaky SyncGroup; on Apache Kafka the group
# forms at the first attempt and the retries never start. See Stack.form_group.
GROUP_FORM_S = 25.0
GROUP_ATTEMPTS = 8


@dataclass(frozen=True)
class Topics:
    """The names of a run's topics and groups, all under one prefix."""

    prefix: str
    applications: str
    decisions: str
    raw_out: str
    raw_group: str
    service_group: str

    @classmethod
    def under(cls, prefix: str) -> Topics:
        suffixes = ("applications", "decisions", "raw-pipe-out", "raw-pipe", "permit-checker")
        return cls(prefix, *(f"{prefix}.{suffix}" for suffix in suffixes))

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


def stop_together(
    children: Sequence[Process], timeout: float = STOP_TIMEOUT_S
) -> list[tuple[int, float]]:
    """SIGTERM to all at once, then wait for all; (exit code, seconds from SIGTERM to exit) of
    each."""
    codes = harness.stop_all(children, timeout)
    for child in children:
        if child.killed:
            say(f"{child.name} did not stop within {timeout:.0f} s of SIGTERM; it was killed")
    return [(code, child.stop_seconds) for code, child in zip(codes, children, strict=True)]


def service_ports(first: int, instances: int) -> list[int]:
    """`first`, `first` + 1, ... or, when `first` is 0, distinct free ports."""
    if first:
        return [first + i for i in range(instances)]
    return harness.free_ports(instances)


def read_bootstrap_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


class Stack:
    """Every process one run starts, in the order started; each in a session of its own, so that
    Ctrl-C reaches only the bench, which then stops them."""

    def __init__(self, args: argparse.Namespace, workdir: Path, logs: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.logs = logs
        self.topics = Topics.under(f"bench-{uuid.uuid4().hex[:6]}")
        self.env = {**os.environ, **self.topics.env()}
        self.children: list[Process] = []
        self.services: list[ServiceProcess] = []  # the permit-checker instances, also children
        self.bootstrap: list[str] = []
        self.broker: ProcessTree | None = None

    def start(self, child: Process) -> Process:
        self.children.append(child)
        return child

    def start_role(self, name: str, role: str, options: list[str]) -> Process:
        """This script again, in another role, logging to logs/NAME.log."""
        argv = [sys.executable, str(ENTRY), "--role", role, *options]
        return self.start(
            Process(name, argv, os.environ, log=self.logs / f"{name}.log", start_new_session=True)
        )

    def stop(self) -> None:
        """The service instances first and together, then the rest in reverse (the broker
        last)."""
        stop_together([s for s in self.services if s.running()])
        for child in reversed(self.children):
            if child.running():
                stop_together([child])
        if self.broker is not None:
            self.broker.kill_leftovers()

    async def start_broker(self) -> ProcessTree:
        """`ptsp-gate broker`; with engine kafka its nodes are JVMs started as its children,
        which it stops on SIGTERM."""
        args = self.args
        bootstrap_file = self.workdir / "bootstrap"
        argv = [
            *(sys.executable, "-m", "ptsp_gate.cli.main", "broker"),
            *("--engine", args.engine, "--brokers", str(args.brokers)),
            *("--partitions", str(args.partitions), "--bootstrap-file", str(bootstrap_file)),
        ]
        child = self.start(
            Process("broker", argv, self.env, log=self.logs / "broker.log", start_new_session=True)
        )
        self.broker = ProcessTree(child)
        text = await wait_until(
            lambda: read_bootstrap_file(bootstrap_file),
            BROKER_START_TIMEOUT_S[args.engine],
            "the broker's bootstrap address",
            [child],
        )
        self.bootstrap = str(text).split(",")
        # The nodes are up now: note their pids, so that none can outlive the run unseen.
        processes = len(self.broker.cpu())
        say(
            f"broker ({engine_name(args.engine, args.brokers)}, {processes} process"
            f"{'' if processes == 1 else 'es'}) at {text} (pid {child.pid}), "
            f"topics {self.topics.prefix}.*"
        )
        return self.broker

    def start_service(self, env: dict[str, str], port: int, index: int) -> ServiceProcess:
        """Instance `index`; only instance 0 runs under cProfile (with --profile)."""
        args = self.args
        name = "permit-checker" if args.instances == 1 else f"permit-checker-{index}"
        profile = args.profile if index == 0 else None
        service = harness.start_service(
            "permit-checker",
            env,
            port=port,
            log=self.logs / f"{name}.log",
            python=["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else [],
            label=name,
            start_new_session=True,
        )
        self.start(service)
        self.services.append(service)
        return service

    async def wait_ready(self, services: Sequence[ServiceProcess]) -> None:
        try:
            await harness.wait_ready(services, SERVICE_READY_TIMEOUT_S)
        except (harness.ServiceExited, harness.NotReady) as exc:
            raise BenchError(f"the service's /ready: {exc}") from None

    def assignment_counts(self, services: Sequence[Process]) -> list[int]:
        """How many assignments each instance has logged so far (a new one: a rebalance)."""
        return [len(assignments(self.log_of(s), self.topics.applications)) for s in services]

    @staticmethod
    def log_of(process: Process) -> Path:
        assert process.log is not None
        return process.log

    async def form_group(
        self, env: dict[str, str], ports: Sequence[int]
    ) -> tuple[list[ServiceProcess], list[frozenset[int]], int, str]:
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
        services: list[ServiceProcess] = []

        def look() -> tuple[list[bool], list[frozenset[int] | None]]:
            ready = [s.ready() for s in services]
            return ready, [latest_assignment(self.log_of(s), topic) for s in services]

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
                log = self.log_of(old)
                with contextlib.suppress(OSError):
                    log.rename(log.with_name(f"{old.name}.failed-{attempt}.log"))
        raise BenchError(
            f"the instances did not form a group in {GROUP_ATTEMPTS} attempts; the last one: "
            + failed
        )
