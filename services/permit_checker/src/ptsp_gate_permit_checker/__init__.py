"""permit-checker: decides each permit application against the enrolment projection."""

from ptsp_gate.runtime.registry import ServiceEntry

SERVICE = ServiceEntry(
    name="permit-checker", default_port=9101, wiring="ptsp_gate_permit_checker.app:spec"
)
