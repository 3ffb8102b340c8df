"""Load on the services' /ready: clients calling it, run as a child process of the bench
(``--role probe-load``) so that the load costs the bench's producer nothing."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ptsp_gate.embedded.harness import Process

from .stack import Stack


async def probe_load_role(args: argparse.Namespace) -> int:
    """N clients, each on its own keep-alive connection, calling GET /ready once per
    --probe-interval (starts spread over the interval), over the given ports, until SIGTERM;
    writes how many answers of each status to --result-file. A process of its own, so the load
    costs the bench's producer nothing."""
    ports = [int(p) for p in args.probe_ports.split(",")]
    statuses: Counter[str] = Counter()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def client(port: int, offset: float) -> None:
        request = f"GET /ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        await asyncio.sleep(offset)
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                while not stop.is_set():
                    writer.write(request)
                    status = (await reader.readline()).split(b" ")[1].decode()
                    length = 0
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    await reader.readexactly(length)
                    statuses[status] += 1
                    if args.probe_interval:
                        await asyncio.sleep(args.probe_interval)
                writer.close()
            except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
                statuses["error"] += 1
                await asyncio.sleep(0.1)

    spread = args.probe_interval / max(args.probe_callers, 1)
    tasks = [
        asyncio.create_task(client(ports[i % len(ports)], i * spread))
        for i in range(args.probe_callers)
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(Path(args.result_file).write_text, json.dumps(dict(statuses)))
    return 0


def start_probe_load(
    stack: Stack, ports: Sequence[int], callers: int, interval: float, index: int
) -> Process:
    """`callers` clients on the instances' ports, in their own process, for phase C run
    `index`."""
    options = [
        "--probe-ports",
        ",".join(map(str, ports)),
        "--probe-callers",
        str(callers),
        "--probe-interval",
        str(interval),
        "--result-file",
        str(stack.logs / f"probe-load-{index}.json"),
    ]
    return stack.start_role(f"probe-load-{index}", "probe-load", options)
