"""A local Apache Kafka cluster: the real broker, from Maven Central, in KRaft mode.

``install()`` resolves a pinned Apache Kafka (the broker, its runtime dependencies and a log4j2
backend) with Maven into a cache directory, once (:mod:`.installation`).
:class:`ApacheKafkaCluster` starts N nodes from it, each a combined broker and controller in its
own JVM, listening on loopback only on free ports, with data in a temporary directory of its own
(:mod:`.cluster`). The configuration is ours: the templates in ``conf/`` beside this file.

Each JVM is started with the parent-death signal set, so a test run or a ``ptsp-gate broker``
that is killed outright takes its nodes with it instead of leaving them running. The signal
fires when the *thread* that started the node ends: start clusters from a thread that outlives
them (the main thread, as the test fixtures and the ``broker`` command do).

Fault injection works on the real processes: :meth:`ApacheKafkaCluster.kill` (SIGKILL),
:meth:`~ApacheKafkaCluster.pause` / :meth:`~ApacheKafkaCluster.resume` (SIGSTOP / SIGCONT),
:meth:`~ApacheKafkaCluster.stop_node` (SIGTERM, a controlled shutdown) and
:meth:`~ApacheKafkaCluster.start_node` (the same node, ports and data, back again).
"""

from ptsp_gate.embedded.apache_kafka.cluster import ApacheKafkaCluster, KafkaNode
from ptsp_gate.embedded.apache_kafka.installation import (
    KAFKA_VERSION,
    ApacheKafkaError,
    install,
    install_dir,
    installed,
    main,
    missing_prerequisite,
)

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafkaCluster",
    "ApacheKafkaError",
    "KafkaNode",
    "install",
    "install_dir",
    "installed",
    "main",
    "missing_prerequisite",
]
