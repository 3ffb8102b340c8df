"""What a service instance reports about itself: its Prometheus series, and the partitions its log
says it was assigned."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Sequence
from pathlib import Path

# Sums over all label sets of a few of the service's Prometheus series.
SCRAPED = {
    "records": "faststream_received_messages_total",
    "batches": "faststream_received_processed_messages_duration_seconds_count",
    "handler_s": "faststream_received_processed_messages_duration_seconds_sum",
    "retries": "ptsp_gate_transient_failures_total",
    "published": "ptsp_gate_outbox_published_total",
}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    totals = dict.fromkeys(SCRAPED, 0.0)
    by_name = {name: key for key, name in SCRAPED.items()}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in by_name:
            totals[by_name[name]] += float(line.rsplit(" ", 1)[1])
    return totals


def scrape_all(ports: Sequence[int]) -> list[dict[str, float]]:
    """One scrape per instance."""
    return [scrape(port) for port in ports]


def summed(scrapes: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: sum(one.get(key, 0.0) for one in scrapes) for key in SCRAPED}


def consumer_batches(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What the service's consumer did between two scrapes: batches, mean size, mean handling."""
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    return {
        "records": d["records"],
        "batches": d["batches"],
        "mean_records": d["records"] / d["batches"] if d["batches"] else 0.0,
        "mean_handler_ms": 1000 * d["handler_s"] / d["batches"] if d["batches"] else 0.0,
        "retries": d["retries"],
        "published": d["published"],
    }


# FastStream logs every assignment its consumer gets (not the revocations):
#   Consumer <member id> assigned to partitions: (TopicPartition(topic='t', partition=3), ...)
ASSIGNED_LINE = "assigned to partitions:"


def assignments(log_path: Path, topic: str) -> list[frozenset[int]]:
    """The partitions of `topic` in each assignment a service instance logged, oldest first."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    pattern = re.compile(r"topic='" + re.escape(topic) + r"', partition=(\d+)\)")
    return [
        frozenset(int(n) for n in pattern.findall(line))
        for line in text.splitlines()
        if ASSIGNED_LINE in line
    ]


def latest_assignment(log_path: Path, topic: str) -> frozenset[int] | None:
    """The partitions an instance holds now, as far as its log says (None: none logged yet)."""
    logged = assignments(log_path, topic)
    return logged[-1] if logged else None
