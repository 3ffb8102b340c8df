"""Wiring of the permit-checker service."""

from __future__ import annotations

from ptsp_gate.config import Settings
from ptsp_gate.policy import PolicyBook
from ptsp_gate.runtime.service import ServiceSpec
from ptsp_gate_permit_checker.checker import PermitChecker
from ptsp_gate_permit_checker.sweep import background


def spec(settings: Settings, policies: PolicyBook) -> ServiceSpec:
    return ServiceSpec(
        name="permit-checker",
        topic=settings.topic_applications,
        group=settings.group_permit_checker,
        policies=policies,
        make_handler=PermitChecker,
        background=lambda _pool, ctx: background(
            ctx, settings.sweep_interval_s, settings.override_poll_s
        ),
    )
