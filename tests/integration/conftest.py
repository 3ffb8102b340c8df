"""Real parts for integration tests: a Kafka broker over TCP and a real PostgreSQL.

Kafka, by ``PTSP_GATE_TEST_KAFKA_ENGINE``:

* ``kafka`` (the default when Java 17+ and the Apache Kafka that ``scripts/setup`` installs are
  there, and required under ``CI=true``): a 3-node Apache Kafka cluster, replication factor 3,
  ``min.insync.replicas=2``, started once for the session;
* ``mock``: librdkafka's mock cluster, in-process.

``KAFKA_BOOTSTRAP_SERVERS`` instead points the suite at a cluster of your own. Tests that kill or
pause nodes ask for ``apache_cluster`` and skip on the other engines. The mock cluster's own
behaviour (its fault injection, which ``ptsp-gate dev`` relies on) is tested in
``test_embedded_infra.py`` whatever the engine.

PostgreSQL: ``DATABASE_URL``, or the embedded server. Every test gets its own database (cloned
from a migrated template) and its own topic names.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings
from ptsp_gate.embedded import apache_kafka, harness
from ptsp_gate.stores import compliance
from tests.integration.console_support import console_url  # noqa: F401  (a shared fixture)

pytestmark = pytest.mark.integration

PARTITIONS = 3


def kafka_engine() -> str:
    """The engine the session's broker runs on: "kafka", "mock" or "external"."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return "external"
    engine = os.environ.get("PTSP_GATE_TEST_KAFKA_ENGINE", "")
    if engine in ("kafka", "mock"):
        return engine
    if engine:
        raise pytest.UsageError(f"PTSP_GATE_TEST_KAFKA_ENGINE is kafka or mock, not {engine!r}")
    if apache_kafka.missing_prerequisite() is None or os.environ.get("CI") == "true":
        return "kafka"
    return "mock"


def _apache_cluster_or_skip() -> Any:
    why = apache_kafka.missing_prerequisite()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka is required under CI: {why}")
        pytest.skip(why)
    return apache_kafka.ApacheKafkaCluster(brokers=3, partitions=PARTITIONS)


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Any]:
    engine = kafka_engine()
    if engine == "external":
        yield None
        return
    if engine == "kafka":
        with _apache_cluster_or_skip() as cluster:
            yield cluster
        return
    from ptsp_gate.embedded.mock_kafka import MockKafkaCluster

    with MockKafkaCluster(brokers=3) as cluster:
        yield cluster


@pytest.fixture
def apache_cluster(kafka_cluster: Any) -> Iterator[apache_kafka.ApacheKafkaCluster]:
    """The session's Apache Kafka cluster, for tests that kill, pause or restart its nodes;
    every node is running again after the test, whatever it did."""
    if not isinstance(kafka_cluster, apache_kafka.ApacheKafkaCluster):
        pytest.skip("kills and pauses Apache Kafka nodes: needs PTSP_GATE_TEST_KAFKA_ENGINE=kafka")
    yield kafka_cluster
    for node in kafka_cluster.nodes:
        if node.running:
            kafka_cluster.resume(node.node_id)
    for node in kafka_cluster.nodes:
        if not node.running:
            kafka_cluster.start_node(node.node_id)
    kafka_cluster.wait_ready()


@pytest.fixture(scope="session")
def bootstrap(kafka_cluster: Any) -> list[str]:
    if kafka_cluster is None:
        return [s for s in os.environ["KAFKA_BOOTSTRAP_SERVERS"].split(",") if s]
    return list(kafka_cluster.bootstrap_servers)


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with harness.postgres_server(tmp_path_factory.mktemp("pg") / "data") as (dsn, _):
        yield dsn


@pytest.fixture(scope="session")
async def template_db(server_dsn: str) -> str:
    return await harness.migrated_template(server_dsn)


@pytest.fixture
async def db_dsn(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    async with harness.fresh_database(server_dsn, "ptsp_gate_test", template=template_db) as dsn:
        yield dsn
        await _assert_projection_current(dsn)


async def _assert_projection_current(dsn: str) -> None:
    """Whatever a test did through the gate, the compliance projection it left behind equals its
    recomputation from the decision history."""
    conn = await connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            differences = [d for d in await compliance.verify(conn) if d.missing or d.extra]
    finally:
        await conn.close()
    assert not differences, differences


@pytest.fixture
async def settings(
    kafka_cluster: Any, bootstrap: list[str], db_dsn: str
) -> AsyncIterator[Settings]:
    suffix = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=db_dsn,
        topic_applications=f"apps-{suffix}",
        topic_enrolment=f"enrol-{suffix}",
        topic_decisions=f"decisions-{suffix}",
        group_permit_checker=f"checker-{suffix}",
        group_enrolment_sync=f"sync-{suffix}",
        batch_timeout_ms=20,
        retry_max_delay_s=1.0,
        graceful_timeout_s=10.0,
    )
    topics = s.all_topics()
    if isinstance(kafka_cluster, apache_kafka.ApacheKafkaCluster):
        kafka_cluster.create_topics(topics, PARTITIONS, compacted=[s.topic_enrolment])
    elif kafka_cluster is not None:
        kafka_cluster.create_topics(topics, partitions=PARTITIONS)
    else:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
        finally:
            await admin.close()
    yield s
    if isinstance(kafka_cluster, apache_kafka.ApacheKafkaCluster):
        await asyncio.to_thread(kafka_cluster.delete_topics, topics)


@pytest.fixture
async def producer(bootstrap: list[str]) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, max_request_size=4 * 1024 * 1024
    )
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(db_dsn)
    yield conn
    await conn.close()


async def eventually(check: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll an async predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)
