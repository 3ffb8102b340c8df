"""What one per-decision log line costs, beside the standard-library path it replaced.

Run by hand: `.venv/bin/python bench/log_line_cost.py [--lines N]`. Both paths render the same
fields to the same JSON shape and write to /dev/null, in one process, one after the other:

- ptsp-gate: `decision_log.decided`, as the services call it (structlog straight to the stream);
- baseline: the same fields through a standard-library logger and structlog's ProcessorFormatter
  (a LogRecord per line, then a copy of it), as foreign libraries' lines still go.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, datetime

import structlog

from ptsp_gate.contract.events import Action, ComplianceDecision, Outcome
from ptsp_gate.observability import decision_log
from ptsp_gate.observability import logging as ptsp_logging


class _Record:
    topic = "ptsp.permit-applications.v1"
    partition = 3
    offset = 123_456


def _decision() -> ComplianceDecision:
    return ComplianceDecision.model_construct(
        decision_id="0b6c9a52-3f0e-5b8e-9d1f-6c2f0e8a4b71",
        application_id="APP-2026-000123",
        nib="9120000000001",
        action=Action.NEW,
        region_code="7314",
        outcome=Outcome.CLEARED,
        reasons=[],
        enrolment_as_of=None,
        policy_version="2025.1",
        decided_at=datetime.now(UTC),
        supersedes=None,
    )


def _per_line_us(fn, lines: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(min(lines, 1000)):  # warm caches
        fn()
    start = time.perf_counter()
    for _ in range(lines):
        fn()
    return (time.perf_counter() - start) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    args = parser.parse_args()

    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    real_stderr, sys.stderr = sys.stderr, sink
    ptsp_logging.configure("INFO", "json")
    decision, record = _decision(), _Record()
    ours = _per_line_us(lambda: decision_log.decided(decision, "evt-1", record), args.lines)

    baseline_logger = logging.getLogger("bench.baseline")
    fields = {
        "event_id": "evt-1",
        "decision_id": decision.decision_id,
        "application_id": decision.application_id,
        "nib": decision.nib,
        "action": "NEW",
        "region_code": decision.region_code,
        "outcome": "CLEARED",
        "reasons": [],
        "policy_version": decision.policy_version,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }
    baseline = _per_line_us(lambda: baseline_logger.info("decision", extra=fields), args.lines)
    sys.stderr = real_stderr
    print(f"lines        {args.lines:,} each, JSON to /dev/null, structlog {structlog.__version__}")
    print(f"ptsp-gate    {ours:6.1f} µs a line")
    print(f"baseline     {baseline:6.1f} µs a line (standard-library record + ProcessorFormatter)")
    print(f"ratio        {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
