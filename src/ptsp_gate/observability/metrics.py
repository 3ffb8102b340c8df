"""Domain metrics. Their names are contract: dashboards and alert rules depend on them.

With `PROMETHEUS_MULTIPROC_DIR` set (as `ptsp-gate run --workers N` does), prometheus-client keeps
every value in a per-process file in that directory and `/metrics` merges them: counters and
histograms add up, and a gauge shows the highest value among the live workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess

from ptsp_gate import __version__

if TYPE_CHECKING:
    from ptsp_gate.stores.coverage import RegionNow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)

_OPTIONS: dict[type[Counter | Gauge | Histogram], dict[str, Any]] = {
    Counter: {},
    # A worker that does not hold what a gauge measures reports 0 or the same value (see
    # set_lag), so the highest value among live workers is the one to show.
    Gauge: {"multiprocess_mode": "livemax"},
    # The only histogram is a latency.
    Histogram: {"buckets": LATENCY_BUCKETS},
}


@dataclass(frozen=True)
class _Declared(Generic[_Metric]):
    """One metric of `Metrics`, as /metrics shows it. Each `Metrics` builds its own from it, in
    the order of declaration, which is the order /metrics lists them in."""

    kind: type[_Metric]
    name: str
    labels: tuple[str, ...]
    documentation: str
    registered: bool = field(default=True, kw_only=True)

    def build(self, registry: CollectorRegistry) -> _Metric:
        return self.kind(
            self.name,
            self.documentation,
            self.labels,
            registry=registry if self.registered else None,
            **_OPTIONS[self.kind],
        )

    @overload
    def __get__(self, instance: None, owner: type[Metrics]) -> _Declared[_Metric]: ...
    @overload
    def __get__(self, instance: Metrics, owner: type[Metrics]) -> _Metric: ...
    def __get__(
        self, instance: Metrics | None, owner: type[Metrics]
    ) -> _Declared[_Metric] | _Metric:
        # `Metrics.__init__` sets each built metric on the instance, which shadows this; only a
        # lookup on the class itself comes here.
        if instance is None:
            return self
        raise AttributeError(self.name)


class Metrics:
    decisions = _Declared(
        Counter,
        "ptsp_gate_decisions",
        ("outcome", "action"),
        "Compliance decisions committed, by outcome and action.",
    )
    block_reasons = _Declared(
        Counter,
        "ptsp_gate_block_reasons",
        ("reason",),
        "Blocking reasons on committed BLOCKED decisions (one per reason).",
    )
    decision_latency = _Declared(
        Histogram,
        "ptsp_gate_decision_latency_seconds",
        (),
        "Time from the input event's time to its decision being committed.",
    )
    enrolment_updates = _Declared(
        Counter,
        "ptsp_gate_enrolment_updates",
        ("result",),
        "Enrolment records received: applied, stale (older or equal version) or invalid.",
    )
    outbox_pending = _Declared(
        Gauge,
        "ptsp_gate_outbox_pending",
        (),
        "Outbox rows (decisions and DLQ records) not yet published to Kafka.",
    )
    outbox_oldest_age = _Declared(
        Gauge,
        "ptsp_gate_outbox_oldest_age_seconds",
        (),
        "Age of the oldest unpublished outbox row; 0 when the outbox is empty.",
    )
    outbox_parked = _Declared(
        Gauge,
        "ptsp_gate_outbox_parked_rows",
        (),
        "Outbox rows the broker refused for a permanent reason, set aside in outbox_parked "
        "(see `ptsp-gate outbox parked`); 0 when none.",
    )
    outbox_published = _Declared(
        Counter,
        "ptsp_gate_outbox_published",
        ("kind",),
        "Outbox rows published to Kafka, by kind.",
    )
    dlq_messages = _Declared(
        Counter,
        "ptsp_gate_dlq_messages",
        ("topic", "error"),
        "Input records sent to a dead-letter topic, by DLQ topic and error code.",
    )
    duplicates = _Declared(
        Counter,
        "ptsp_gate_duplicates_absorbed",
        ("topic",),
        "Input events absorbed as redeliveries of an event already handled (same ce_id, same "
        "content), by topic. Another event under a used ce_id is not counted here: it is "
        "dead-lettered as ID_CONFLICT (ptsp_gate_dlq_messages_total).",
    )
    consumer_lag = _Declared(
        Gauge,
        "ptsp_gate_consumer_lag_messages",
        ("group", "topic", "partition"),
        "Records in the partition not yet consumed by this service's group.",
    )
    consumer_stalled = _Declared(
        Gauge,
        "ptsp_gate_consumer_stalled_seconds",
        ("service",),
        "Seconds since the service's consumer last handled a batch, while records wait for it "
        "(lag) or a failed batch waits for its retry; 0 while it keeps up.",
    )
    retries = _Declared(
        Counter,
        "ptsp_gate_transient_failures",
        ("component",),
        "Batches that failed and will be retried (an outage, or a record whose batch is about "
        "to be taken apart), by component.",
    )
    redecisions = _Declared(
        Counter,
        "ptsp_gate_redecisions",
        ("from_outcome", "to_outcome"),
        "Superseding decisions emitted after an enrolment change or by the sweep, by old and "
        "new outcome.",
    )
    sweep_runs = _Declared(
        Counter,
        "ptsp_gate_sweep_runs",
        ("result",),
        "Runs of the periodic re-decision sweep of PENDING applications, by result.",
    )
    override_settles = _Declared(
        Counter,
        "ptsp_gate_override_settle_runs",
        ("result",),
        "Runs of the permit checker's settling of officer overrides (deciding again the "
        "applications of overrides granted or ended), by result.",
    )
    import_rows = _Declared(
        Gauge,
        "ptsp_gate_enrolment_import_rows",
        ("result",),
        "Rows of bulk enrolment imports recorded in the database, by result "
        "(applied, stale, rejected), summed over all import runs.",
    )
    import_redecisions = _Declared(
        Gauge,
        "ptsp_gate_enrolment_import_redecisions",
        (),
        "Superseding decisions emitted by bulk enrolment imports, summed over all import runs "
        "(imports run as a command; the services read this from the database).",
    )
    records_received = _Declared(
        Counter,
        "ptsp_gate_records_received",
        ("topic",),
        "Input records handed to the service by Kafka, before deduplication, by topic. "
        "Redelivered records count again.",
    )
    enrolment_newest_as_of = _Declared(
        Gauge,
        "ptsp_gate_enrolment_newest_as_of_timestamp_seconds",
        (),
        "Newest as_of (Unix time) in the enrolment projection: how fresh BPJS TK's data is.",
        registered=False,  # see expose_enrolment_projection()
    )
    enrolment_records = _Declared(
        Gauge,
        "ptsp_gate_enrolment_records",
        ("freshness",),
        "Employers in the enrolment projection, by freshness against the national policy's "
        "maximum enrolment age (fresh or stale).",
        registered=False,  # see expose_enrolment_projection()
    )
    flagged_employers = _Declared(
        Gauge,
        "ptsp_gate_flagged_employers",
        ("region",),
        "Employers flagged now (latest decision BLOCKED, a blocked application still within the "
        "re-decision window), by region.",
        registered=False,  # see expose_enrolment_projection()
    )
    coverage_flagged = _Declared(
        Gauge,
        "ptsp_gate_coverage_flagged_90d",
        ("region",),
        "Flagged episodes that began in the last 90 days, by region.",
        registered=False,  # see expose_enrolment_projection()
    )
    coverage_cleared = _Declared(
        Gauge,
        "ptsp_gate_coverage_cleared_90d",
        ("region",),
        "Of the flagged episodes that began in the last 90 days, those since cleared, by region.",
        registered=False,  # see expose_enrolment_projection()
    )
    coverage_days_to_clear = _Declared(
        Gauge,
        "ptsp_gate_coverage_median_days_to_clear_90d",
        ("region",),
        "Median days from flagged to cleared, over the flagged episodes that began in the last "
        "90 days and were cleared, by region (absent where none was cleared).",
        registered=False,  # see expose_enrolment_projection()
    )
    # The officer console's, registered by expose_console(): only that service serves requests.
    console_requests = _Declared(
        Counter,
        "ptsp_gate_console_requests_total",
        ("route", "method", "status"),
        "Requests the officer console answered, by route template, method and status code.",
        registered=False,
    )
    console_request_duration = _Declared(
        Histogram,
        "ptsp_gate_console_request_duration_seconds",
        ("route", "method"),
        "Time the officer console took to answer a request, by route template and method.",
        registered=False,
    )
    console_failed_logins = _Declared(
        Counter,
        "ptsp_gate_console_failed_logins_total",
        ("reason",),
        "Sign-ins refused: wrong_password, unknown_account, locked, disabled or throttled.",
        registered=False,
    )
    # A gauge, not prometheus-client's Info: Info cannot be shared between worker processes.
    build_info = _Declared(
        Gauge,
        "ptsp_gate_build_info",
        ("version", "policy_version"),
        "Always 1; the labels carry the running version and the national policy's version.",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        for attribute, declared in vars(Metrics).items():
            if isinstance(declared, _Declared):
                setattr(self, attribute, declared.build(self.registry))
        self._lag_series: set[tuple[str, str, str]] = set()
        self._projection_exposed = False
        self._console_exposed = False

    def expose_enrolment_projection(self) -> None:
        """Add the gauges read from the projections (the enrolment data's freshness, coverage per
        region). Only enrolment-sync reads them; on permit-checker they would sit at 0 and
        mislead whoever reads its /metrics."""
        if not self._projection_exposed:
            self.registry.register(self.enrolment_newest_as_of)
            self.registry.register(self.enrolment_records)
            self.registry.register(self.flagged_employers)
            self.registry.register(self.coverage_flagged)
            self.registry.register(self.coverage_cleared)
            self.registry.register(self.coverage_days_to_clear)
            self._projection_exposed = True

    def expose_console(self) -> None:
        """Add the officer console's request and sign-in metrics, with their series from the
        start (so that rate() sees the first failed sign-in)."""
        if self._console_exposed:
            return
        self.registry.register(self.console_requests)
        self.registry.register(self.console_request_duration)
        self.registry.register(self.console_failed_logins)
        for reason in (
            "wrong_password",
            "unknown_account",
            "locked",
            "disabled",
            "throttled",
            "sso_refused",
        ):
            self.console_failed_logins.labels(reason)
        self._console_exposed = True

    def set_build(self, policy_version: str) -> None:
        self.build_info.labels(__version__, policy_version).set(1)

    def set_coverage(self, regions: Sequence[RegionNow]) -> None:
        """Coverage per region, replacing what the last refresh set (a region may drop out)."""
        gauges = (
            self.flagged_employers,
            self.coverage_flagged,
            self.coverage_cleared,
            self.coverage_days_to_clear,
        )
        for gauge in gauges:
            gauge.clear()
        for r in regions:
            self.flagged_employers.labels(r.region_code).set(r.flagged_now)
            self.coverage_flagged.labels(r.region_code).set(r.flagged_recently)
            self.coverage_cleared.labels(r.region_code).set(r.cleared_recently)
            if r.median_days_to_clear is not None:
                self.coverage_days_to_clear.labels(r.region_code).set(r.median_days_to_clear)

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
