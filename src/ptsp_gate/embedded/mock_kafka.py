"""An in-process Kafka-protocol cluster: librdkafka's mock cluster through ctypes.

The shared library ships inside the ``confluent-kafka`` wheel, so no JVM, container or
download is needed. The cluster listens on 127.0.0.1 (one ephemeral port per broker) and
serves any Kafka client, aiokafka included; it runs on librdkafka's own threads, so it
keeps serving while the Python thread that created it is busy or blocked.

Behaviour of the mock cluster (librdkafka 2.16), measured with aiokafka 0.14:

* Auto-created topics get 4 partitions and replication factor ``min(3, brokers)``.
  librdkafka has no API to change that default; call :meth:`MockKafkaCluster.create_topic`
  (or pass ``topics=`` to the constructor) before any client touches a topic that needs a
  different partition count. CreateTopics (the admin API) is not implemented by the mock.
* Request size: the mock closes the connection on any request larger than
  ``receive.message.max.bytes`` of the owning handle (``max_request_bytes``, 100 MB here);
  the client just sees the connection drop and retries. It does not enforce
  ``message.max.bytes``, so a 2 MB record round-trips once the *producer* allows it
  (aiokafka ``max_request_size``, default 1 MiB, checked client-side). Consumers need no
  change: an oversized batch is still returned whole.
* Retention: each partition keeps about 5 MiB (or 100 000 batches); older batches are
  dropped. A consumer lagging further behind gets ``OffsetOutOfRange`` and falls back to
  ``auto_offset_reset``, so benchmarks must keep lag per partition under 5 MiB (or use more
  partitions). A batch that evicts *every* older batch of its partition (e.g. a 3 MB record
  after another 3 MB one) becomes unreadable itself: the log start moves past it.
* Idempotence: ``enable_idempotence=True`` producers work, but the mock only checks
  sequence numbers for *transactional* producers: a batch retried after a lost ack (request
  timeout, connection dropped after the append) is appended twice.
* Transactions: the control batches the mock writes fail aiokafka's CRC check
  (``CorruptRecordException``), so aiokafka consumers cannot read transactional topics.
* Produce acks carry ``timestamp == 1234`` (LogAppendTime); consumed records carry the
  producer's CreateTime as usual.
* Consumer groups and offset commits work (classic protocol). The first join waits
  ``group.initial.rebalance.delay.ms`` (librdkafka default 3000 ms); this wrapper sets it to
  0. After the last member leaves or is evicted, a newcomer waits the departed member's
  ``session_timeout_ms`` minus 1 s (9 s with aiokafka's default) for its assignment.
* :meth:`MockKafkaCluster.broker_down` drops the broker's connections and refuses new ones;
  leadership does not move, so only partitions (and groups) that broker leads (coordinates)
  stall. After :meth:`MockKafkaCluster.broker_up` aiokafka producers resume within one
  ``retry_backoff_ms``. Idempotent producers never expire sent batches, so they stall through
  any outage; plain ones fail after ``request_timeout_ms``. Consumers resume in ~0.1 s if the
  outage was shorter than their ``session_timeout_ms``; otherwise they are evicted and must
  rejoin (see above), redelivering uncommitted records.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import functools
import glob
import importlib.util
import os
import socket
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from ptsp_gate.embedded.engine import Engine

__all__ = [
    "ApiKey",
    "KafkaErr",
    "MockKafkaCluster",
    "MockKafkaError",
    "MockRequest",
    "load_librdkafka",
]

_RD_KAFKA_PRODUCER = 0
_ALL_BROKERS = -1
_ERRSTR_SIZE = 512
# syslog levels: 3 = LOG_ERR. Anything at or below is kept (not printed) so that a failed
# rd_kafka_mock_cluster_new can report why.
_LOG_LEVEL = 3

# void (*log_cb)(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
_LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p)


class MockRequest(NamedTuple):
    """A request a mock broker received, as recorded by request tracking."""

    broker_id: int
    api_key: int
    timestamp_us: int


class MockKafkaError(RuntimeError):
    """librdkafka refused to create or control the mock cluster."""


class ApiKey(enum.IntEnum):
    """Kafka protocol request types, for :meth:`MockKafkaCluster.push_request_errors`."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    API_VERSIONS = 18
    INIT_PRODUCER_ID = 22


class KafkaErr(enum.IntEnum):
    """A few Kafka error codes worth injecting (negative ones are librdkafka-internal)."""

    TRANSPORT = -195  # the mock broker drops the connection instead of answering
    UNKNOWN_TOPIC_OR_PARTITION = 3
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_FOR_PARTITION = 6
    REQUEST_TIMED_OUT = 7
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    REBALANCE_IN_PROGRESS = 27
    TOPIC_AUTHORIZATION_FAILED = 29  # not retriable: the client gives up at once


