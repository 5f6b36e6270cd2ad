"""One asyncio connection speaking the state codec both ways: requests, replies, events."""

from __future__ import annotations

import asyncio
import inspect
import logging
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
    """Owns one transport, its frame decoder, and the futures of requests it sent."""

    def __init__(self, handler: Handler | None = None, on_close: Callable[[Peer], None] | None = None):
        self.handler = handler
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.decoder = codec.FrameDecoder()
        self.pending: dict[int, asyncio.Future[list[bytes]]] = {}  # req_id -> reply future
        self.next_id = 1
        self.closed = False
        self.info: dict[str, Any] = {}  # whatever the owner wants to remember about this peer

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except errors.StateProtocolError as e:
            self.transport.write(codec.encode_exc(0, 0, e))
            self.transport.close()
            return
        out: list[bytes] = []
        for fr in frames:
            if fr.kind == REQUEST or fr.kind == EVENT:
                self._serve(fr, out)
            else:
                fut = self.pending.pop(fr.req_id, None)
                if fut is None or fut.done():
                    continue
                if fr.kind == OK:
                    fut.set_result(fr.fields)
                else:
                    fut.set_exception(codec.reply_exception(fr.fields))
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _serve(self, fr: Frame, out: list[bytes]) -> None:
        try:
            res = self.handler(self, fr)
        except BaseException as e:  # noqa: BLE001 - every failure becomes an error reply
            if fr.kind == REQUEST:
                out.append(exception_reply(fr.op, fr.req_id, e))
            return
        if res is None or fr.kind == EVENT:
            if inspect.isawaitable(res):
                asyncio.ensure_future(_log_failure(res, fr.op))
            return
        if inspect.isawaitable(res):
            asyncio.ensure_future(self._reply_later(fr, res))
        else:
            out.append(codec.encode(OK, fr.op, fr.req_id, res))

    async def _reply_later(self, fr: Frame, aw: Awaitable[list[bytes]]) -> None:
        try:
            fields = await aw
            msg = codec.encode(OK, fr.op, fr.req_id, fields)
        except BaseException as e:  # noqa: BLE001
            msg = exception_reply(fr.op, fr.req_id, e)
        if not self.closed:
            self.transport.write(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
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
        if self.transport is not None:
            self.transport.close()


async def _log_failure(aw: Awaitable[Any], op: int) -> None:
    try:
        await aw
    except Exception as e:  # noqa: BLE001 - an event has nobody to reply to
        log.info("state event op %s failed: %s", op, e)


async def connect(host: str, port: int, handler: Handler | None = None, on_close=None) -> Peer:
    loop = asyncio.get_running_loop()
    try:
        _, peer = await loop.create_connection(lambda: Peer(handler, on_close), host, port)
    except OSError as e:
        raise errors.StateUnavailableError(f"cannot connect to {host}:{port}: {e}") from None
    return peer


def split_address(addr: str) -> tuple[str, int]:
    """'host:port' -> (host, port); StateProtocolError if it is not one."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise errors.StateProtocolError(f"not a host:port address: {addr!r}")
    return host, int(port)
