"""Free TCP ports for servers started in-process (the simulated plant's, the tests').

A port is chosen below the kernel's ephemeral range (`ip_local_port_range`): one from that range
(what binding port 0 gives) may be taken by an outgoing connection of the same process, a
database or HTTP client, between its choice and its server's bind.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below: well-known and registered services' usual ports


def _ephemeral() -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return lo, hi


def _candidates(n: int) -> range:
    """First ports of n consecutive ports outside the ephemeral range (below it, else above)."""
    lo, hi = _ephemeral()
    if lo - n > _LOWEST:
        return range(_LOWEST, lo - n + 1)
    return range(hi + 1, 65536 - n + 1)


def free_port_block(host: str = "127.0.0.1", n: int = 1) -> int:
    """The first of n consecutive TCP ports on `host` that are free now."""
    candidates = _candidates(n)
    for _ in range(200):
        base = random.choice(candidates) if candidates else 0
        with contextlib.ExitStack() as stack:
            try:
                first = stack.enter_context(socket.socket())
                first.bind((host, base))
                base = int(first.getsockname()[1])
                for port in range(base + 1, base + n):
                    stack.enter_context(socket.socket()).bind((host, port))
            except OSError:
                continue
            return base
    raise OSError(f"no {n} consecutive free TCP ports on {host}")