def _library_candidates() -> list[str]:
    spec = importlib.util.find_spec("confluent_kafka")
    found: list[str] = []
    if spec is not None and spec.origin is not None:
        pkg_dir = os.path.dirname(spec.origin)
        site_dir = os.path.dirname(pkg_dir)
        # Linux wheels vendor it via auditwheel, macOS wheels via delocate.
        for pattern in (
            os.path.join(site_dir, "confluent_kafka.libs", "librdkafka*.so*"),
            os.path.join(pkg_dir, ".dylibs", "librdkafka*.dylib"),
        ):
            found.extend(sorted(glob.glob(pattern)))
    system = ctypes.util.find_library("rdkafka")
    if system:
        found.append(system)
    return found


def _declare(lib: ctypes.CDLL) -> None:
    """Give every function we call its C signature.

    Without a restype ctypes assumes int and truncates 64-bit pointers.
    """
    vp, cp, i, i16, i32, i64, sz = (
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int16,
        ctypes.c_int32,
        ctypes.c_int64,
        ctypes.c_size_t,
    )
    signatures: dict[str, tuple[list[Any], Any]] = {
        "rd_kafka_conf_new": ([], vp),
        "rd_kafka_conf_destroy": ([vp], None),
        "rd_kafka_conf_set": ([vp, cp, cp, cp, sz], i),
        "rd_kafka_conf_set_log_cb": ([vp, _LOG_CB], None),
        "rd_kafka_new": ([i, vp, cp, sz], vp),
        "rd_kafka_destroy": ([vp], None),
        "rd_kafka_poll": ([vp, i], i),
        "rd_kafka_set_log_queue": ([vp, vp], i),
        "rd_kafka_err2str": ([i], cp),
        "rd_kafka_mock_cluster_new": ([vp, i], vp),
        "rd_kafka_mock_cluster_destroy": ([vp], None),
        "rd_kafka_mock_cluster_bootstraps": ([vp], cp),
        "rd_kafka_mock_topic_create": ([vp, cp, i, i], i),
        "rd_kafka_mock_partition_set_leader": ([vp, cp, i32, i32], i),
        "rd_kafka_mock_broker_set_down": ([vp, i32], i),
        "rd_kafka_mock_broker_set_up": ([vp, i32], i),
        "rd_kafka_mock_broker_set_rtt": ([vp, i32, i], i),
        "rd_kafka_mock_clear_request_errors": ([vp, i16], None),
        # The variadic one: fixed arguments only, errors are appended as c_int per call.
        "rd_kafka_mock_push_request_errors": ([vp, i16, sz], None),
        "rd_kafka_mock_group_initial_rebalance_delay_ms": ([vp, i32], None),
    }
    optional: dict[str, tuple[list[Any], Any]] = {
        "rd_kafka_mock_push_request_errors_array": ([vp, i16, sz, ctypes.POINTER(i)], None),
        "rd_kafka_mock_start_request_tracking": ([vp], None),
        "rd_kafka_mock_stop_request_tracking": ([vp], None),
        "rd_kafka_mock_get_requests": ([vp, ctypes.POINTER(sz)], ctypes.POINTER(vp)),
        "rd_kafka_mock_request_id": ([vp], i32),
        "rd_kafka_mock_request_api_key": ([vp], i16),
        "rd_kafka_mock_request_timestamp": ([vp], i64),
        "rd_kafka_mock_request_destroy_array": ([ctypes.POINTER(vp), sz], None),
    }
    missing = [name for name in signatures if not hasattr(lib, name)]
    if missing:
        raise MockKafkaError(f"librdkafka lacks {', '.join(missing)} (too old?)")
    for name, (argtypes, restype) in (signatures | optional).items():
        if hasattr(lib, name):
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = restype


