"""The services by name, as `ptsp-gate run NAME` knows them."""

from __future__ import annotations

from ptsp_gate.config import Settings
from ptsp_gate.policy import PolicyBook
from ptsp_gate.services.runtime import ServiceSpec

NAMES = ("permit-checker", "enrolment-sync")


def spec_for(name: str, settings: Settings, policies: PolicyBook) -> ServiceSpec:
    if name == "permit-checker":
        from ptsp_gate.services.permit_checker import app as checker_app

        return checker_app.spec(settings, policies)
    if name == "enrolment-sync":
        from ptsp_gate.services.enrolment_sync import app as sync_app

        return sync_app.spec(settings, policies)
    raise ValueError(f"unknown service {name!r}; expected one of {', '.join(NAMES)}")
