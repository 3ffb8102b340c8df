"""The `ptsp-gate` command."""
