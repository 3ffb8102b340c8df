"""Metrics, logs and HTTP probes."""
