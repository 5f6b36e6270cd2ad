"""Socket options every TCP peer of Taureau sets."""

from __future__ import annotations

import asyncio
import socket


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Small requests and answers must not wait for Nagle's algorithm (a 40 ms stall when it
    meets the peer's delayed ACK)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
