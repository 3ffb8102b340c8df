"""A handler run without infrastructure: Kafka records made in memory and a handler context over
the in-memory store, so a service's batch logic is unit-tested the way it runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ptsp_gate.config import Settings
from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.policy import PolicyBook, load_policy_book
from ptsp_gate.runtime.context import HandlerContext
from ptsp_gate.stores.memory import MemoryState, memory_transactions


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka record (what `RawRecord` asks for)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class Partition:
    """Hands out records of one topic partition at growing offsets."""

    topic: str
    number: int = 0
    next_offset: int = 0

    def record(
        self, key: bytes | None, headers: Sequence[tuple[str, bytes]], value: bytes | None
    ) -> Record:
        made = Record(self.topic, self.number, self.next_offset, key, value, tuple(headers))
        self.next_offset += 1
        return made


@dataclass
class InMemory:
    """A handler context over fresh in-memory state, with its own metrics."""

    settings: Settings = field(default_factory=Settings)
    policies: PolicyBook = field(default_factory=lambda: load_policy_book(None))
    state: MemoryState = field(default_factory=MemoryState)
    metrics: Metrics = field(default_factory=Metrics)
    now: datetime | None = None  # a fixed clock; None: the real one

    def applications(self) -> Partition:
        return Partition(self.settings.topic_applications)

    def enrolments(self) -> Partition:
        return Partition(self.settings.topic_enrolment)

    def context(self) -> HandlerContext:
        ctx = HandlerContext.from_settings(
            self.settings,
            transactions=memory_transactions(self.state),
            metrics=self.metrics,
            policies=self.policies,
        )
        fixed = self.now
        return ctx if fixed is None else dataclasses.replace(ctx, clock=lambda: fixed)
