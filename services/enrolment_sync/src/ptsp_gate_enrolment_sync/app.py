"""Wiring of the enrolment-sync service."""

from __future__ import annotations

from ptsp_gate.config import Settings
from ptsp_gate.policy import PolicyBook
from ptsp_gate.runtime.service import ServiceSpec
from ptsp_gate_enrolment_sync.projection_metrics import projection_metrics_refresher
from ptsp_gate_enrolment_sync.sync import EnrolmentSync


def spec(settings: Settings, policies: PolicyBook) -> ServiceSpec:
    return ServiceSpec(
        name="enrolment-sync",
        topic=settings.topic_enrolment,
        group=settings.group_enrolment_sync,
        policies=policies,
        make_handler=EnrolmentSync,
        background=lambda pool, ctx: projection_metrics_refresher(
            pool,
            ctx.metrics,
            max_age_days=policies.national.max_enrolment_age_days,
            window_days=settings.redecide_window_days,
        ),
    )
