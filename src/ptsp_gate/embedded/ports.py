"""Free TCP ports on 127.0.0.1 for the processes the embedded engines and the harness start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port", "free_ports", "restartable_ports"]


def free_port() -> int:
    """A port that is free now, chosen by the kernel from its ephemeral range."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free now. They are held open together, so that the kernel
    cannot hand out the same one twice."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def restartable_ports(count: int) -> list[int]:
    """Ports that are free now and below the kernel's ephemeral range: an outgoing connection
    never takes one of them as its source port, so a server restarted on its old ports finds
    them free. They are held open together so that no two are the same. Raises OSError when
    there are not enough."""
    low = _ephemeral_range()[0]
    floor = 10_000 if low > 11_000 else 1024
    candidates = random.sample(range(floor, low), k=min(low - floor, 50 * count))
    socks: list[socket.socket] = []
    try:
        for port in candidates:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            if len(socks) == count:
                return [int(s.getsockname()[1]) for s in socks]
        raise OSError(f"no {count} free ports below {low} on 127.0.0.1")
    finally:
        for s in socks:
            s.close()
