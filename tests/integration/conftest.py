"""Real parts for integration tests: a Kafka-protocol broker over TCP and a real PostgreSQL.

By default the embedded ones (librdkafka's mock cluster, pgserver). Set KAFKA_BOOTSTRAP_SERVERS
and/or DATABASE_URL to run the same tests against Apache Kafka or another PostgreSQL. Every test
gets its own database (cloned from a migrated template) and its own topic names.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ptsp_gate.adapters import migrations
from ptsp_gate.adapters.postgres import connect
from ptsp_gate.config import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[Any]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    from ptsp_gate.adapters.embedded.mock_kafka import MockKafkaCluster

    with MockKafkaCluster(brokers=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def bootstrap(kafka_cluster: Any) -> list[str]:
    if kafka_cluster is None:
        return [s for s in os.environ["KAFKA_BOOTSTRAP_SERVERS"].split(",") if s]
    return list(kafka_cluster.bootstrap_servers)


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from ptsp_gate.adapters.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres()
    dsn = pg.start(Path(tmp_path_factory.mktemp("pg")) / "data")
    try:
        yield dsn
    finally:
        pg.stop()


def _with_database(dsn: str, name: str) -> str:
    """The same server and credentials, another database name (URL or unix-socket form)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
async def template_db(server_dsn: str) -> str:
    name = f"ptsp_gate_template_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    conn = await connect(_with_database(server_dsn, name))
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()
    return name


@pytest.fixture
async def db_dsn(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    name = f"ptsp_gate_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    yield _with_database(server_dsn, name)
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def settings(kafka_cluster: Any, bootstrap: list[str], db_dsn: str) -> Settings:
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
    if kafka_cluster is not None:
        kafka_cluster.create_topics(topics, partitions=PARTITIONS)
    else:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
        finally:
            await admin.close()
    return s


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
