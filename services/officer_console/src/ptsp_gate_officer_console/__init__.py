"""officer-console: the compliance officers' web workspace and JSON API."""

from ptsp_gate.runtime.registry import ServiceEntry

SERVICE = ServiceEntry(
    name="officer-console",
    default_port=9103,
    wiring="ptsp_gate_officer_console.app:create",
    kind="web",
)
