"""Per-partition progress: poison counted per partition, stalls seen per partition."""

from __future__ import annotations

from ptsp_gate.runtime.progress import PartitionProgress


def test_a_poison_partition_is_counted_although_other_partitions_succeed_in_between() -> None:
    p = PartitionProgress(now=0)
    assert p.failed({0: 100, 1: 500}) == 1
    p.handled({1: 500}, now=1)  # partition 1's records come back first and go through
    assert p.failed({0: 100, 1: 530}) == 2  # partition 0 fails from offset 100 again


def test_moving_on_resets_the_count() -> None:
    p = PartitionProgress(now=0)
    p.failed({0: 100})
    p.handled({0: 100}, now=1)
    assert p.failed({0: 150}) == 1
    assert p.failed({0: 150}) == 2
    assert p.failed({0: 160}) == 1  # another offset: another record


def test_transient_failures_are_not_counted_against_a_record() -> None:
    p = PartitionProgress(now=0)
    p.failed({0: 100})
    p.rewound({0: 100})
    assert p.failed({0: 100}) == 1


def test_stalled_counts_only_partitions_with_work() -> None:
    p = PartitionProgress(now=0)
    p.sampled({0: 0, 1: 0}, now=10)
    p.sampled({0: 0, 1: 0}, now=505)
    assert p.stalled(now=507) == 0  # idle for a long time is not stuck
    p.sampled({0: 5, 1: 0}, now=510)
    assert p.stalled(now=515) == 10  # since it was last seen with nothing to do
    p.handled({0: 1}, now=520)
    p.sampled({0: 5, 1: 0}, now=525)
    assert p.stalled(now=530) == 10


def test_a_rewound_batch_is_work_even_without_lag() -> None:
    p = PartitionProgress(now=0)
    p.sampled({0: 0}, now=1)
    p.failed({0: 7})
    p.sampled({0: 0}, now=50)  # the consumer's position is back at 7: the sample may say 0
    assert p.stalled(now=60) == 59


def test_a_partition_taken_away_is_forgotten() -> None:
    p = PartitionProgress(now=0)
    p.failed({0: 7})
    p.sampled({1: 0}, now=5)
    assert p.stalled(now=100) == 0
    assert p.failed({0: 7}) == 1


def test_a_batch_in_hand_is_work_although_it_is_no_longer_lag() -> None:
    # A handler hanging on a lock: its records were fetched, so the lag reads 0.
    p = PartitionProgress(now=0)
    p.sampled({0: 0}, now=1)
    p.begin({0: 7})
    p.sampled({0: 0}, now=30)
    assert p.stalled(now=31) == 30
    p.handled({0: 7}, now=40)
    assert p.stalled(now=41) == 0
