"""enrolment-sync: keeps the enrolment projection current and re-decides what it changes."""

from ptsp_gate.runtime.registry import ServiceEntry

SERVICE = ServiceEntry(
    name="enrolment-sync", default_port=9102, wiring="ptsp_gate_enrolment_sync.app:spec"
)
