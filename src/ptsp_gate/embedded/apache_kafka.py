"""A local Apache Kafka cluster: the real broker, from Maven Central, in KRaft mode.

``install()`` resolves a pinned Apache Kafka (the broker, its runtime dependencies and a log4j2
backend) with Maven into a cache directory, once. :class:`ApacheKafkaCluster` starts N nodes
from it, each a combined broker and controller in its own JVM, listening on loopback only on
free ports, with data in a temporary directory of its own. The configuration is ours: the
templates in ``apache_kafka_conf/`` beside this file.

Each JVM is started with the parent-death signal set, so a test run or a ``ptsp-gate broker``
that is killed outright takes its nodes with it instead of leaving them running. The signal
fires when the *thread* that started the node ends: start clusters from a thread that outlives
them (the main thread, as the test fixtures and the ``broker`` command do).

Fault injection works on the real processes: :meth:`ApacheKafkaCluster.kill` (SIGKILL),
:meth:`~ApacheKafkaCluster.pause` / :meth:`~ApacheKafkaCluster.resume` (SIGSTOP / SIGCONT),
:meth:`~ApacheKafkaCluster.stop_node` (SIGTERM, a controlled shutdown) and
:meth:`~ApacheKafkaCluster.start_node` (the same node, ports and data, back again).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import random
import re
import shutil
import signal
import socket
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
from types import TracebackType
from typing import IO, Any

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafkaCluster",
    "ApacheKafkaError",
    "install",
    "install_dir",
    "installed",
    "missing_prerequisite",
]

KAFKA_VERSION = "4.2.0"
SCALA_VERSION = "2.13"
# The log4j2 release Kafka itself is built against; the slf4j 1.x binding routes Kafka's
# slf4j calls to it.
LOG4J_VERSION = "2.25.3"
MIN_JAVA = 17

_COMPLETE = ".complete"
_MAIN = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_PR_SET_PDEATHSIG = 1

_POM = Template("""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by ptsp-gate's setup: what a local Apache Kafka node needs at run time. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ptsp-gate.local</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>$kafka</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$scala</artifactId>
      <version>$kafka</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$log4j</version>
    </dependency>
  </dependencies>
</project>
""")


class ApacheKafkaError(RuntimeError):
    """Apache Kafka could not be installed, started or controlled."""


def one_line_tail(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[-limit:]


# -- installation ------------------------------------------------------------------------


def cache_root() -> Path:
    """``PTSP_GATE_KAFKA_HOME``, or ``~/.cache/ptsp-gate``."""
    configured = os.environ.get("PTSP_GATE_KAFKA_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "ptsp-gate"


def install_dir() -> Path:
    return cache_root() / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}"


def installed() -> bool:
    return (install_dir() / "libs" / _COMPLETE).is_file()


def java_version(java: str = "java") -> int | None:
    """The major version of ``java`` on PATH (``JAVA_HOME`` first), or None without one."""
    executable = _java(java)
    if executable is None:
        return None
    try:
        out = subprocess.run(
            [executable, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def _java(name: str = "java") -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / name).is_file():
        return str(Path(home) / "bin" / name)
    return shutil.which(name)


def missing_prerequisite(*, for_install: bool = False) -> str | None:
    """Why Apache Kafka cannot run (or be installed) here, in one line; None when it can."""
    version = java_version()
    if version is None:
        return f"no Java found (Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer)"
    if version < MIN_JAVA:
        return f"Java {version} found; Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer"
    if for_install:
        if not installed() and shutil.which("mvn") is None:
            return f"no Maven (mvn) to fetch Apache Kafka {KAFKA_VERSION} from Maven Central"
    elif not installed():
        return f"Apache Kafka {KAFKA_VERSION} is not installed in {install_dir()} (scripts/setup)"
    return None


def install(*, log: IO[str] | None = None) -> Path:
    """Resolve the pinned Apache Kafka into :func:`install_dir` with Maven; a no-op once done.

    Maven's own repository goes into the same cache, so nothing outside it is written.
    """
    target = install_dir()
    libs = target / "libs"
    if (libs / _COMPLETE).is_file():
        return target
    why = missing_prerequisite(for_install=True)
    if why:
        raise ApacheKafkaError(why)
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    pom.write_text(_POM.substitute(kafka=KAFKA_VERSION, scala=SCALA_VERSION, log4j=LOG4J_VERSION))
    staging = target / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        "mvn",
        "--batch-mode",
        "--quiet",
        "--strict-checksums",
        "--file",
        str(pom),
        f"-Dmaven.repo.local={cache_root() / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    except subprocess.TimeoutExpired:
        raise ApacheKafkaError(
            f"mvn did not resolve Apache Kafka {KAFKA_VERSION} in 900 s"
        ) from None
    if done.returncode != 0:
        detail = one_line_tail(done.stdout + done.stderr)
        raise ApacheKafkaError(f"mvn could not resolve Apache Kafka {KAFKA_VERSION}: {detail}")
    if not any(staging.glob(f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar")):
        raise ApacheKafkaError(f"mvn finished but left no kafka_{SCALA_VERSION} jar in {staging}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / _COMPLETE).write_text(f"{KAFKA_VERSION}\n")
    if log is not None:
        print(f"Apache Kafka {KAFKA_VERSION} installed in {target}", file=log)
    return target


# -- a running cluster ---------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _free_ports(count: int) -> list[int]:
    """Ports that are free now and below the kernel's ephemeral range: an outgoing connection
    never takes one of them as its source port, so a node restarted on its old ports finds
    them free. They are held open together so that no two are the same."""
    low = _ephemeral_range()[0]
    floor = 10_000 if low > 11_000 else 1024
    candidates = random.sample(range(floor, low), k=min(low - floor, 50 * count))
    socks: list[socket.socket] = []
    try:
        for port in candidates:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            if len(socks) == count:
                return [int(s.getsockname()[1]) for s in socks]
        raise ApacheKafkaError(f"no {count} free ports below {low} on 127.0.0.1")
    finally:
        for s in socks:
            s.close()


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
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        text = ""
        for name in ("server.log", "stdout.log"):
            with contextlib.suppress(OSError):
                text += (self.directory / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class ApacheKafkaCluster:
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
        ports = _free_ports(2 * brokers)
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
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def _template(self, name: str) -> Template:
        source = resources.files("ptsp_gate.embedded").joinpath(f"apache_kafka_conf/{name}")
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
        java = _java() or "java"
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

        def start() -> subprocess.Popen[bytes]:
            with open(node.directory / "stdout.log", "ab") as out:
                return subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, looked up before
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
                if node.process is not None and node.process.poll() is not None:
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

    def close(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 20 s) and remove the data."""
        for node in self.nodes:
            if node.running and node.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGCONT)  # a paused node cannot stop
                    node.process.terminate()
        deadline = time.monotonic() + 20
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        self._launcher.shutdown(wait=False)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def closed(self) -> bool:
        return not any(node.running for node in self.nodes)

    def __enter__(self) -> ApacheKafkaCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
        node = self._signal(node_id, signal.SIGTERM)
        assert node.process is not None
        try:
            node.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()

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


def main() -> int:
    """What scripts/setup runs: install once, or say in one line why not."""
    import sys

    try:
        if not installed():
            install(log=sys.stderr)
    except ApacheKafkaError as exc:
        print(f"setup: Apache Kafka: {exc}", file=sys.stderr)
        return 1
    return 0
