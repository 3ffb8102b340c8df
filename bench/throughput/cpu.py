"""CPU accounting from /proc: of the service, the broker with its nodes, PostgreSQL and the bench
itself, between two snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from ptsp_gate.embedded.harness import Process

from .steps import say

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


class ProcessTree:
    """A child and its descendants: their CPU, and every descendant ever seen, so that none
    outlives the child unnoticed (the broker's JVMs are gone from /proc once they have
    stopped)."""

    def __init__(self, child: Process) -> None:
        self.child = child
        self.descendants: set[ProcessKey] = set()

    def cpu(self) -> dict[ProcessKey, float]:
        """CPU seconds of the child and of its live descendants (see process_tree)."""
        tree = process_tree(self.child.pid)
        self.descendants.update(key for key in tree if key[0] != self.child.pid)
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
            say(f"{self.child.name}: pid {pid} ({process_name(pid)}) outlived it; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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
        cls, services: Sequence[Process], broker: ProcessTree, pg_cpu: PostgresCpu
    ) -> CpuSnapshot:
        return cls(
            service=[cpu_seconds(s.pid) for s in services],
            broker=await asyncio.to_thread(broker.cpu),
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
