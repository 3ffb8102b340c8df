"""A running Apache Kafka cluster: N nodes in KRaft mode, each a combined broker and controller in
its own JVM, on loopback ports, with data in a temporary directory of its own."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from ptsp_gate.embedded.apache_kafka.installation import (
    ApacheKafkaError,
    install_dir,
    java_executable,
    missing_prerequisite,
    one_line_tail,
)
from ptsp_gate.embedded.engine import Engine
from ptsp_gate.embedded.ports import restartable_ports
from ptsp_gate.embedded.processes import Process, stop_all

__all__ = ["ApacheKafkaCluster", "KafkaNode"]

_MAIN = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_PR_SET_PDEATHSIG = 1
# SIGTERM to exit: a controlled shutdown moves leadership away first.
_STOP_TIMEOUT_S = 20.0


def _cluster_id() -> str:
    """A random id in Kafka's form (22 characters of URL-safe base64). One that starts with "-"
    would be read as an option by the storage tool's argument parser: drawn again."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


_PRCTL: Any
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (AttributeError, OSError):  # not Linux: nodes then outlive a killed parent
    _PRCTL = None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec, so it only calls what was looked up before the
    # fork: ask the kernel for SIGKILL when the thread that started us ends.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _settle(futures: dict[str, Any], action: str, tolerated: str) -> None:
    """Wait for an admin request's per-topic results; an error naming `tolerated` (the topic
    already exists, or is already gone) is the outcome wanted anyway."""
    for name, future in futures.items():
        try:
            future.result(timeout=60)
        except Exception as exc:
            if tolerated not in str(exc):
                raise ApacheKafkaError(f"{action} topic {name!r}: {exc}") from exc


