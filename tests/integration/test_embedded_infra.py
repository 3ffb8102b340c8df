"""The embedded infrastructure itself: librdkafka's mock cluster driven by aiokafka, the
standalone broker runner, and the embedded PostgreSQL.

Several tests pin down behaviour of the mock that differs from Apache Kafka (retention,
idempotence), so that a librdkafka upgrade that changes it is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAuthorizationFailedError

import ptsp_gate
from ptsp_gate.embedded import ApiKey, EmbeddedPostgres, KafkaErr, MockKafkaCluster

from .support import query_value

pytestmark = pytest.mark.integration

Records = list[ConsumerRecord[bytes, bytes]]


@pytest.fixture
def kafka() -> Iterator[MockKafkaCluster]:
    with MockKafkaCluster(brokers=3) as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def producer(kafka: MockKafkaCluster, **config: Any) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **config)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@contextlib.asynccontextmanager
async def consumer(
    kafka: MockKafkaCluster, topic: str, group_id: str | None = None
) -> AsyncIterator[AIOKafkaConsumer]:
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # After the last member leaves, the mock holds the group in "joining" for the
        # leaver's session timeout minus 1 s before a newcomer gets partitions.
        session_timeout_ms=2500,
        heartbeat_interval_ms=500,
    )
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def take(c: AIOKafkaConsumer, expected: int, timeout: float = 10.0) -> Records:
    """At least `expected` records (fewer only on timeout), plus whatever else has arrived."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    out: Records = []
    while len(out) < expected and loop.time() < deadline:
        for records in (await c.getmany(timeout_ms=200)).values():
            out.extend(records)
    return out


async def read_all(kafka: MockKafkaCluster, topic: str, expected: int) -> Records:
    async with consumer(kafka, topic) as c:
        out = await take(c, expected)
        # Linger so that duplicates beyond `expected` would show up too.
        out.extend(await take(c, 1, timeout=0.3))
        return out


async def send_all(p: AIOKafkaProducer, topic: str, numbers: range, keys: int = 5) -> None:
    futures = [await p.send(topic, str(n).encode(), key=f"k{n % keys}".encode()) for n in numbers]
    await asyncio.gather(*futures)


def assert_once_in_order_per_key(records: Records, numbers: range) -> None:
    values = [int(r.value) for r in records]
    assert sorted(values) == list(numbers), "every message exactly once"
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for r in records:
        by_key[r.key].append(int(r.value))
    for key, sequence in by_key.items():
        assert sequence == sorted(sequence), f"order within key {key!r}"


# -- the mock cluster -------------------------------------------------------------------


def test_bootstrap_servers_is_a_list_of_local_brokers(kafka: MockKafkaCluster) -> None:
    assert isinstance(kafka.bootstrap_servers, list)
    assert len(kafka.bootstrap_servers) == 3
    assert all(s.startswith("127.0.0.1:") for s in kafka.bootstrap_servers)
    with pytest.raises(ValueError, match=r"1\.\.3"):
        kafka.broker_down(0)


async def test_topic_partitions_explicit_and_auto_created(kafka: MockKafkaCluster) -> None:
    kafka.create_topic("six", partitions=6)
    async with producer(kafka) as p:
        assert await p.partitions_for("six") == set(range(6))
        assert await p.partitions_for("auto-created") == set(range(4))


async def test_idempotent_produce_then_group_resumes_from_committed_offsets(
    kafka: MockKafkaCluster,
) -> None:
    kafka.create_topic("events", partitions=3)
    async with producer(kafka, enable_idempotence=True) as p:
        await send_all(p, "events", range(30))

    async with consumer(kafka, "events", group_id="g1") as c:
        first = await take(c, 30)
        await c.commit()
        committed = [await c.committed(TopicPartition("events", n)) for n in range(3)]
    assert_once_in_order_per_key(first, range(30))
    assert sum(offset or 0 for offset in committed) == 30

    async with producer(kafka, enable_idempotence=True) as p:
        await send_all(p, "events", range(30, 40))
    async with consumer(kafka, "events", group_id="g1") as c:
        second = await take(c, 10)
        second.extend(await take(c, 1, timeout=0.3))
    assert sorted(int(r.value) for r in second) == list(range(30, 40))


async def test_idempotent_producer_stalls_through_outage_and_delivers_once(
    kafka: MockKafkaCluster,
) -> None:
    kafka.create_topic("outage", partitions=3)
    async with producer(
        kafka, enable_idempotence=True, request_timeout_ms=1000, retry_backoff_ms=50
    ) as p:
        await send_all(p, "outage", range(10))
        kafka.all_brokers_down()
        futures = [
            await p.send("outage", str(n).encode(), key=f"k{n % 5}".encode()) for n in range(10, 40)
        ]
        # Longer than request_timeout_ms: aiokafka never expires an idempotent batch.
        await asyncio.sleep(1.5)
        assert not any(f.done() for f in futures)
        kafka.all_brokers_up()
        await asyncio.wait_for(asyncio.gather(*futures), timeout=10)

    assert_once_in_order_per_key(await read_all(kafka, "outage", 40), range(40))


