"""A producer on a remote cluster's broker, spoken in the Pulsar binary protocol with Taureau's
own codec (no client library in the broker): CONNECT, LOOKUP (following redirects), PRODUCER,
SENDs answered by receipts in order, PONG to the broker's PINGs.

One object per connection; any failure (refused, closed, timed out, a SEND_ERROR) raises
RemoteError and leaves the object unusable: the replicator opens a new one after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from typing import NamedTuple
from urllib.parse import urlsplit

from taureau.protocol import FrameDecoder, ProtocolError, encode_command, encode_payload_command, pb

log = logging.getLogger(__name__)

_T = pb.BaseCommand
CLIENT_VERSION = "taureau-replicator"
PROTOCOL_VERSION = 19
MAX_LOOKUP_HOPS = 5
# Frames the remote broker sends a producer are small (receipts, pings, errors); a larger
# one is not Pulsar's, and reading stops there.
MAX_FRAME = 5 * 1024 * 1024 + 64 * 1024


class RemoteError(Exception):
    """The remote broker cannot take the replicated entries now (retry after a backoff)."""


class OutgoingEntry(NamedTuple):
    payload: bytes  # checksum? metadata_size metadata payload, as SEND carries it
    sequence_id: int
    highest_sequence_id: int
    messages: int


def host_port(url: str) -> tuple[str, int]:
    """pulsar://host:port -> (host, port); RemoteError for anything else."""
    try:
        parts = urlsplit(url.split(",")[0])
        port = parts.port or 6650
    except ValueError:
        raise RemoteError(f"invalid broker service URL {url!r}") from None
    if parts.scheme != "pulsar" or not parts.hostname:
        raise RemoteError(f"the replicator takes pulsar://host:port URLs, not {url!r}")
    return parts.hostname, port


