"""The report of a run: the goals, the lines printed at the end, and the result file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .options import engine_name

BENCH_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BENCH_DIR / "results"

GOAL_RATE = 10_000  # decisions/s
GOAL_RATIO = 0.5  # ptsp-gate rate / raw pipe rate
GOAL_LATENCY_RATE = 500.0  # events/s of the phase C run the latency goal applies to
GOAL_P99_MS = 50.0  # p99 latency at GOAL_LATENCY_RATE


def judge(result: dict[str, Any]) -> None:
    """The ratio to the raw pipe and the verdict on each goal, into `result`."""
    raw = result.get("phase_a")
    rate = result["phase_b"]["rate"]
    result["ratio"] = rate / raw["rate"] if raw else None
    result["goals"] = {
        "rate": "PASS" if rate >= GOAL_RATE else "MISS",
        "ratio": "n/a" if raw is None else ("PASS" if result["ratio"] >= GOAL_RATIO else "MISS"),
        "latency": latency_goal(result.get("phase_c") or []),
    }


def save(result: dict[str, Any], stamp: str, logs: Path) -> Path:
    """`result` as RESULTS_DIR/<stamp>.json, which it names (with the logs) itself."""
    path = RESULTS_DIR / f"{stamp}.json"
    result["results_file"] = str(path.relative_to(BENCH_DIR.parent))
    result["logs"] = str(logs.relative_to(BENCH_DIR.parent))
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def latency_goal(runs: Sequence[dict[str, Any]]) -> str:
    """PASS/MISS for the p99 goal, from the runs at exactly GOAL_LATENCY_RATE (every one must
    meet it); n/a without such a run."""
    at_goal = [
        run
        for run in runs
        if run["rate_spec"] != "half" and math.isclose(run["rate"], GOAL_LATENCY_RATE)
    ]
    if not at_goal:
        return f"n/a (no run at {GOAL_LATENCY_RATE:.0f}/s)"
    met = all(
        run["latency_ms"] is not None and run["latency_ms"]["p99"] <= GOAL_P99_MS for run in at_goal
    )
    return "PASS" if met else "MISS"


def _fmt_ms(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 10_000 else f"{ms:.0f} ms"


def _fmt_lat(p: dict[str, float] | None, keys: tuple[str, ...]) -> str:
    if p is None:
        return "(none)"
    return "  ".join(f"{k} {_fmt_ms(p[k])}" for k in keys)


def _cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _batches(c: dict[str, float] | None) -> str:
    if not c:
        return ""
    return (
        f"; consumer: {c['batches']:,.0f} batches of {c['mean_records']:,.0f} records, "
        f"{c['mean_handler_ms']:.1f} ms each"
        + (f", {c['retries']:.0f} retries" if c["retries"] else "")
    )


def _per_instance(values: list[float], fmt: str) -> str:
    return " + ".join(format(v, fmt) for v in values)


def _group_lines(r: dict[str, Any]) -> list[str]:
    """With several instances: how the group split the partitions and the work."""
    grp, b = r.get("group"), r["phase_b"]
    if not grp:
        return []
    per = b.get("consumer_instances") or []
    rebalanced = [p for p in ("b", "c") if grp.get(f"rebalanced_in_{p}")]
    lines = [
        f"group       {grp['instances']} instances, partitions "
        + " / ".join(",".join(map(str, ps)) for ps in grp["partitions"])
        + "; records in B "
        + " / ".join(f"{one['records']:,.0f}" for one in per)
        + "; decisions published (outbox relay) "
        + " / ".join(f"{one['published']:,.0f}" for one in per)
        + "; "
        + (
            "REBALANCED during phase " + " and ".join(p.upper() for p in rebalanced)
            if rebalanced
            else "no rebalance during the phases"
        )
        + (
            f"; formed at attempt {grp['failed_attempts_to_form'] + 1} (see README)"
            if grp.get("failed_attempts_to_form")
            else ""
        )
    ]
    produced = b.get("produced")
    if produced:
        lines.append(
            f"produced B  {r['setup']['events']:,} events in {produced['seconds']:.1f} s once all "
            f"instances held their partitions; first decision after "
            f"{produced['first_decision_after_s']:.1f} s, production overlaps the window's first "
            f"{produced['overlap_with_window_s']:.1f} s"
        )
    return lines


def _label(text: str) -> str:
    """The report's first column, 12 characters wide."""
    return f"{text:<11} "


def _probes(c: dict[str, Any]) -> str:
    if not c.get("probe_callers"):
        return ""
    answers = c.get("probe_answers") or {}
    total = sum(answers.values())
    return (
        f"; {c['probe_callers']} clients calling /ready: {total / c['seconds']:,.0f} answers/s"
        + (f", {answers.get('error', 0):,} errors" if answers.get("error") else "")
    )


