"""Per partition of a consumer: when it last moved, whether records wait for it, and how often
the batch starting at the same offset has failed.

Kept per partition because a consumer reads several: a poison record holds back only its own
partition, while batches of the others succeed in between. Counted for the whole consumer, those
successes would reset the count (the poison would never be isolated) and hide the stall.
Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Mapping


class PartitionProgress:
    def __init__(self, now: float) -> None:
        self._since = now  # a partition not yet handled counts from here
        self._moved: dict[int, float] = {}
        self._lags: dict[int, int] = {}
        self._rewound: set[int] = set()  # failed last time; records wait for the retry
        self._busy: set[int] = set()  # a batch in hand: fetched (no lag left), not yet handled
        self._failures: dict[int, tuple[int, int]] = {}  # partition -> (first offset, count)

    def begin(self, starts: Mapping[int, int]) -> None:
        """A batch with these partitions (first offset of each) is being handled: its records
        no longer show as lag, but they are work."""
        self._busy.update(starts)

    def handled(self, starts: Mapping[int, int], now: float) -> None:
        """A batch with these partitions is done."""
        for partition in starts:
            self._busy.discard(partition)
            self._moved[partition] = now
            self._rewound.discard(partition)
            self._failures.pop(partition, None)

    def failed(self, starts: Mapping[int, int]) -> int:
        """A batch failed and is rewound; returns how many times in a row, at most, one of its
        partitions has now failed from the same offset."""
        worst = 0
        for partition, offset in starts.items():
            self._busy.discard(partition)
            held = self._failures.get(partition)
            count = held[1] + 1 if held is not None and held[0] == offset else 1
            self._failures[partition] = (offset, count)
            self._rewound.add(partition)
            worst = max(worst, count)
        return worst

    def rewound(self, starts: Mapping[int, int]) -> None:
        """A batch failed for a transient reason: rewound, but not counted against a record."""
        for partition in starts:
            self._busy.discard(partition)
            self._failures.pop(partition, None)
            self._rewound.add(partition)

    def sampled(self, lags: Mapping[int, int], now: float) -> None:
        """The lag of every partition assigned now. A partition with nothing waiting is not
        stalled, however long ago it last moved; one no longer assigned is forgotten."""
        self._lags = dict(lags)
        for partition in set(self._failures) | self._rewound:
            if partition not in lags:
                self._failures.pop(partition, None)
                self._rewound.discard(partition)
        for partition, lag in lags.items():
            if lag == 0 and partition not in self._rewound and partition not in self._busy:
                self._moved[partition] = now

    def stalled(self, now: float) -> float:
        """Seconds since the longest-waiting partition with work (lag, a batch in hand, or one
        to retry) last moved; 0 when every partition keeps up or has nothing to do."""
        waiting = {p for p, lag in self._lags.items() if lag > 0} | self._rewound | self._busy
        return max((now - self._moved.get(p, self._since) for p in waiting), default=0.0)
