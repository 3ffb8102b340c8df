"""Domain metrics. Their names are contract: dashboards and alert rules depend on them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from ptsp_gate import __version__

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
            registry=r,
        )
        self.outbox_oldest_age = Gauge(
            "ptsp_gate_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row; 0 when the outbox is empty.",
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
        self.consumer_lag = Gauge(
            "ptsp_gate_consumer_lag_messages",
            "Records in the partition not yet consumed by this service's group.",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.retries = Counter(
            "ptsp_gate_transient_failures",
            "Batches that failed for a transient reason and will be retried, by component.",
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
            registry=r,
        )
        self.import_redecisions = Gauge(
            "ptsp_gate_enrolment_import_redecisions",
            "Superseding decisions emitted by bulk enrolment imports, summed over all import runs "
            "(imports run as a command; the services read this from the database).",
            registry=r,
        )
        self.build = Info("ptsp_gate_build", "Build and policy information.", registry=r)
        self.build.info({"version": __version__})
