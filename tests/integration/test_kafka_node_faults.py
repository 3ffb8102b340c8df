"""Real faults on a real cluster: Apache Kafka nodes killed, hung and restarted, and a member of
a three-instance consumer group killed, while events flow. Three nodes, replication factor 3,
``min.insync.replicas=2``: any one node may fail without a write being refused.

What must hold every time: each application decided exactly once in PostgreSQL, the outbox
drained, and every decision on the topic (a relay that dies between publishing and recording may
publish a decision again, byte-identical; consumers dedupe by ``decision_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import urllib.error
import urllib.request
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from .conftest import eventually
from .support import (
    application_id,
    assert_none_lost,
    decisions,
    events,
    free_port,
    read_topic,
    service_process,
    services,
)

pytestmark = pytest.mark.integration


async def _decided(db) -> int:
    return int(await db.fetchval("SELECT count(*) FROM compliance_decision"))


async def _wait_some_decided(db, at_least: int = 1) -> None:
    async def progress() -> bool:
        return await _decided(db) >= at_least

    await eventually(progress, timeout=60)


async def _assert_each_decided_once(db, n: int) -> None:
    assert await _decided(db) == n
    assert await db.fetchval("SELECT count(DISTINCT application_id) FROM compliance_decision") == n
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def _leader_of_first_partition(bootstrap: list[str], topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = {p["partition"]: p["leader"] for p in described[0]["partitions"]}
    return int(partitions[0])


async def _coordinator_of(bootstrap: list[str], group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return int(await admin.find_coordinator(group))
    finally:
        await admin.close()


def _ready(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def _all_published(bootstrap, settings, db, n: int):
    records = await read_topic(
        bootstrap, settings.topic_decisions, n, timeout=150, settle=2, distinct=application_id
    )
    published = {d["application_id"] for d in decisions(records)}
    if len(published) < n:
        decided = await _decided(db)
        pending = await db.fetchval("SELECT count(*) FROM outbox")
        raise AssertionError(
            f"{n - len(published)} decisions not published: {decided} decided in PostgreSQL, "
            f"{pending} outbox rows pending"
        )
    assert_none_lost(records, n)

    async def drained() -> bool:
        return await db.fetchval("SELECT count(*) FROM outbox") == 0

    await eventually(drained, timeout=30)
    return records


@contextlib.asynccontextmanager
async def _steady_stream(producer, topic: str, tag: str, rate: int = 300):
    """Application events at a fixed rate for as long as the block runs, so that a fault inside
    it always meets events in flight and events arriving after it. Yields a one-element list:
    the number sent, final once the block has ended."""
    pending = events(rate * 180, tag)
    sent = [0]
    deliveries: list[asyncio.Future[Any]] = []
    stop = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not stop.is_set():
            due = min(len(pending), int((loop.time() - started) * rate))
            # Not awaiting each delivery: a record for a hung leader's partition must not hold
            # up the records for the others, as it would for a producer that waits per batch.
            for key, headers, value in pending[sent[0] : due]:
                deliveries.append(await producer.send(topic, value, key=key, headers=headers))
            sent[0] = max(sent[0], due)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(run())
    try:
        yield sent
    finally:
        stop.set()
        await task
        await asyncio.wait_for(asyncio.gather(*deliveries), 120)


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
async def test_a_partition_leader_fails_mid_stream(fault, apache_cluster, settings, producer, db):
    bootstrap = list(settings.kafka_bootstrap_servers)
    # The leader of the decisions topic's first partition, so that the relay's writes must move.
    victim = await _leader_of_first_partition(bootstrap, settings.topic_decisions)
    async with services(settings, "permit-checker"):
        async with _steady_stream(producer, settings.topic_applications, f"LEAD-{fault}") as sent:
            await _wait_some_decided(db, 100)
            if fault == "SIGKILL":
                apache_cluster.kill(victim)
            else:
                apache_cluster.pause(victim)
            at_fault = await _decided(db)
            # Long enough for the controller to fence the node (3 s) and move its leaderships.
            await asyncio.sleep(8)
            while_away = await _decided(db)
            if fault == "SIGKILL":
                await asyncio.to_thread(apache_cluster.start_node, victim)
            else:
                apache_cluster.resume(victim)
            await asyncio.sleep(2)
        n = sent[0]
        await _all_published(bootstrap, settings, db, n)
    await _assert_each_decided_once(db, n)
    # Work went on while the node was away, not only after it came back.
    assert while_away > at_fault


async def test_the_group_coordinator_hangs_mid_stream(apache_cluster, settings, producer, db):
    # Offset commits go to one broker, the group's coordinator. While it hangs, a commit waits for
    # the client's request timeout (tens of seconds); decisions must go on meanwhile.
    bootstrap = list(settings.kafka_bootstrap_servers)
    async with services(settings, "permit-checker"):
        async with _steady_stream(producer, settings.topic_applications, "COORD") as sent:
            await _wait_some_decided(db, 100)
            victim = await _coordinator_of(bootstrap, settings.group_permit_checker)
            apache_cluster.pause(victim)
            at_fault = await _decided(db)
            await asyncio.sleep(8)
            while_away = await _decided(db)
            apache_cluster.resume(victim)
            await asyncio.sleep(2)
        n = sent[0]
        await _all_published(bootstrap, settings, db, n)
    await _assert_each_decided_once(db, n)
    assert while_away > at_fault, f"nothing decided in 8 s while node {victim} hung"


async def test_a_rolling_restart_of_every_node(apache_cluster, settings, producer, bootstrap, db):
    async with services(settings, "permit-checker", "enrolment-sync"):
        async with _steady_stream(producer, settings.topic_applications, "ROLL") as sent:
            await _wait_some_decided(db, 100)
            for node in apache_cluster.nodes:
                # One at a time, each back in sync before the next goes, as an operator upgrades;
                # events keep arriving and being decided while each node is away.
                before = await _decided(db)
                await asyncio.to_thread(apache_cluster.stop_node, node.node_id)
                await asyncio.to_thread(apache_cluster.start_node, node.node_id)
                assert await _decided(db) > before, f"nothing decided while node {node.node_id}"

                async def in_sync() -> bool:
                    internal = ["__consumer_offsets", *settings.all_topics()]
                    return await asyncio.to_thread(apache_cluster.under_replicated, internal) == 0

                await eventually(in_sync, timeout=60, interval=0.5)
        n = sent[0]
        await _all_published(bootstrap, settings, db, n)
    await _assert_each_decided_once(db, n)


async def test_one_of_three_instances_killed_mid_stream(
    apache_cluster, settings, producer, bootstrap, db
):
    # Three service processes in one consumer group, one partition each; one dies outright while
    # events keep arriving. Events sent to its partition after its death can only be decided by a
    # survivor that took the partition over (after the session timeout), reading from the last
    # committed offset: what the dead one had decided but not committed is deduplicated.
    ports = [free_port() for _ in range(3)]
    procs = [service_process(settings, "permit-checker", port) for port in ports]
    try:

        async def every_instance_holds_a_partition() -> bool:
            # /ready answers 200 only with a partition assigned: three ready, three members.
            codes = await asyncio.gather(*(asyncio.to_thread(_ready, p) for p in ports))
            return all(code == 200 for code in codes)

        await eventually(every_instance_holds_a_partition, timeout=90, interval=0.5)
        async with _steady_stream(producer, settings.topic_applications, "GROUP") as sent:
            await _wait_some_decided(db, 300)
            procs[0].send_signal(signal.SIGKILL)
            await asyncio.to_thread(procs[0].wait, 10)
            await asyncio.sleep(12)  # past the consumer's 10 s session timeout
        n = sent[0]
        try:
            await _all_published(bootstrap, settings, db, n)
        except AssertionError as exc:
            survivors = "\n".join(
                line
                for proc in procs[1:]
                for line in proc.output().splitlines()
                if '"level": "info"' not in line and '"level": "debug"' not in line
            )
            raise AssertionError(f"{exc}\nsurvivors' warnings:\n{survivors[-6000:]}") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 40)
            except Exception:
                proc.kill()
    for proc in procs[1:]:
        assert proc.returncode == 0, proc.output()[-2000:]
    await _assert_each_decided_once(db, n)
