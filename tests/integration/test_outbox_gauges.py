"""The backlog gauges come from the table, on every instance, whatever the relay is doing."""

from __future__ import annotations

import pytest

from ptsp_gate.observability.metrics import Metrics
from ptsp_gate.stores import outbox

pytestmark = pytest.mark.integration


async def test_backlog_gauges_read_the_table(db) -> None:
    m = Metrics()
    await outbox.sample_backlog(db, m)
    assert m.outbox_pending._value.get() == 0
    assert m.outbox_oldest_age._value.get() == 0

    # Rows nobody publishes (no relay runs here, as when the broker is down).
    await db.execute(
        "INSERT INTO outbox (topic, key, headers, value, kind, created_at) VALUES"
        " ('t', NULL, '', 'a', 'decision', now() - interval '10 minutes'),"
        " ('t', NULL, '', 'b', 'decision', now())"
    )
    await outbox.sample_backlog(db, m)
    assert m.outbox_pending._value.get() == 2
    assert 590 < m.outbox_oldest_age._value.get() < 700
