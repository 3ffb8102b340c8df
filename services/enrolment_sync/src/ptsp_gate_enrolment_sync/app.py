"""Wiring of the enrolment-sync service."""

from __future__ import annotations

from ptsp_gate.config import Settings
from ptsp_gate.policy import PolicyBook
from ptsp_gate.runtime.service import ServiceSpec
from ptsp_gate_enrolment_sync.projection_metrics import projection_metrics_refresher
from ptsp_gate_enrolment_sync.sync import EnrolmentSync

NAME = "enrolment-sync"


def spec(settings: Settings, policies: PolicyBook) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        topic=settings.topic_enrolment,
        group=settings.group_enrolment_sync,
        make_handler=lambda pool, metrics: EnrolmentSync(
            pool=pool,
            metrics=metrics,
            dlq_topic=settings.dlq_topic,
            max_event_bytes=settings.max_event_bytes,
            policies=policies,
            redecide_window_days=settings.redecide_window_days,
            decisions_topic=settings.topic_decisions,
            event_source=settings.event_source,
        ),
        policy_version=str(policies.national.version),
        background=lambda pool, metrics: projection_metrics_refresher(
            pool, metrics, max_age_days=policies.national.max_enrolment_age_days
        ),
    )