def _preflight(brokers: int) -> None:
    """Fail in Python if the brokers' listening sockets cannot be opened.

    When rd_kafka_mock_cluster_new cannot open one, its cleanup path trips an assertion
    (librdkafka 2.16) and aborts the whole process, so it must not get that far.
    """
    opened: list[socket.socket] = []
    try:
        # One listener per broker plus the cluster's wake-up pipe.
        for _ in range(brokers + 2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            opened.append(sock)
            sock.bind(("127.0.0.1", 0))
            sock.listen()
    except OSError as exc:
        raise MockKafkaError(f"cannot open {brokers} broker sockets on 127.0.0.1: {exc}") from exc
    finally:
        for sock in opened:
            sock.close()


@functools.cache
def load_librdkafka() -> ctypes.CDLL:
    """The librdkafka shared library with the mock-cluster API, signatures declared."""
    tried: list[str] = []
    for path in _library_candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append(f"{path}: {exc}")
            continue
        try:
            _declare(lib)
        except MockKafkaError as exc:
            tried.append(f"{path}: {exc}")
            continue
        return lib
    raise MockKafkaError(
        "librdkafka with the mock cluster API not found (is confluent-kafka installed?); "
        + ("tried: " + "; ".join(tried) if tried else "no candidates")
    )


class MockKafkaCluster(Engine):
    """A running mock Kafka cluster with brokers numbered 1..``brokers``.

    Thread-safe: librdkafka serialises every control call through the cluster's own thread.

    Usage::

        with MockKafkaCluster(brokers=3, topics={"permits": 6}) as kafka:
            AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)  # a list, not a str
    """

    def __init__(
        self,
        brokers: int = 3,
        *,
        topics: dict[str, int] | None = None,
        group_initial_rebalance_delay_ms: int = 0,
        max_request_bytes: int = 100_000_000,
    ) -> None:
        if brokers < 1:
            raise ValueError("brokers must be >= 1")
        self._lib = load_librdkafka()
        _preflight(brokers)
        self._lock = threading.Lock()
        self._logs: deque[str] = deque(maxlen=200)
        # Must outlive the handle: librdkafka holds a raw pointer to it.
        self._log_cb = _LOG_CB(self._on_log)
        self._rk: int | None = self._new_handle(max_request_bytes)
        self._mcluster: int | None = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._mcluster:
            reason = "; ".join(self._drain_logs()) or "no reason logged"
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None
            raise MockKafkaError(f"rd_kafka_mock_cluster_new failed: {reason}")
        self.brokers = brokers
        raw = self._lib.rd_kafka_mock_cluster_bootstraps(self._mcluster)
        self.bootstrap_servers: list[str] = raw.decode().split(",")
        self._lib.rd_kafka_mock_group_initial_rebalance_delay_ms(
            self._mcluster, group_initial_rebalance_delay_ms
        )
        try:
            for name, partitions in (topics or {}).items():
                self.create_topic(name, partitions=partitions)
        except BaseException:
            self.stop()
            raise

    # -- lifecycle -------------------------------------------------------------------

    def _on_log(self, _rk: int | None, level: int, fac: bytes | None, buf: bytes | None) -> None:
        self._logs.append(f"[{level}] {(fac or b'').decode()}: {(buf or b'').decode()}")

    def _new_handle(self, max_request_bytes: int) -> int:
        lib = self._lib
        conf = lib.rd_kafka_conf_new()
        err = ctypes.create_string_buffer(_ERRSTR_SIZE)
        settings = {
            "log_level": str(_LOG_LEVEL),
            # Log lines wait in a queue that we poll on our own thread, instead of
            # librdkafka's threads calling into Python (unsafe during interpreter exit).
            "log.queue": "true",
            "receive.message.max.bytes": str(max_request_bytes),
        }
        for key, value in settings.items():
            if lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), err, _ERRSTR_SIZE) != 0:
                lib.rd_kafka_conf_destroy(conf)
                raise MockKafkaError(f"librdkafka conf {key}={value}: {err.value.decode()}")
        lib.rd_kafka_conf_set_log_cb(conf, self._log_cb)
        # rd_kafka_new takes ownership of conf on success only.
        rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, err, _ERRSTR_SIZE)
        if not rk:
            lib.rd_kafka_conf_destroy(conf)
            raise MockKafkaError(f"rd_kafka_new failed: {err.value.decode()}")
        lib.rd_kafka_set_log_queue(rk, None)  # route logs to the main queue served by poll
        return int(rk)

    def _drain_logs(self) -> list[str]:
        if self._rk:
            self._lib.rd_kafka_poll(self._rk, 0)
        lines = list(self._logs)
        self._logs.clear()
        return lines

    def recent_errors(self) -> list[str]:
        """Error lines librdkafka logged since the last call (they are never printed)."""
        with self._lock:
            return self._drain_logs()

    def stop(self) -> None:
        """Stop the brokers (clients see their connections drop) and free the handle."""
        with self._lock:
            if self._mcluster:
                self._lib.rd_kafka_mock_cluster_destroy(self._mcluster)
                self._mcluster = None
            if self._rk:
                self._lib.rd_kafka_poll(self._rk, 0)
                self._lib.rd_kafka_destroy(self._rk)
                self._rk = None

    @property
    def closed(self) -> bool:
        return self._mcluster is None

    def __repr__(self) -> str:
        state = "closed" if self.closed else ",".join(self.bootstrap_servers)
        return f"MockKafkaCluster(brokers={self.brokers}, {state})"

    # -- control ---------------------------------------------------------------------

    def _cluster(self) -> int:
        if not self._mcluster:
            raise MockKafkaError("mock cluster is closed")
        return self._mcluster

    def _check(self, err: int, what: str) -> None:
        if err:
            raise MockKafkaError(f"{what}: {self._lib.rd_kafka_err2str(err).decode()}")

    def _broker(self, broker_id: int) -> int:
        if not 1 <= broker_id <= self.brokers:
            raise ValueError(f"broker ids are 1..{self.brokers}, not {broker_id}")
        return broker_id

    def create_topic(self, name: str, partitions: int = 4, replication_factor: int = 3) -> None:
        """Create a topic; replication is capped at the number of brokers.

        Raises :class:`MockKafkaError` if it exists already (auto-creation included).
        """
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        replication = min(replication_factor, self.brokers)
        err = self._lib.rd_kafka_mock_topic_create(
            self._cluster(), name.encode(), partitions, replication
        )
        self._check(err, f"create topic {name!r}")

    def create_topics(self, names: Iterable[str], partitions: int = 4) -> None:
        for name in dict.fromkeys(names):  # a name listed twice is still one topic
            self.create_topic(name, partitions=partitions)

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        """Move a partition's leadership (``-1``: leaderless), as a controller would."""
        if broker_id != _ALL_BROKERS:
            self._broker(broker_id)
        err = self._lib.rd_kafka_mock_partition_set_leader(
            self._cluster(), topic.encode(), partition, broker_id
        )
        self._check(err, f"set leader of {topic}[{partition}]")

    def broker_down(self, broker_id: int) -> None:
        """Drop the broker's connections and refuse new ones (leadership stays put)."""
        err = self._lib.rd_kafka_mock_broker_set_down(self._cluster(), self._broker(broker_id))
        self._check(err, f"broker {broker_id} down")

    def broker_up(self, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_broker_set_up(self._cluster(), self._broker(broker_id))
        self._check(err, f"broker {broker_id} up")

    def all_brokers_down(self) -> None:
        self._check(self._lib.rd_kafka_mock_broker_set_down(self._cluster(), _ALL_BROKERS), "down")

    def all_brokers_up(self) -> None:
        self._check(self._lib.rd_kafka_mock_broker_set_up(self._cluster(), _ALL_BROKERS), "up")

    def set_rtt(self, broker_id: int, ms: int) -> None:
        """Delay every response from the broker by ``ms`` (``broker_id`` -1: all brokers).

        The request is still executed at once: a produce that the client times out on has
        already been appended.
        """
        if broker_id != _ALL_BROKERS:
            self._broker(broker_id)
        err = self._lib.rd_kafka_mock_broker_set_rtt(self._cluster(), broker_id, ms)
        self._check(err, f"broker {broker_id} rtt")

    def push_request_errors(self, api_key: int, errors: Sequence[int]) -> None:
        """Fail the next ``len(errors)`` requests of type ``api_key``, one error each, in order.

        Cluster-wide: whichever broker receives the request pops the next error. 0 lets a
        request through. :attr:`KafkaErr.TRANSPORT` makes the broker drop the connection.
        """
        if not errors:
            return
        cluster = self._cluster()
        if hasattr(self._lib, "rd_kafka_mock_push_request_errors_array"):
            array = (ctypes.c_int * len(errors))(*errors)
            self._lib.rd_kafka_mock_push_request_errors_array(cluster, api_key, len(errors), array)
        else:
            self._lib.rd_kafka_mock_push_request_errors(
                cluster, api_key, len(errors), *(ctypes.c_int(e) for e in errors)
            )

    def clear_request_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._cluster(), api_key)

    def set_group_initial_rebalance_delay(self, ms: int) -> None:
        self._lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._cluster(), ms)

    # -- observation -----------------------------------------------------------------

    def start_request_tracking(self) -> None:
        """Record every request from now on (clears earlier records), see :meth:`requests`."""
        self._lib.rd_kafka_mock_start_request_tracking(self._cluster())

    def stop_request_tracking(self) -> None:
        self._lib.rd_kafka_mock_stop_request_tracking(self._cluster())

    def requests(self, api_key: int | None = None) -> list[MockRequest]:
        """Requests recorded since :meth:`start_request_tracking`, oldest first."""
        count = ctypes.c_size_t(0)
        array = self._lib.rd_kafka_mock_get_requests(self._cluster(), ctypes.byref(count))
        if not array:
            return []
        try:
            recorded = [
                MockRequest(
                    self._lib.rd_kafka_mock_request_id(array[n]),
                    self._lib.rd_kafka_mock_request_api_key(array[n]),
                    self._lib.rd_kafka_mock_request_timestamp(array[n]),
                )
                for n in range(count.value)
            ]
        finally:
            self._lib.rd_kafka_mock_request_destroy_array(array, count.value)
        return [r for r in recorded if api_key is None or r.api_key == api_key]