async def test_plain_producer_fails_after_request_timeout_while_brokers_down(
    kafka: MockKafkaCluster,
) -> None:
    kafka.create_topic("plain", partitions=1)
    async with producer(kafka, request_timeout_ms=500, retry_backoff_ms=50) as p:
        await p.partitions_for("plain")
        kafka.all_brokers_down()
        with pytest.raises(KafkaError):
            await asyncio.wait_for(p.send_and_wait("plain", b"lost"), timeout=10)
        kafka.all_brokers_up()
        await asyncio.wait_for(p.send_and_wait("plain", b"kept"), timeout=10)
    assert [r.value for r in await read_all(kafka, "plain", 1)] == [b"kept"]


async def test_pushed_request_errors_fail_exactly_the_next_requests(
    kafka: MockKafkaCluster,
) -> None:
    kafka.create_topic("faults", partitions=1)
    async with producer(kafka, retry_backoff_ms=50) as p:
        await p.partitions_for("faults")

        kafka.push_request_errors(ApiKey.PRODUCE, [KafkaErr.TOPIC_AUTHORIZATION_FAILED])
        with pytest.raises(TopicAuthorizationFailedError):
            await p.send_and_wait("faults", b"refused")
        assert (await p.send_and_wait("faults", b"accepted")).offset == 0

        kafka.start_request_tracking()
        kafka.push_request_errors(ApiKey.PRODUCE, [KafkaErr.NOT_ENOUGH_REPLICAS])
        assert (await p.send_and_wait("faults", b"retried")).offset == 1
        assert len(kafka.requests(ApiKey.PRODUCE)) == 2  # the failed attempt and the retry


async def test_two_megabyte_message_needs_a_larger_max_request_size(
    kafka: MockKafkaCluster,
) -> None:
    kafka.create_topic("big", partitions=1)
    value = os.urandom(2 * 1024 * 1024)
    async with producer(kafka) as p:
        with pytest.raises(MessageSizeTooLargeError):  # aiokafka's 1 MiB default, client side
            await p.send("big", value)
    async with producer(kafka, max_request_size=3 * 1024 * 1024) as p:
        await p.send_and_wait("big", value)
    [record] = await read_all(kafka, "big", 1)
    assert record.value == value


async def test_partition_keeps_only_about_five_mebibytes(kafka: MockKafkaCluster) -> None:
    kafka.create_topic("retention", partitions=1)
    async with producer(kafka, max_request_size=3 * 1024 * 1024) as p:
        for _ in range(3):
            await p.send_and_wait("retention", b"x" * 2_000_000)
    tp = TopicPartition("retention", 0)
    async with consumer(kafka, "retention") as c:
        assert await c.beginning_offsets([tp]) == {tp: 1}  # the first 2 MB are gone
        assert await c.end_offsets([tp]) == {tp: 3}


async def test_idempotent_retry_after_lost_ack_is_duplicated_by_the_mock(
    kafka: MockKafkaCluster,
) -> None:
    """Apache Kafka would deduplicate by sequence number; the mock only does so for
    transactional producers. Fault tests must not expect exactly-once from lost acks."""
    kafka.create_topic("lost-ack", partitions=1)
    async with producer(
        kafka, enable_idempotence=True, request_timeout_ms=500, retry_backoff_ms=50
    ) as p:
        await p.send_and_wait("lost-ack", b"warm-up")  # connect while answers are prompt
        kafka.set_rtt(-1, 2000)  # appended at once, acknowledged too late
        future = await p.send("lost-ack", b"once")
        await asyncio.sleep(1.5)
        kafka.set_rtt(-1, 0)
        await asyncio.wait_for(future, timeout=10)
    copies = [r.value for r in await read_all(kafka, "lost-ack", 3)]
    assert copies.count(b"once") >= 2


# -- the standalone broker --------------------------------------------------------------


SRC_DIR = str(Path(ptsp_gate.__file__).resolve().parents[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_run_broker_prints_bootstrap_first_and_exits_zero_on_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    bootstrap_file = tmp_path / "run" / "bootstrap"
    code = (
        "from pathlib import Path\n"
        "from ptsp_gate.embedded import run_broker\n"
        f"run_broker(2, 5, ['permits', 'decisions'], Path({str(bootstrap_file)!r}))\n"
    )
    pythonpath = os.pathsep.join(filter(None, [SRC_DIR, os.getenv("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode().strip()
        servers = first.split(",")
        assert len(servers) == 2
        assert all(s.startswith("127.0.0.1:") for s in servers)
        assert bootstrap_file.read_text().strip() == first

        p = AIOKafkaProducer(bootstrap_servers=servers)
        await p.start()
        try:
            assert await p.partitions_for("permits") == set(range(5))
        finally:
            await p.stop()

        proc.send_signal(sig)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=15)
        assert proc.returncode == 0, stderr.decode()
        assert not bootstrap_file.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- PostgreSQL -------------------------------------------------------------------------


async def test_embedded_postgres_creates_database_and_keeps_it_across_restarts(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pgdata"
    with EmbeddedPostgres(data_dir, database="ptsp_gate") as pg:
        assert "/ptsp_gate?host=" in pg.dsn  # unix socket, no TCP port
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("SELECT current_database()") == "ptsp_gate"
            assert await conn.fetchval("SHOW server_version_num") >= "140000"
            await conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        finally:
            await conn.close()
    assert not pg.running
    assert not (data_dir / "postmaster.pid").exists(), "stop() shuts the server down"

    pg = EmbeddedPostgres(data_dir)
    dsn = pg.start()  # initialised directory and existing database: reused
    try:
        assert await query_value(dsn, "SELECT n FROM kept") == 42
    finally:
        pg.stop()
