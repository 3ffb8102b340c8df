"""Wiring of the permit-checker service."""

from __future__ import annotations

from ptsp_gate.config import Settings
from ptsp_gate.policy import PolicyBook
from ptsp_gate.runtime.service import ServiceSpec
from ptsp_gate_permit_checker.checker import PermitChecker
from ptsp_gate_permit_checker.sweep import sweeper

NAME = "permit-checker"


def spec(settings: Settings, policies: PolicyBook) -> ServiceSpec:
    return ServiceSpec(
        name=NAME,
        topic=settings.topic_applications,
        group=settings.group_permit_checker,
        make_handler=lambda pool, metrics: PermitChecker(
            pool=pool,
            policies=policies,
            metrics=metrics,
            decisions_topic=settings.topic_decisions,
            dlq_topic=settings.dlq_topic,
            event_source=settings.event_source,
            max_event_bytes=settings.max_event_bytes,
            # One pool connection stays free for readiness checks and the sweep.
            parallel=max(settings.db_pool_size - 1, 1),
        ),
        policy_version=str(policies.national.version),
        background=lambda pool, metrics: sweeper(pool, metrics, settings, policies),
    )
