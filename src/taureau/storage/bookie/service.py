"""A bookie served over TCP: one asyncio Protocol per connection in front of one `Bookie`.

Theory of operation: bytes are cut into frames (wire.FrameSplitter); each request becomes a
task on the bookie, started in arrival order (so the adds of one ledger reach the journal in
the order sent) and answered when done, in whatever order they
finish. A malformed request with a readable header is answered BAD_REQUEST and the
connection goes on; a frame over the size limit closes the connection (the stream cannot be
trusted after it). A connection stops being read while it has MAX_IN_FLIGHT requests or
MAX_IN_FLIGHT_BYTES of request bytes unanswered, and while its peer does not read answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from taureau.common.errors import StorageError
from taureau.common.sockets import no_delay
from taureau.storage.bookie import wire
from taureau.storage.bookie.bookie import Bookie

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1000
MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
MAX_CONNECTIONS = 1024


class BookieServer:
    """Shared by the connections of one listening socket: the bookie and the connection count."""

    def __init__(self, bookie: Bookie, max_connections: int = MAX_CONNECTIONS) -> None:
        self.bookie = bookie
        self.max_connections = max_connections
        self.connections: set[BookieConnection] = set()

    def protocol(self) -> BookieConnection:
        return BookieConnection(self)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            conn.close()


class BookieConnection(asyncio.Protocol):
    def __init__(self, server: BookieServer) -> None:
        self._server = server
        self._splitter = wire.FrameSplitter()
        self._transport: asyncio.Transport | None = None
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._reading = True
        self._peer_reading = True
        self._tasks: set[asyncio.Task[None]] = set()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        no_delay(transport)
        if len(self._server.connections) >= self._server.max_connections:
            log.warning("refusing a bookie connection: %d open already", len(self._server.connections))
            transport.abort()
            return
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def pause_writing(self) -> None:
        self._peer_reading = False
        self._update_reading()

    def resume_writing(self) -> None:
        self._peer_reading = True
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._splitter.feed(data)
        except wire.BookieProtocolError as exc:
            log.warning("closing a bookie connection: %s", exc)
            self.close()
            return
        for frame in frames:
            self._handle(frame)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- requests ---------------------------------------------------------------------------

    def _handle(self, frame: bytes) -> None:
        try:
            op, request_id = wire.request_head(frame)
        except wire.BookieProtocolError as exc:
            log.warning("closing a bookie connection: %s", exc)
            self.close()
            return
        try:
            request = wire.decode_request(frame)
        except wire.BookieProtocolError as exc:
            self._send(wire.encode_error(op, request_id, wire.BAD_REQUEST, str(exc)))
            return
        self._in_flight += 1
        self._in_flight_bytes += len(frame)
        self._update_reading()
        # Tasks start in creation order, so the adds of one ledger reach the journal in the
        # order they arrived.
        task = asyncio.get_running_loop().create_task(self._serve(request, len(frame)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: wire.Request, size: int) -> None:
        try:
            answer = await self._answer(request)
        except (StorageError, ValueError, TypeError) as exc:
            answer = wire.encode_error(request.op, request.request_id, wire.status_of(exc), str(exc))
        except Exception as exc:  # a bug must cost one request, not the connection
            log.exception("bookie request %s failed", wire.OPS.get(request.op))
            answer = wire.encode_error(request.op, request.request_id, wire.status_of(exc), repr(exc))
        finally:
            self._in_flight -= 1
            self._in_flight_bytes -= size
            self._update_reading()
        self._send(answer)

    async def _answer(self, request: wire.Request) -> bytes:
        bookie, op, rid = self._server.bookie, request.op, request.request_id
        if op == wire.ADD:
            await bookie.add_entries(
                request.ledger_id, request.first, list(request.entries), recovery_add=request.recovery
            )
            return wire.encode_ok(op, rid)
        if op == wire.READ:
            entries = await bookie.read_entries(request.ledger_id, request.first, request.last, wire.MAX_READ_BYTES)
            return wire.encode_ok(op, rid, entries=entries)
        if op == wire.READ_LAST:
            return wire.encode_ok(op, rid, entry_id=await bookie.read_last_entry_id(request.ledger_id))
        if op == wire.FENCE:
            return wire.encode_ok(op, rid, entry_id=await bookie.fence(request.ledger_id))
        if op == wire.DELETE:
            await bookie.delete_ledger(request.ledger_id)
            return wire.encode_ok(op, rid)
        raise wire.BookieProtocolError(f"unknown op {op}")

    # -- output -----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _update_reading(self) -> None:
        if self._transport is None:
            return
        want = (
            self._peer_reading
            and self._in_flight < MAX_IN_FLIGHT
            and self._in_flight_bytes < MAX_IN_FLIGHT_BYTES
        )
        if want != self._reading:
            self._reading = want
            if want:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()
