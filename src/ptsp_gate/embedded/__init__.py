"""Embedded local infrastructure: Kafka (librdkafka's mock cluster, or Apache Kafka started from
its Maven Central jars) and a PostgreSQL server.

Used by ``ptsp-gate dev``, ``ptsp-gate broker``, the test suite and the benchmark whenever
``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` do not point at real services; they start services
and databases through :mod:`ptsp_gate.embedded.harness`.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ptsp_gate.embedded.apache_kafka import KAFKA_VERSION, ApacheKafkaCluster, ApacheKafkaError
from ptsp_gate.embedded.mock_kafka import ApiKey, KafkaErr, MockKafkaCluster, MockKafkaError
from ptsp_gate.embedded.postgres import (
    DEFAULT_DATABASE,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    default_data_dir,
)

__all__ = [
    "DEFAULT_DATABASE",
    "ENGINES",
    "ApacheKafkaCluster",
    "ApacheKafkaError",
    "ApiKey",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "KafkaErr",
    "MockKafkaCluster",
    "MockKafkaError",
    "default_data_dir",
    "run_broker",
]


def _write_atomically(path: Path, text: str) -> None:
    # Readers polling for the file must never see it half-written.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


ENGINES = ("mock", "kafka")


def run_broker(
    brokers: int = 3,
    partitions: int = 4,
    topics: Sequence[str] = (),
    bootstrap_file: Path | None = None,
    *,
    engine: str = "mock",
    compacted: Sequence[str] = (),
) -> int:
    """Run a Kafka cluster in the foreground until SIGTERM or SIGINT: librdkafka's mock cluster
    (engine ``mock``) or Apache Kafka nodes (engine ``kafka``, where ``compacted`` topics get
    ``cleanup.policy=compact``; the mock has no such setting).

    The comma-joined bootstrap address is the first line on stdout (and the content of
    ``bootstrap_file``, which is removed again on shutdown so that nobody picks up a dead
    address). Returns 0 after a clean shutdown, 1 when an Apache Kafka node died on its own (the
    others are stopped then, and the node's last log lines are on stderr).

    Must run in the main thread, the only one Python delivers signals to: from an
    ``async`` command call it directly (blocking the loop is fine, nothing else runs),
    not through ``asyncio.to_thread``.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "run_broker must run in the main thread to handle SIGTERM/SIGINT; "
            "call it directly rather than via asyncio.to_thread"
        )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # Handlers go in before the cluster exists so that an early signal still shuts down cleanly.
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        cluster: MockKafkaCluster | ApacheKafkaCluster
        if engine == "kafka":
            cluster = ApacheKafkaCluster(brokers=brokers, partitions=partitions)
        else:
            cluster = MockKafkaCluster(brokers=brokers)
        with cluster:
            if isinstance(cluster, ApacheKafkaCluster):
                cluster.create_topics(topics, partitions, compacted=compacted)
            else:
                cluster.create_topics(topics, partitions=partitions)
            bootstrap = ",".join(cluster.bootstrap_servers)
            if bootstrap_file is not None:
                _write_atomically(bootstrap_file, bootstrap + "\n")
            print(bootstrap, flush=True)
            created = (
                f"topics {', '.join(topics)} with {partitions} partitions each"
                if topics
                else "no topics pre-created"
            )
            kind = (
                f"Apache Kafka {KAFKA_VERSION}, {brokers} node(s) in {cluster.data_dir}"
                if isinstance(cluster, ApacheKafkaCluster)
                else f"mock Kafka cluster, {brokers} broker(s)"
            )
            print(f"{kind}, {created}; stop with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
            try:
                # A timeout keeps the wait interruptible by signal handlers on every platform,
                # and lets protocol errors (e.g. oversized requests) reach the operator.
                while not stop.wait(0.5):
                    if isinstance(cluster, ApacheKafkaCluster):
                        dead = [n for n in cluster.nodes if not n.running]
                        if dead:
                            node = dead[0]
                            print(
                                f"broker: Apache Kafka node {node.node_id} exited; stopping the "
                                f"others. Its last lines:\n{node.log_tail()}",
                                file=sys.stderr,
                                flush=True,
                            )
                            return 1
                    else:
                        for line in cluster.recent_errors():
                            print(line, file=sys.stderr, flush=True)
            finally:
                if bootstrap_file is not None:
                    bootstrap_file.unlink(missing_ok=True)
        return 0
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be restored
                signal.signal(sig, handler)
