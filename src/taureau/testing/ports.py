"""Free ports for servers that tests and benchmarks start, chosen below the kernel's ephemeral range.

A port the kernel hands out for `bind(("127.0.0.1", 0))` comes from the ephemeral range
(`net.ipv4.ip_local_port_range`, 32768-60999 by default), the same range every outgoing
connection on the machine takes its source port from. Between the moment a test picks such a
port and the moment its server binds it (seconds, when ZooKeeper or bookies start first), any
connection made by any other process may take it, and the server fails with EADDRINUSE. CI saw
exactly that. Ports below the range are never handed to outgoing connections, so only another
test's explicit choice could collide, and the random choice plus the bind check make that rare.
"""

from __future__ import annotations

import random
import socket

LOWEST = 10_000
_FALLBACK_EPHEMERAL_LOW = 32_768
_TRIES = 200


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW


def _bindable(host: str, ports: range) -> bool:
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            s = socket.socket()
            sockets.append(s)
            s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for s in sockets:
            s.close()


def free_port_run(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports, all free now, below the ephemeral range."""
    high = _ephemeral_low() - count
    if high <= LOWEST:  # an unusual range: the kernel's own choice is all that is left
        with socket.socket() as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    for _ in range(_TRIES):
        base = random.randrange(LOWEST, high)
        if _bindable(host, range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} free consecutive ports below {high + count} on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, below the ephemeral range (see the module's docstring)."""
    return free_port_run(1, host)