@dataclass
class KafkaNode:
    """One combined broker and controller."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: Process | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def log_tail(self, lines: int = 15) -> str:
        text = ""
        for name in ("server.log", "stdout.log"):
            with contextlib.suppress(OSError):
                text += (self.directory / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class ApacheKafkaCluster(Engine):
    """A running Apache Kafka cluster of ``brokers`` nodes, ids 1..N.

    Replication factor ``min(3, N)`` for every topic and internal topic, and
    ``min.insync.replicas`` ``min(2, N)``, as in production.

    Usage::

        with ApacheKafkaCluster(brokers=3) as kafka:
            kafka.create_topics(["permits"], partitions=3)
            AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    """

    def __init__(
        self,
        brokers: int = 3,
        *,
        data_dir: Path | None = None,
        heap_mb: int = 512,
        partitions: int = 3,
        start_timeout_s: float = 90.0,
    ) -> None:
        if brokers < 1:
            raise ValueError("brokers must be >= 1")
        why = missing_prerequisite()
        if why:
            raise ApacheKafkaError(why)
        self.brokers = brokers
        self.heap_mb = heap_mb
        self.start_timeout_s = start_timeout_s
        self._libs = install_dir() / "libs"
        self.replication = min(3, brokers)
        self.min_insync = min(2, brokers)
        self.partitions = partitions
        self.cluster_id = _cluster_id()
        try:
            ports = restartable_ports(2 * brokers)
        except OSError as exc:
            raise ApacheKafkaError(str(exc)) from None
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="ptsp-gate-kafka-")) if data_dir is None else data_dir
        )
        self.nodes = [
            KafkaNode(n, ports[2 * (n - 1)], ports[2 * (n - 1) + 1], self.data_dir / f"node-{n}")
            for n in range(1, brokers + 1)
        ]
        self.bootstrap_servers = [node.address for node in self.nodes]
        # Every JVM is started from this one thread, which lives as long as the cluster: the
        # parent-death signal follows the starting thread, so a node restarted from a
        # short-lived worker thread would otherwise die with that thread.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-launcher")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._configure()
            self._format()
            for node in self.nodes:
                self._launch(node)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def _template(self, name: str) -> Template:
        source = resources.files(__package__).joinpath(f"conf/{name}")
        return Template(source.read_text())

    def _configure(self) -> None:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        server, log4j = self._template("server.properties"), self._template("log4j2.properties")
        for node in self.nodes:
            node.directory.mkdir(parents=True, exist_ok=True)
            (node.directory / "server.properties").write_text(
                server.substitute(
                    node_id=node.node_id,
                    voters=voters,
                    port=node.port,
                    controller_port=node.controller_port,
                    log_dir=node.directory / "data",
                    replication=self.replication,
                    min_insync=self.min_insync,
                    partitions=self.partitions,
                )
            )
            (node.directory / "log4j2.properties").write_text(
                log4j.substitute(node_dir=node.directory)
            )

    def _java_command(self, node: KafkaNode, main: str, *args: str, heap_mb: int) -> list[str]:
        java = java_executable() or "java"
        return [
            java,
            f"-Xmx{heap_mb}m",
            f"-Xms{min(heap_mb, 128)}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
            "-cp",
            f"{self._libs}/*",
            main,
            *args,
        ]

    def _format(self) -> None:
        # Formatting is a JVM start per node; they run side by side.
        running: list[tuple[KafkaNode, subprocess.Popen[bytes]]] = []
        try:
            for node in self.nodes:
                command = self._java_command(
                    node,
                    _STORAGE_TOOL,
                    "format",
                    "--cluster-id",
                    self.cluster_id,
                    "--config",
                    str(node.directory / "server.properties"),
                    "--ignore-formatted",
                    heap_mb=256,
                )
                proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                running.append((node, proc))
            for node, proc in running:
                try:
                    out, _ = proc.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    raise ApacheKafkaError(
                        f"formatting node {node.node_id} took over 120 s"
                    ) from None
                if proc.returncode != 0:
                    raise ApacheKafkaError(
                        f"formatting node {node.node_id} failed: "
                        + one_line_tail(out.decode(errors="replace"))
                    )
        finally:
            for _, proc in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def _launch(self, node: KafkaNode) -> None:
        command = self._java_command(
            node, _MAIN, str(node.directory / "server.properties"), heap_mb=self.heap_mb
        )

        def start() -> Process:
            return Process(
                f"node-{node.node_id}",
                command,
                log=node.directory / "stdout.log",
                open_log=lambda path: path.open("ab"),  # one log across restarts
                preexec_fn=_die_with_parent,  # one prctl call, looked up before the fork
            )

        node.process = self._launcher.submit(start).result()

    def wait_ready(self, timeout_s: float | None = None, nodes: Sequence[int] = ()) -> None:
        """Until the given nodes (by default every running one) are up and registered with the
        controller. Each is asked on its own address, so a node is ready only once it serves
        requests itself, not while its old registration lingers after a kill."""
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        waiting = [self.node(n) for n in nodes] or [n for n in self.nodes if n.running]
        last = "no answer"
        while time.monotonic() < deadline:
            for node in waiting:
                if node.process is not None and not node.process.running():
                    raise ApacheKafkaError(
                        f"Apache Kafka node {node.node_id} exited with {node.process.returncode}:"
                        f"\n{node.log_tail()}"
                    )
            pending = []
            for node in waiting:
                try:
                    registered = self._registered_brokers(node.address, timeout_s=2.0)
                except ApacheKafkaError as exc:
                    last = f"node {node.node_id}: {exc}"
                    pending.append(node)
                    continue
                if not {n.node_id for n in waiting} <= registered:
                    last = f"brokers registered: {sorted(registered)}"
                    pending.append(node)
            if not pending:
                return
            time.sleep(0.2)
        raise ApacheKafkaError(f"Apache Kafka did not become ready in time ({last})")

    def _admin(self, servers: str | None = None) -> object:
        from confluent_kafka.admin import AdminClient

        return AdminClient(
            {
                "bootstrap.servers": servers
                or ",".join(n.address for n in self.nodes if n.running),
                # librdkafka's lines about nodes being down are expected here (faults, starts).
                "log_level": 0,
            }
        )

    def _metadata(self, servers: str | None = None, timeout_s: float = 5.0) -> Any:
        from confluent_kafka import KafkaException

        try:
            return self._admin(servers).list_topics(timeout=timeout_s)  # type: ignore[attr-defined]
        except KafkaException as exc:
            raise ApacheKafkaError(f"no metadata: {exc.args[0] if exc.args else exc}") from exc

    def _registered_brokers(self, servers: str, timeout_s: float) -> set[int]:
        return set(self._metadata(servers, timeout_s).brokers)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 20 s) and remove the data."""
        running = [n.process for n in self.nodes if n.process is not None and n.running]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a paused node cannot stop
        stop_all(running, _STOP_TIMEOUT_S)
        self._launcher.shutdown(wait=False)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def closed(self) -> bool:
        return not any(node.running for node in self.nodes)

    def __repr__(self) -> str:
        return f"ApacheKafkaCluster(brokers={self.brokers}, {','.join(self.bootstrap_servers)})"

    # -- topics --------------------------------------------------------------------------

    def create_topics(
        self,
        names: Iterable[str],
        partitions: int | None = None,
        *,
        compacted: Sequence[str] = (),
        config: dict[str, str] | None = None,
    ) -> None:
        """Create topics (replication ``min(3, N)``); those in ``compacted`` get
        ``cleanup.policy=compact``. An existing topic is left as it is."""
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        wanted = list(dict.fromkeys(names))
        if not wanted:
            return
        topics = [
            NewTopic(
                name,
                num_partitions=partitions or self.partitions,
                replication_factor=self.replication,
                config={
                    **(config or {}),
                    **({"cleanup.policy": "compact"} if name in compacted else {}),
                },
            )
            for name in wanted
        ]
        admin = self._admin()  # futures fail once their client is collected: keep it
        _settle(
            admin.create_topics(topics, request_timeout=30),  # type: ignore[attr-defined]
            "create",
            tolerated="TOPIC_ALREADY_EXISTS",
        )
        self._wait_for_leaders(wanted)

    def delete_topics(self, names: Iterable[str]) -> None:
        """Delete topics (those that do not exist are ignored): a long test session would
        otherwise leave every node with thousands of partitions to recover on each restart."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return
        admin = self._admin()  # futures fail once their client is collected: keep it
        _settle(
            admin.delete_topics(wanted, request_timeout=30),  # type: ignore[attr-defined]
            "delete",
            tolerated="UNKNOWN_TOPIC",
        )

    def _wait_for_leaders(self, names: Sequence[str], timeout_s: float = 30) -> None:
        # CreateTopics returns before every partition has a leader known to every broker.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            metadata = self._metadata()
            ready = all(
                name in metadata.topics
                and metadata.topics[name].error is None
                and all(p.leader >= 0 for p in metadata.topics[name].partitions.values())
                for name in names
            )
            if ready:
                return
            time.sleep(0.1)
        raise ApacheKafkaError(f"topics {', '.join(names)} have no leaders after {timeout_s} s")

    # -- faults --------------------------------------------------------------------------

    def node(self, node_id: int) -> KafkaNode:
        if not 1 <= node_id <= self.brokers:
            raise ValueError(f"node ids are 1..{self.brokers}, not {node_id}")
        return self.nodes[node_id - 1]

    def _signal(self, node_id: int, signum: signal.Signals) -> KafkaNode:
        node = self.node(node_id)
        if not node.running or node.process is None:
            raise ApacheKafkaError(f"node {node_id} is not running")
        node.process.send_signal(signum)
        return node

    def kill(self, node_id: int) -> None:
        """SIGKILL: the node dies at once, without a controlled shutdown."""
        node = self._signal(node_id, signal.SIGKILL)
        assert node.process is not None
        node.process.wait()

    def pause(self, node_id: int) -> None:
        """SIGSTOP: the node keeps its sockets but answers nothing, as a hung JVM would."""
        self._signal(node_id, signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self._signal(node_id, signal.SIGCONT)

    def stop_node(self, node_id: int, timeout_s: float = 60) -> None:
        """SIGTERM: a controlled shutdown (leadership moves away first)."""
        node = self.node(node_id)
        if not node.running or node.process is None:
            raise ApacheKafkaError(f"node {node_id} is not running")
        node.process.stop(timeout_s)

    def start_node(self, node_id: int, timeout_s: float | None = None) -> None:
        """Start a stopped or killed node again, with its ports and data."""
        node = self.node(node_id)
        if node.running:
            raise ApacheKafkaError(f"node {node_id} is running")
        self._launch(node)
        self.wait_ready(timeout_s, nodes=[node_id])

    def under_replicated(self, names: Iterable[str]) -> int:
        """Partitions of ``names`` whose in-sync replicas are fewer than their replicas."""
        metadata = self._metadata()
        return sum(
            1
            for name in names
            if name in metadata.topics
            for p in metadata.topics[name].partitions.values()
            if len(p.isrs) < len(p.replicas)
        )
