"""The committer keeps commits out of the work's path and commits only what was handled."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition

from ptsp_gate.runtime.offset_commits import OffsetCommitter


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


class Consumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("CommitFailedError: the group has rebalanced")
        self.commits.append(dict(offsets))


A0, A1 = TopicPartition("apps", 0), TopicPartition("apps", 1)


async def test_commits_the_offset_after_the_last_handled_record_of_each_partition():
    consumer = Consumer({A0, A1})
    committer = OffsetCommitter(lambda: consumer, "test")
    committer.handled([Record("apps", 0, 5), Record("apps", 0, 7), Record("apps", 1, 2)])
    await committer.flush(1)
    assert consumer.commits == [{A0: 8, A1: 3}]


async def test_a_hung_commit_does_not_hold_up_the_work_and_the_next_commit_covers_all():
    consumer = Consumer({A0, A1})
    consumer.gate.clear()  # the coordinator hangs
    committer = OffsetCommitter(lambda: consumer, "test")
    committer.handled([Record("apps", 0, 1)])
    await asyncio.sleep(0)
    # handled() returns at once while the first commit waits; later batches queue up.
    committer.handled([Record("apps", 0, 2)])
    committer.handled([Record("apps", 1, 9)])
    await committer.flush(0.05)  # bounded: returns although nothing could be committed
    assert consumer.commits == []
    consumer.gate.set()
    await committer.flush(1)
    assert consumer.commits == [{A0: 2}, {A0: 3, A1: 10}]


async def test_partitions_taken_away_by_a_rebalance_are_not_committed():
    consumer = Consumer({A1})
    committer = OffsetCommitter(lambda: consumer, "test")
    committer.handled([Record("apps", 0, 4), Record("apps", 1, 4)])
    await committer.flush(1)
    assert consumer.commits == [{A1: 5}]


async def test_a_failed_commit_is_logged_and_later_commits_still_run():
    consumer = Consumer({A0})
    consumer.fail = True
    committer = OffsetCommitter(lambda: consumer, "test")
    committer.handled([Record("apps", 0, 1)])
    await committer.flush(1)
    consumer.fail = False
    committer.handled([Record("apps", 0, 2)])
    await committer.flush(1)
    assert consumer.commits == [{A0: 3}]


async def test_nothing_is_committed_before_the_consumer_exists():
    committer = OffsetCommitter(lambda: None, "test")
    committer.handled([Record("apps", 0, 1)])
    await committer.flush(1)  # returns; nothing to commit to
