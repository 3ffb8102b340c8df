"""Domain metrics. Their names are contract: dashboards and alert rules depend on them.

With `PROMETHEUS_MULTIPROC_DIR` set (as `ptsp-gate run --workers N` does), prometheus-client keeps
every value in a per-process file in that directory and `/metrics` merges them: counters and
histograms add up, and each gauge states how its per-worker values combine.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess

from ptsp_gate import __version__

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "ptsp_gate_decisions",
            "Compliance decisions committed, by outcome and action.",
            ["outcome", "action"],
            registry=r,
        )
        self.block_reasons = Counter(
            "ptsp_gate_block_reasons",
            "Blocking reasons on committed BLOCKED decisions (one per reason).",
            ["reason"],
            registry=r,
        )
        self.decision_latency = Histogram(
            "ptsp_gate_decision_latency_seconds",
            "Time from the input event's time to its decision being committed.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.enrolment_updates = Counter(
            "ptsp_gate_enrolment_updates",
            "Enrolment records received: applied, stale (older or equal version) or invalid.",
            ["result"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "ptsp_gate_outbox_pending",
            "Outbox rows (decisions and DLQ records) not yet published to Kafka.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "ptsp_gate_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row; 0 when the outbox is empty.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.outbox_parked = Gauge(
            "ptsp_gate_outbox_parked_rows",
            "Outbox rows the broker refused for a permanent reason, set aside in outbox_parked "
            "(see `ptsp-gate outbox parked`); 0 when none.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.outbox_published = Counter(
            "ptsp_gate_outbox_published",
            "Outbox rows published to Kafka, by kind.",
            ["kind"],
            registry=r,
        )
        self.dlq_messages = Counter(
            "ptsp_gate_dlq_messages",
            "Input records sent to a dead-letter topic, by DLQ topic and error code.",
            ["topic", "error"],
            registry=r,
        )
        self.duplicates = Counter(
            "ptsp_gate_duplicates_absorbed",
            "Input events absorbed as redeliveries of an event already handled (same ce_id, same "
            "content), by topic. Another event under a used ce_id is not counted here: it is "
            "dead-lettered as ID_CONFLICT (ptsp_gate_dlq_messages_total).",
            ["topic"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "ptsp_gate_consumer_lag_messages",
            "Records in the partition not yet consumed by this service's group.",
            ["group", "topic", "partition"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.consumer_stalled = Gauge(
            "ptsp_gate_consumer_stalled_seconds",
            "Seconds since the service's consumer last handled a batch, while records wait for it "
            "(lag) or a failed batch waits for its retry; 0 while it keeps up.",
            ["service"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.retries = Counter(
            "ptsp_gate_transient_failures",
            "Batches that failed and will be retried (an outage, or a record whose batch is about "
            "to be taken apart), by component.",
            ["component"],
            registry=r,
        )
        self.redecisions = Counter(
            "ptsp_gate_redecisions",
            "Superseding decisions emitted after an enrolment change or by the sweep, by old and "
            "new outcome.",
            ["from_outcome", "to_outcome"],
            registry=r,
        )
        self.sweep_runs = Counter(
            "ptsp_gate_sweep_runs",
            "Runs of the periodic re-decision sweep of PENDING applications, by result.",
            ["result"],
            registry=r,
        )
        self.import_rows = Gauge(
            "ptsp_gate_enrolment_import_rows",
            "Rows of bulk enrolment imports recorded in the database, by result "
            "(applied, stale, rejected), summed over all import runs.",
            ["result"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.import_redecisions = Gauge(
            "ptsp_gate_enrolment_import_redecisions",
            "Superseding decisions emitted by bulk enrolment imports, summed over all import runs "
            "(imports run as a command; the services read this from the database).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.records_received = Counter(
            "ptsp_gate_records_received",
            "Input records handed to the service by Kafka, before deduplication, by topic. "
            "Redelivered records count again.",
            ["topic"],
            registry=r,
        )
        self.enrolment_newest_as_of = Gauge(
            "ptsp_gate_enrolment_newest_as_of_timestamp_seconds",
            "Newest as_of (Unix time) in the enrolment projection: how fresh BPJS TK's data is.",
            multiprocess_mode="livemax",
            registry=None,  # see expose_enrolment_projection()
        )
        self.enrolment_records = Gauge(
            "ptsp_gate_enrolment_records",
            "Employers in the enrolment projection, by freshness against the national policy's "
            "maximum enrolment age (fresh or stale).",
            ["freshness"],
            multiprocess_mode="livemax",
            registry=None,  # see expose_enrolment_projection()
        )
        # A gauge, not prometheus-client's Info: Info cannot be shared between worker processes.
        self.build_info = Gauge(
            "ptsp_gate_build_info",
            "Always 1; the labels carry the running version and the national policy's version.",
            ["version", "policy_version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self._lag_series: set[tuple[str, str, str]] = set()
        self._projection_exposed = False

    def expose_enrolment_projection(self) -> None:
        """Add the projection's freshness gauges. Only enrolment-sync reads the projection; on
        permit-checker they would sit at 0 and mislead whoever reads its /metrics."""
        if not self._projection_exposed:
            self.registry.register(self.enrolment_newest_as_of)
            self.registry.register(self.enrolment_records)
            self._projection_exposed = True

    def set_build(self, policy_version: str) -> None:
        self.build_info.labels(__version__, policy_version).set(1)

    def set_lag(self, group: str, lags: dict[tuple[str, int], int]) -> None:
        """Replace the consumer-lag series with the partitions this process holds now."""
        current = {(group, topic, str(partition)) for topic, partition in lags}
        for labels in self._lag_series - current:
            if multiprocess_dir():
                # A worker's file cannot drop a series; 0 loses to the new owner's value under max.
                self.consumer_lag.labels(*labels).set(0)
            else:
                self.consumer_lag.remove(*labels)
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(group, topic, str(partition)).set(lag)
        self._lag_series = current

    def exposition_registry(self) -> CollectorRegistry:
        """What /metrics serves: this process's registry, or every worker's values merged."""
        path = multiprocess_dir()
        if path is None:
            return self.registry
        merged = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]
        return merged


def mark_process_dead(pid: int) -> None:
    """Drop a finished worker's live gauges from the merged view."""
    path = multiprocess_dir()
    if path is not None:
        prometheus_multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
