"""Progress lines, the error that ends a run, and steps bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ptsp_gate.embedded.harness import Process

SETUP_TIMEOUT_S = 120.0  # one setup step (database, producing the events, a consumer's start)
STALL_TIMEOUT_S = 60.0  # no new decision (or raw-pipe progress) for this long: give up


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A condition that ends the run early, stated in one line."""


def check_alive(children: Sequence[Process]) -> None:
    """A BenchError with the log tail of the first child that has exited."""
    for child in children:
        if not child.running():
            raise BenchError(f"{child.name} exited with code {child.returncode}:\n{child.tail()}")


def tails(children: Sequence[Process], lines: int = 5) -> str:
    if len(children) == 1:
        return children[0].tail(lines)
    return "\n".join(f"--- {child.name}:\n{child.tail(lines)}" for child in children)


@contextlib.asynccontextmanager
async def within(seconds: float, what: str) -> AsyncIterator[None]:
    """A bounded step: a BenchError naming it when it takes longer than `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise BenchError(f"{what} took longer than {seconds:.0f} s") from None


async def wait_until(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    watch: Sequence[Process] = (),
) -> Any:
    """Until `check` (run in a thread) returns something true; fails when a watched child exits
    or after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        check_alive(watch)
        if loop.time() > deadline:
            raise BenchError(f"{what} not within {timeout:.0f} s")
        await asyncio.sleep(0.1)
