"""/health, /ready and /metrics of a live service process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ptsp_gate import demo

from .conftest import eventually
from .support import free_port, send, service_process

pytestmark = pytest.mark.integration


def _promtool_check(exposition: str) -> None:
    """`promtool check metrics`: the exposition parses and follows Prometheus' naming rules."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "promtool is required under CI (scripts/setup installs Debian's prometheus)"
            )
        pytest.skip("promtool not installed (Debian package prometheus)")
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
    )
    complaints = checked.stdout + checked.stderr
    assert checked.returncode == 0, complaints
    assert not checked.stdout.strip(), complaints


def _json_lines(output: str) -> list[dict[str, object]]:
    lines = [line for line in output.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"log line is not JSON: {line[:300]}")
    return parsed


def _workers(parent: int) -> list[int]:
    """The worker processes under a `run --workers` supervisor (not multiprocessing's helpers)."""
    found = []
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


async def test_probes_and_metrics(settings, producer, db) -> None:
    port = free_port()
    proc = service_process(settings, "permit-checker", port)
    try:

        async def ready() -> bool:
            return (await asyncio.to_thread(_get, port, "/ready"))[0] == 200

        await eventually(ready, timeout=30)
        assert (await asyncio.to_thread(_get, port, "/health"))[0] == 200
        app = demo.application(3, workers=0, now=datetime.now(UTC))
        await send(producer, settings.topic_applications, [demo.application_record(app)])

        async def counted() -> str | None:
            status, body = await asyncio.to_thread(_get, port, "/metrics")
            wanted = 'ptsp_gate_decisions_total{action="NEW",outcome="CLEARED"} 1.0'
            return body if status == 200 and wanted in body else None

        body = await eventually(counted, timeout=30)
        for name in (
            "ptsp_gate_decision_latency_seconds_bucket",
            "ptsp_gate_outbox_pending",
            "ptsp_gate_outbox_oldest_age_seconds",
            "ptsp_gate_build_info",
            "faststream_received_messages_total",
        ):
            assert name in body, name

        async def lag_sampled() -> bool:
            body = (await asyncio.to_thread(_get, port, "/metrics"))[1]
            return (
                f'ptsp_gate_consumer_lag_messages{{group="{settings.group_permit_checker}"' in body
            )

        await eventually(lag_sampled, timeout=20)

        # A schema that falls behind makes the service not ready, and says why.
        await db.execute("DELETE FROM schema_migration")
        status, text = await asyncio.to_thread(_get, port, "/ready")
        assert status == 503
        assert json.loads(text)["problems"]["migrations"].startswith("pending: 0001_initial.sql")
        assert (await asyncio.to_thread(_get, port, "/health"))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)

    # Logs: JSON lines only, FastStream's and uvicorn's included; one line for the decision.
    logged = _json_lines(proc.output())
    loggers = {str(line.get("logger")) for line in logged}
    assert "ptsp_gate.kafka" in loggers, loggers
    assert "uvicorn.error" in loggers, loggers
    (line,) = [x for x in logged if x["event"] == "decision"]
    assert line["application_id"] == app["application_id"]
    assert line["nib"] == app["employer"]["nib"]
    assert line["outcome"] == "CLEARED"
    assert line["topic"] == settings.topic_applications
    assert isinstance(line["partition"], int)
    assert isinstance(line["offset"], int)
    assert line["event_id"]
    assert line["level"] == "info"
    assert line["policy_version"]
    # Last: without promtool (outside CI) this skips, and nothing above may be skipped with it.
    _promtool_check(body)


@pytest.mark.apache_kafka_only
async def test_workers_share_one_port_and_one_merged_exposition(settings, producer, db) -> None:
    port = free_port()
    proc = service_process(settings, "permit-checker", port, "--workers", "2")
    n = 30
    try:

        async def ready() -> bool:
            return (await asyncio.to_thread(_get, port, "/ready"))[0] == 200

        await eventually(ready, timeout=60)

        async def both_serving() -> bool:
            # Both workers in the group before any record comes: on a loaded machine one may
            # otherwise take every partition while the other, still joining when it is killed
            # below, never starts. (Counted in the raw text: a line may be half written.)
            return proc.output().count('"event": "service started"') >= 2

        await eventually(both_serving, timeout=60)
        now = datetime.now(UTC)
        apps = [demo.application(1000 + i, workers=0, now=now) for i in range(n)]
        await send(
            producer, settings.topic_applications, [demo.application_record(a) for a in apps]
        )

        async def all_decided() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == n

        await eventually(all_decided, timeout=60)

        def decided_total(body: str) -> float:
            return sum(
                float(m.group(1))
                for m in re.finditer(r"^ptsp_gate_decisions_total\{[^}]*\} (\S+)$", body, re.M)
            )

        async def merged() -> str | None:
            # Whichever worker answers, the count is the sum over both.
            status, body = await asyncio.to_thread(_get, port, "/metrics")
            return body if status == 200 and decided_total(body) == n else None

        body = await eventually(merged, timeout=30)
        assert len(re.findall(r"^ptsp_gate_build_info\{", body, re.M)) == 1
        assert "pid=" not in "".join(
            line for line in body.splitlines() if line.startswith("ptsp_gate_")
        )

        # A worker killed outright is replaced; the work goes on and its counts are kept.
        os.kill(_workers(proc.pid)[0], signal.SIGKILL)
        more = [demo.application(2000 + i, workers=0, now=now) for i in range(n)]
        await send(
            producer, settings.topic_applications, [demo.application_record(a) for a in more]
        )

        async def all_decided_again() -> bool:
            return await db.fetchval("SELECT count(*) FROM compliance_decision") == 2 * n

        # The dead member holds its partitions until its session times out and the group rebalances.
        await eventually(all_decided_again, timeout=180)

        async def two_workers() -> bool:
            return len(_workers(proc.pid)) == 2

        await eventually(two_workers, timeout=30)

        async def merged_again() -> bool:
            status, body = await asyncio.to_thread(_get, port, "/metrics")
            return status == 200 and decided_total(body) == 2 * n

        await eventually(merged_again, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
    output = proc.output()
    assert code == 0, output[-3000:]
    events = [x["event"] for x in _json_lines(output)]
    # Every worker that got as far as consuming drained on SIGTERM, but for the one killed. (A
    # worker still joining the group when the signal came never started: nothing to drain.)
    assert events.count("service started") >= 2
    assert events.count("service stopped") >= events.count("service started") - 1
    _promtool_check(body)  # last, as above