class _Connection:
    """One TCP connection to a broker: requests by id, receipts in order, pings answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(MAX_FRAME)
        self.requests: dict[int, asyncio.Future[pb.BaseCommand]] = {}
        self.receipts: deque[tuple[int, asyncio.Future[None]]] = deque()  # (sequence id, done)
        self.closed: Exception | None = None
        self._ids = itertools.count(1)
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, timeout: float) -> _Connection:
        host, port = host_port(url)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (TimeoutError, OSError) as exc:
            raise RemoteError(f"cannot connect to {url}: {exc or 'timed out'}") from None
        conn = cls(reader, writer)
        fut = conn._expect(0)
        connect = pb.CommandConnect(client_version=CLIENT_VERSION, protocol_version=PROTOCOL_VERSION)
        conn.writer.write(encode_command(_T(type=_T.CONNECT, connect=connect)))
        await conn._wait(fut, timeout, "CONNECT")
        return conn

    def next_id(self) -> int:
        return next(self._ids)

    def _expect(self, request_id: int) -> asyncio.Future[pb.BaseCommand]:
        fut: asyncio.Future[pb.BaseCommand] = asyncio.get_running_loop().create_future()
        self.requests[request_id] = fut
        return fut

    async def request(self, command: pb.BaseCommand, request_id: int, timeout: float, what: str) -> pb.BaseCommand:
        fut = self._expect(request_id)
        self.writer.write(encode_command(command))
        return await self._wait(fut, timeout, what)

    async def _wait(self, fut: asyncio.Future, timeout: float, what: str):
        if self.closed is not None:
            raise RemoteError(f"{what}: connection closed: {self.closed}")
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            self.close(RemoteError(f"{what} not answered within {timeout:.0f} s"))
            raise RemoteError(f"{what} not answered within {timeout:.0f} s") from None

    async def _read(self) -> None:
        reason: Exception = RemoteError("the remote broker closed the connection")
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for frame in self.decoder.feed(data):
                    self._on_frame(frame.command)
        except (OSError, ProtocolError, RemoteError) as exc:
            reason = exc if isinstance(exc, RemoteError) else RemoteError(f"connection failed: {exc}")
        self.close(reason)

    def _on_frame(self, cmd: pb.BaseCommand) -> None:
        kind = cmd.type
        if kind == _T.SEND_RECEIPT:
            if not self.receipts:
                raise RemoteError("a receipt for no SEND in flight")
            sequence_id, fut = self.receipts.popleft()
            if cmd.send_receipt.sequence_id != sequence_id:
                raise RemoteError(f"receipt for sequence id {cmd.send_receipt.sequence_id}, expected {sequence_id}")
            if not fut.done():
                fut.set_result(None)
        elif kind == _T.SEND_ERROR:
            raise RemoteError(f"SEND refused: {pb.ServerError.Name(cmd.send_error.error)}: {cmd.send_error.message}")
        elif kind == _T.PING:
            self.writer.write(encode_command(_T(type=_T.PONG, pong=pb.CommandPong())))
        elif kind == _T.CLOSE_PRODUCER:
            raise RemoteError("the remote broker closed the producer (topic moved or unloaded)")
        elif kind == _T.CONNECTED:
            self._answer(0, cmd)
        elif kind in (_T.LOOKUP_RESPONSE, _T.PRODUCER_SUCCESS, _T.ERROR, _T.SUCCESS):
            field = {_T.LOOKUP_RESPONSE: "lookupTopicResponse", _T.PRODUCER_SUCCESS: "producer_success",
                     _T.ERROR: "error", _T.SUCCESS: "success"}[kind]
            self._answer(getattr(cmd, field).request_id, cmd)
        # anything else (PONG, ...) needs nothing from a producer

    def _answer(self, request_id: int, cmd: pb.BaseCommand) -> None:
        fut = self.requests.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(cmd)

    def close(self, reason: Exception) -> None:
        if self.closed is None:
            self.closed = reason
        for fut in list(self.requests.values()) + [f for _, f in self.receipts]:
            if not fut.done():
                fut.set_exception(self.closed)
                fut.exception()  # retrieved here: an unawaited failure is not an error to log
        self.requests.clear()
        self.receipts.clear()
        self.writer.close()
        if self._task is not asyncio.current_task():
            self._task.cancel()


class RemoteProducer:
    """A producer named `name` on `topic` at the cluster whose service URL is `url`."""

    def __init__(self, conn: _Connection, producer_id: int, url: str) -> None:
        self._conn = conn
        self._producer_id = producer_id
        self.url = url

    @classmethod
    async def open(cls, url: str, topic: str, name: str, timeout: float = 10.0) -> RemoteProducer:
        conn = await _Connection.open(url, timeout)
        try:
            for _ in range(MAX_LOOKUP_HOPS):
                target = await _lookup(conn, topic, timeout)
                if target is None or target == url:
                    break
                conn.close(RemoteError("redirected"))
                url = target
                conn = await _Connection.open(url, timeout)
            request_id = conn.next_id()
            command = _T(type=_T.PRODUCER, producer=pb.CommandProducer(
                topic=topic, producer_id=1, request_id=request_id, producer_name=name))
            reply = await conn.request(command, request_id, timeout, "PRODUCER")
            if reply.type == _T.ERROR:
                raise RemoteError(f"producer refused: {pb.ServerError.Name(reply.error.error)}: {reply.error.message}")
        except BaseException:
            conn.close(RemoteError("not opened"))
            raise
        return cls(conn, 1, url)

    @property
    def connected(self) -> bool:
        return self._conn.closed is None

    async def send(self, entries: list[OutgoingEntry], timeout: float) -> None:
        """SEND every entry and return once the remote broker stored all (receipts come in
        SEND order); RemoteError if any is not stored."""
        conn = self._conn
        if conn.closed is not None:
            raise RemoteError(f"connection closed: {conn.closed}")
        loop = asyncio.get_running_loop()
        waits = []
        for entry in entries:
            send = pb.CommandSend(producer_id=self._producer_id, sequence_id=entry.sequence_id,
                                  num_messages=entry.messages, highest_sequence_id=entry.highest_sequence_id)
            fut: asyncio.Future[None] = loop.create_future()
            conn.receipts.append((entry.sequence_id, fut))
            waits.append(fut)
            conn.writer.write(encode_payload_command(_T(type=_T.SEND, send=send), entry.payload))
        try:
            await asyncio.wait_for(conn.writer.drain(), timeout)
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        except (TimeoutError, OSError) as exc:
            conn.close(RemoteError(f"SENDs not acknowledged: {exc or 'timed out'}"))
            raise RemoteError(f"SENDs not acknowledged within {timeout:.0f} s") from None

    async def close(self) -> None:
        conn = self._conn
        if conn.closed is None:
            request_id = conn.next_id()
            command = _T(type=_T.CLOSE_PRODUCER,
                         close_producer=pb.CommandCloseProducer(producer_id=self._producer_id, request_id=request_id))
            with contextlib.suppress(RemoteError):
                await conn.request(command, request_id, 2.0, "CLOSE_PRODUCER")
        conn.close(RemoteError("closed"))


async def _lookup(conn: _Connection, topic: str, timeout: float) -> str | None:
    """Where `topic` is served: None for this broker, else the broker URL to go to."""
    request_id = conn.next_id()
    command = _T(type=_T.LOOKUP, lookupTopic=pb.CommandLookupTopic(topic=topic, request_id=request_id))
    reply = await conn.request(command, request_id, timeout, "LOOKUP")
    if reply.type == _T.ERROR:
        raise RemoteError(f"lookup refused: {reply.error.message}")
    answer = reply.lookupTopicResponse
    if answer.response == pb.CommandLookupTopicResponse.Failed:
        raise RemoteError(f"lookup failed: {pb.ServerError.Name(answer.error)}: {answer.message}")
    if answer.proxy_through_service_url or not answer.brokerServiceUrl:
        return None
    return answer.brokerServiceUrl
