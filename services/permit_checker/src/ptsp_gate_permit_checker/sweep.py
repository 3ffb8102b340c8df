"""The periodic sweep: PENDING applications are re-decided so that ENROLMENT_UNKNOWN and
ENROLMENT_STALE resolve by themselves once data arrives, whichever path it came by, and so that
a race between an application and its employer's first record cannot leave it pending."""

from __future__ import annotations

import asyncio

from ptsp_gate import redecide
from ptsp_gate.observability.logging import get_logger
from ptsp_gate.runtime.context import HandlerContext

log = get_logger(__name__)


async def sweep_once(ctx: HandlerContext) -> list[redecide.Change] | None:
    """One sweep; None when another instance holds the sweep."""
    async with ctx.transactions() as store:
        if not await store.take_sweep_turn():
            ctx.metrics.sweep_runs.labels("skipped").inc()
            return None
        changes = await ctx.redecider.pending(store, ctx.clock())
    redecide.observe(ctx.metrics, changes, trigger="sweep")
    ctx.metrics.sweep_runs.labels("ok").inc()
    if changes:
        log.info("sweep re-decided pending applications", changed=len(changes))
    return changes


async def sweeper(ctx: HandlerContext, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await sweep_once(ctx)
        except Exception as exc:  # the next run retries; the consumer must not be disturbed
            ctx.metrics.sweep_runs.labels("failed").inc()
            log.warning("sweep failed", error=f"{type(exc).__name__}: {exc}"[:300])