def _latency_lines(c: dict[str, Any]) -> list[str]:
    """The lines of one phase C run; labelled C, or C1, C2, ... with several rates."""
    name = c["name"]
    rate = f"{c['rate']:,.0f}/s" + (" (half of B)" if c["rate_spec"] == "half" else "")
    lines = [
        _label(f"latency {name}")
        + _fmt_lat(c["latency_ms"], ("p50", "p95", "p99", "max"))
        + f"   ({c['sent']:,} events at {rate} for {c['seconds']:g} s"
        + _batches(c.get("consumer"))
        + _probes(c)
        + ")",
        _label(f"floor {name}")
        + _fmt_lat(c["broker_floor_ms"], ("p50", "p95", "p99", "max"))
        + "   (plain consumer on the same broker: what the broker's fetch adds)",
    ]
    if c["median_first_third_ms"] is not None:
        lines.append(
            _label(f"keeps up {name}")
            + f"{'yes' if c['kept_up'] else 'NO'} (median latency, first third "
            f"{_fmt_ms(c['median_first_third_ms'])}, last third "
            f"{_fmt_ms(c['median_last_third_ms'])})"
        )
    return lines


def _trace_line(r: dict[str, Any]) -> str:
    mode = r.get("trace", "off")
    if mode == "off":
        return "off: events carry no trace context"
    if mode == "headers":
        return "headers: every event carries a traceparent; no exporter"
    sink = r.get("otlp_sink") or {}
    return (
        f"export: every event carries a traceparent; spans exported over OTLP/HTTP "
        f"({sink.get('requests', 0):,} requests, {sink.get('bytes', 0) / 1e6:,.1f} MB)"
    )


def render(r: dict[str, Any]) -> str:
    m, s, b, c = r["machine"], r["setup"], r["phase_b"], r.get("phase_c") or []
    raw = r.get("phase_a")
    g = r["goals"]
    instances = s.get("instances", 1)
    several = instances > 1
    profiled = (
        f"  [instance 0 of {instances} under cProfile: not a throughput figure]"
        if several
        else "  [service under cProfile: not a throughput figure]"
    )
    cores = f"{b['service_cores']:.2f} cores"
    if several:
        cores += ": " + _per_instance(b["instances_cores"], ".2f")
    lines = [
        f"ptsp-gate permit-checker benchmark  {r['started_at']}"
        + (profiled if s["profiled"] else ""),
        f"machine     {m['nproc']} CPUs, Python {m['python']}, {m['platform']}",
        f"broker      {engine_name(s.get('engine', 'mock'), s.get('brokers', 1))}"
        + (
            f" (replication {s['replication']}, min.insync.replicas {s['min_insync']})"
            if s.get("engine") == "kafka"
            else ""
        ),
        f"setup       N={s['events']:,} events, {s['partitions']} partitions, {instances} "
        f"{'instances' if several else 'instance'}, batch {s['batch']}, "
        f"{s['employers']:,} employers, PostgreSQL {s['postgres']}",
        f"trace       {_trace_line(r)}",
        "raw pipe    "
        + (
            f"{raw['rate']:>9,.0f} rec/s   ({raw['seconds']:.2f} s, cpu {raw['cpu_s']:.1f} s)"
            if raw
            else "(skipped)"
        ),
        f"ptsp-gate   {b['rate']:>9,.0f} dec/s   ({b['seconds']:.2f} s first→last decision"
        + _batches(b.get("consumer"))
        + ")",
        f"cpu B       service {_cpu(b['service_cpu_s'])} ({cores}), "
        f"postgres {_cpu(b['postgres_cpu_s'])}, broker {_cpu(b['broker_cpu_s'])}"
        + (f" ({b['broker_processes']} processes)" if b.get("broker_processes", 1) > 1 else "")
        + f", bench {_cpu(b['bench_cpu_s'])}, over {b['cpu_window_s']:.1f} s",
        *_group_lines(r),
        "ratio       " + (f"{r['ratio']:.2f} (ptsp-gate / raw pipe)" if r.get("ratio") else "n/a"),
        f"goals       ≥{GOAL_RATE:,} decisions/s: {g['rate']}   ratio ≥ {GOAL_RATIO}: {g['ratio']}"
        f"   p99 ≤ {GOAL_P99_MS:.0f} ms at {GOAL_LATENCY_RATE:.0f} events/s: {g['latency']}",
        "outcomes    " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["outcomes"].items())),
        "latency B   "
        + _fmt_lat(b["latency_ms"], ("p50", "p99", "max"))
        + (
            "   (N produced at once after the instances joined: mostly waiting behind the backlog)"
            if several
            else "   (N queued before the start: mostly waiting behind the backlog)"
        ),
    ]
    for run in c:
        lines += _latency_lines(run)
    if r.get("duplicates"):
        lines.append(f"duplicates  {r['duplicates']:,} decisions seen twice on the topic")
    stop = r["service_exit"]
    exit_code = stop["code"]
    verdict = "PASS" if exit_code == 0 else "FAIL"
    if several:
        codes = ", ".join(str(one["code"]) for one in stop["instances"])
        shutdown = (
            f"shutdown    {instances} instances exit {codes} after SIGTERM "
            f"(slowest {stop['seconds']:.1f} s): {verdict}"
        )
    else:
        shutdown = (
            f"shutdown    service exit {exit_code} after SIGTERM "
            f"({stop['seconds']:.1f} s): {verdict}"
        )
    lines += [
        shutdown,
        f"results     {r['results_file']}  (logs: {r['logs']})",
    ]
    return "\n".join(lines)
