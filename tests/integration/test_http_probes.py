"""/health, /ready and /metrics of a live service process."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest

from ptsp_gate import demo

from .conftest import eventually
from .support import send
from .test_faults import _free_port, _service_process

pytestmark = pytest.mark.integration


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


async def test_probes_and_metrics(settings, producer, db) -> None:
    port = _free_port()
    proc = _service_process(settings, "permit-checker", port)
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
