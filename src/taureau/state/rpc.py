"""One asyncio connection speaking the state codec both ways: requests, replies, events."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from taureau.common import errors
from taureau.state import codec
from taureau.state.codec import EVENT, OK, REQUEST, Frame, Redirect

log = logging.getLogger(__name__)

# A handler answers a request frame with: a ready list of reply fields (sync, the hot path),
# an awaitable of them (slow control ops), or None for events. It raises StateError or
# Redirect to answer with an error reply.
Handler = Callable[["Peer", Frame], "list[bytes] | Awaitable[list[bytes]] | None"]

MAX_EVENT_BACKLOG = 64 << 20  # bytes buffered for a peer that does not read its events
OUT_HIGH = 1 << 20  # reply bytes waiting for a peer to read before its requests wait too
MAX_INFLIGHT = 64  # slow (awaited) requests of one connection served at once
FRAMES_PER_TURN = 4096  # frames served before other connections get the loop


def exception_reply(op: int, req_id: int, exc: BaseException) -> bytes:
    if isinstance(exc, Redirect):
        return codec.encode_error(op, req_id, exc.code, str(exc))
    if isinstance(exc, errors.StateError):
        return codec.encode_exc(op, req_id, exc)
    if isinstance(exc, (IndexError, ValueError, TypeError, KeyError, UnicodeDecodeError)):
        # Missing or ill-typed fields from a well-framed request: the caller's fault.
        return codec.encode_error(op, req_id, errors.StateProtocolError.code, f"bad arguments: {exc!r}")
    log.exception("state handler failed on op %s", op, exc_info=exc)
    return codec.encode_error(op, req_id, errors.StateError.code, f"internal error: {exc!r}")


class Peer(asyncio.Protocol):
    """Owns one transport, its frame decoder, and the futures of requests it sent.

    Bounded per connection: the decoder refuses a frame over `limits` from its header; with
    `flow_control` (a server's accepted connections) requests are served only while fewer
    than OUT_HIGH reply bytes wait to be read and fewer than MAX_INFLIGHT slow requests are
    pending. Otherwise decoded frames wait in a backlog (at most one read's worth) and the
    socket is not read, so the peer's own TCP window stops it. Dialed links never stop
    reading: if both ends of a link could, each waiting for the other to read would deadlock.
    """

    transport: asyncio.Transport  # set by connection_made

    def __init__(
        self,
        handler: Handler | None = None,
        on_close: Callable[[Peer], None] | None = None,
        *,
        limits: codec.FrameLimits | int = codec.DEFAULT_MAX_FRAME,
        flow_control: bool = False,
    ) -> None:
        self.handler = handler
        self.on_close = on_close
        self.decoder = codec.FrameDecoder(limits)
        self.flow_control = flow_control
        self.pending: dict[int, asyncio.Future[list[bytes]]] = {}  # req_id -> reply future
        self.next_id = 1
        self.closed = False
        self.info: dict[str, Any] = {}  # whatever the owner wants to remember about this peer
        self._backlog: deque[Frame] = deque()  # decoded frames not served yet
        self._slow: set[asyncio.Future[Any]] = set()  # requests being served asynchronously
        self._write_paused = False  # the transport's buffer is over OUT_HIGH
        self._reading = True
        self._turn_scheduled = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.flow_control:
            self.transport.set_write_buffer_limits(high=OUT_HIGH)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except codec.FrameRefused as e:
            self._refuse(e, e.op if e.kind == REQUEST else 0, e.req_id if e.kind == REQUEST else 0)
            return
        except errors.StateProtocolError as e:
            self._refuse(e, 0, 0)
            return
        self._backlog.extend(frames)
        self._pump()

    def _refuse(self, exc: errors.StateError, op: int, req_id: int) -> None:
        """Answer a broken or oversized frame and close: the rest of the stream is unframed."""
        self.transport.write(codec.encode_exc(op, req_id, exc))
        self.transport.close()
        self.closed = True
        self._backlog.clear()

    def _pump(self) -> None:
        """Serve backlogged frames while this connection's budget allows; read more only when
        nothing is waiting."""
        self._turn_scheduled = False
        backlog = self._backlog
        if self.closed:
            backlog.clear()
            return
        fc = self.flow_control
        out: list[bytes] = []
        queued = self.transport.get_write_buffer_size() if fc else 0
        served = 0
        while backlog:
            if fc and (self._write_paused or queued >= OUT_HIGH or len(self._slow) >= MAX_INFLIGHT):
                break
            if served == FRAMES_PER_TURN:  # let other connections have the loop
                self._turn_scheduled = True
                asyncio.get_running_loop().call_soon(self._pump)
                break
            served += 1
            fr = backlog.popleft()
            if fr.kind == REQUEST or fr.kind == EVENT:
                n = len(out)
                self._serve(fr, out)
                if len(out) > n:
                    queued += len(out[-1])
                continue
            fut = self.pending.pop(fr.req_id, None)
            if fut is None or fut.done():
                continue
            if fr.kind == OK:
                fut.set_result(fr.fields)
            else:
                fut.set_exception(codec.reply_exception(fr.fields))
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if not fc:
            return
        blocked = self._write_paused or len(self._slow) >= MAX_INFLIGHT
        if backlog and not blocked and not self._turn_scheduled:
            # Stopped on the byte budget but the kernel took the bytes: nothing else will wake us.
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)
        self._set_reading(not backlog and not blocked)

    def _set_reading(self, on: bool) -> None:
        if on != self._reading and not self.closed:
            self._reading = on
            if on:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _serve(self, fr: Frame, out: list[bytes]) -> None:
        try:
            res = self.handler(self, fr)  # type: ignore[misc]  # only peers that serve get frames
        except BaseException as e:  # noqa: BLE001 - every failure becomes an error reply
            if fr.kind == REQUEST:
                out.append(exception_reply(fr.op, fr.req_id, e))
            return
        if inspect.isawaitable(res):
            slow = self._reply_later(fr, res) if fr.kind == REQUEST else _log_failure(res, fr.op)
            task = asyncio.ensure_future(slow)
            self._slow.add(task)
            task.add_done_callback(self._slow_done)
        elif fr.kind == REQUEST:  # every request gets a reply, even from a handler meant for events
            out.append(codec.encode(OK, fr.op, fr.req_id, res or []))

    def cancel_work(self) -> None:
        """Cancel the requests being served (the server is going away)."""
        for t in list(self._slow):
            t.cancel()

    async def settle(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for the requests this peer is still serving to finish,
        even if the connection is gone: their work (a split moving keys) goes on."""
        if self._slow:
            await asyncio.wait(list(self._slow), timeout=timeout)

    def _slow_done(self, task: asyncio.Future[Any]) -> None:
        self._slow.discard(task)
        if self._backlog or not self._reading:
            self._pump()

    async def _reply_later(self, fr: Frame, aw: Awaitable[list[bytes]]) -> None:
        try:
            fields = await aw
            msg = codec.encode(OK, fr.op, fr.req_id, fields)
        except asyncio.CancelledError:
            raise  # the server is going away (cancel_work): no reply, and nothing failed
        except BaseException as e:  # noqa: BLE001
            msg = exception_reply(fr.op, fr.req_id, e)
        if not self.closed:
            self.transport.write(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._backlog.clear()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(errors.StateUnavailableError("connection lost"))
        self.pending.clear()
        if self.on_close is not None:
            self.on_close(self)

    # -- outgoing ----------------------------------------------------------------------------

    def call(self, op: int, fields: list[bytes]) -> asyncio.Future[list[bytes]]:
        """Send a request; the future gets the reply fields or the typed exception."""
        fut = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(errors.StateUnavailableError("connection closed"))
            return fut
        req_id = self.next_id
        self.next_id = (req_id + 1) & 0xFFFFFFFF or 1
        self.pending[req_id] = fut
        self.transport.write(codec.encode(REQUEST, op, req_id, fields))
        return fut

    def send_event(self, op: int, fields: list[bytes]) -> None:
        if self.closed:
            return
        if self.transport.get_write_buffer_size() > MAX_EVENT_BACKLOG:
            log.warning("closing a state peer that stopped reading its events")
            self.transport.close()
            return
        self.transport.write(codec.encode(EVENT, op, 0, fields))

    def close(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.close()


async def _log_failure(aw: Awaitable[Any], op: int) -> None:
    try:
        await aw
    except Exception as e:  # noqa: BLE001 - an event has nobody to reply to
        log.info("state event op %s failed: %s", op, e)


async def connect(
    host: str,
    port: int,
    handler: Handler | None = None,
    on_close: Callable[[Peer], None] | None = None,
    limits: codec.FrameLimits | int = codec.DEFAULT_MAX_FRAME,
) -> Peer:
    loop = asyncio.get_running_loop()
    try:
        _, peer = await loop.create_connection(lambda: Peer(handler, on_close, limits=limits), host, port)
    except OSError as e:
        raise errors.StateUnavailableError(f"cannot connect to {host}:{port}: {e}") from None
    return peer


async def connect_address(
    address: str,
    handler: Handler | None = None,
    on_close: Callable[[Peer], None] | None = None,
    limits: codec.FrameLimits | int = codec.DEFAULT_MAX_FRAME,
) -> Peer:
    """Dial `host:port`, or `unix:/path` (a local socket, for a controller's own memory server)."""
    if not address.startswith("unix:"):
        host, port = split_address(address)
        return await connect(host, port, handler, on_close, limits)
    loop = asyncio.get_running_loop()
    try:
        _, peer = await loop.create_unix_connection(
            lambda: Peer(handler, on_close, limits=limits), address[5:]
        )
    except OSError as e:
        raise errors.StateUnavailableError(f"cannot connect to {address}: {e}") from None
    return peer


def split_address(addr: str) -> tuple[str, int]:
    """'host:port' -> (host, port); StateProtocolError if it is not one."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise errors.StateProtocolError(f"not a host:port address: {addr!r}")
    return host, int(port)
