"""ptsp-gate: BPJS Ketenagakerjaan compliance gate for business permits."""

__version__ = "0.1.0"
