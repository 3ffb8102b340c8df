"""The permit checker's periodic work besides consuming.

* The sweep: PENDING applications are re-decided so that ENROLMENT_UNKNOWN and ENROLMENT_STALE
  resolve by themselves once data arrives, whichever path it came by, and so that a race between
  an application and its employer's first record cannot leave it pending.
* Officer overrides: the console records who asked and who granted; the permit checker, which
  alone writes decisions, decides again the applications of an override once it is granted, and
  once it has expired or been revoked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

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


async def settle_overrides_once(ctx: HandlerContext) -> list[redecide.Change]:
    """Decide again under the overrides granted, and without those ended, since the last run.
    Two instances do not settle one override twice: its row is locked while it is settled."""
    async with ctx.transactions() as store:
        changes = await ctx.redecider.overrides(store, ctx.clock())
    redecide.observe(ctx.metrics, changes, trigger="override")
    ctx.metrics.override_settles.labels("ok").inc()
    if changes:
        log.info("officer overrides settled", changed=len(changes))
    return changes


async def _every(
    every_s: float, run: Callable[[], Awaitable[object]], failed: Callable[[], None], what: str
) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await run()
        except Exception as exc:  # the next run retries; the consumer must not be disturbed
            failed()
            log.warning(f"{what} failed", error=f"{type(exc).__name__}: {exc}"[:300])


async def sweeper(ctx: HandlerContext, every_s: float) -> None:
    await _every(
        every_s,
        lambda: sweep_once(ctx),
        ctx.metrics.sweep_runs.labels("failed").inc,
        "sweep",
    )


async def override_settler(ctx: HandlerContext, every_s: float) -> None:
    await _every(
        every_s,
        lambda: settle_overrides_once(ctx),
        ctx.metrics.override_settles.labels("failed").inc,
        "settling officer overrides",
    )


async def background(ctx: HandlerContext, sweep_every_s: float, override_every_s: float) -> None:
    await asyncio.gather(sweeper(ctx, sweep_every_s), override_settler(ctx, override_every_s))
