"""RemoteBookie: a BookieClient that talks to a `taureau bookie` process over TCP.

Theory of operation: one connection per bookie, opened on first use and again after it
breaks. Requests are pipelined: each gets an id and a future, answers settle them in any
order. A broken connection fails every request waiting on it with BookieUnavailableError,
which the ledger handle treats as that bookie failing (it leaves the write set). Every
request is bounded by `request_timeout_s`. A batch of adds is cut into requests of at most
wire.MAX_ADD_BYTES; a range read asks again from where a shorter answer stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from itertools import count
from typing import cast

from taureau.common.bytes_like import Bytes, Parts
from taureau.common.errors import StorageError
from taureau.common.sockets import no_delay
from taureau.storage.bookie import wire
from taureau.storage.bookie.wire import BookieUnavailableError

log = logging.getLogger(__name__)


def parse_address(bookie_id: str) -> tuple[str, int]:
    """'host:port' -> (host, port); ValueError if it is not one."""
    host, sep, port = bookie_id.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bookie id {bookie_id!r} is not host:port")
    return host.strip("[]"), int(port)


class _Connection(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[wire.Response]] = {}
        self._splitter = wire.FrameSplitter()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        no_delay(transport)

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self._splitter.feed(data):
                response = wire.decode_response(frame)
                future = self.pending.pop(response.request_id, None)
                if future is not None and not future.done():
                    future.set_result(response)
        except wire.BookieProtocolError as exc:
            log.warning("bookie %s sent a malformed answer: %s", self.name, exc)
            self.close(BookieUnavailableError(f"bookie {self.name} sent a malformed answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(BookieUnavailableError(f"connection to bookie {self.name} lost: {exc or 'closed'}"))

    def close(self, error: StorageError) -> None:
        self.lost = True
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class RemoteBookie:
    """The bookie at `address` ('host:port').

    >>> bookie = RemoteBookie("127.0.0.1:3181")
    >>> await bookie.add_entries(7, 0, [b"a", b"b"])
    >>> await bookie.read_entries(7, 0, 1)
    [b'a', b'b']
    """

    def __init__(
        self, address: str, *, connect_timeout_s: float = 5.0, request_timeout_s: float = 30.0,
        add_timeout_s: float | None = None, read_timeout_s: float | None = None,
    ) -> None:
        self.address = address
        self._host, self._port = parse_address(address)
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        # BookKeeper's addEntryTimeoutSec / readEntryTimeoutSec: an add or read not answered
        # in time fails alone (the writer replaces the bookie for that ledger, a reader asks
        # the next replica) without waiting for the request timeout that closes the connection.
        self._add_timeout_s = add_timeout_s
        self._read_timeout_s = read_timeout_s
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._ids = count(1)
        self._closed = False

    async def _connection(self) -> _Connection:
        if self._closed:
            raise BookieUnavailableError(f"client of bookie {self.address} is closed")
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            conn = self._conn
            if conn is not None and not conn.lost:
                return conn
            loop = asyncio.get_running_loop()
            try:
                _, fresh = await asyncio.wait_for(
                    loop.create_connection(lambda: _Connection(self.address), self._host, self._port),
                    self._connect_timeout_s,
                )
            except (OSError, TimeoutError) as exc:
                raise BookieUnavailableError(f"bookie {self.address} is not reachable: {exc or 'timeout'}") from None
            self._conn = fresh
            return fresh

    async def _call(self, encode, timeout_s: float | None = None) -> wire.Response:
        """One request; `timeout_s` (shorter than the request timeout) fails only this request
        when it passes, and the connection stays: the bookie may just be slow for this one, and
        its late answer finds no request waiting, so it is dropped."""
        conn = await self._connection()
        request_id = next(self._ids)
        frame = encode(request_id)
        future: asyncio.Future[wire.Response] = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = future
        assert conn.transport is not None
        conn.transport.write(frame)
        try:
            response = await asyncio.wait_for(future, timeout_s or self._request_timeout_s)
        except TimeoutError:
            conn.pending.pop(request_id, None)
            if timeout_s is not None and timeout_s < self._request_timeout_s:
                raise BookieUnavailableError(
                    f"bookie {self.address} did not answer within the {timeout_s:g}s operation timeout"
                ) from None
            # A bookie that does not answer in time is as good as gone for this ledger.
            conn.close(BookieUnavailableError(f"bookie {self.address} did not answer in time"))
            raise BookieUnavailableError(
                f"bookie {self.address} did not answer within {self._request_timeout_s:g}s"
            ) from None
        if response.status != wire.OK:
            raise wire.error_for(response.status, f"bookie {self.address}: {response.reason}")
        return response

    # -- BookieClient -----------------------------------------------------------------------

    async def add_entry(
        self, ledger_id: int, entry_id: int, data: Bytes | Parts, *, recovery_add: bool = False
    ) -> None:
        await self.add_entries(ledger_id, entry_id, [data], recovery_add=recovery_add)

    async def add_entries(
        self, ledger_id: int, first_entry_id: int, entries: Sequence[Bytes | Parts], *, recovery_add: bool = False
    ) -> None:
        # An entry in parts is joined here: the wire frame copies it anyway.
        datas = [b"".join(e) if isinstance(e, tuple) else bytes(e) for e in entries]
        calls = []
        start, size = 0, 0
        for i, data in enumerate(datas):
            if i > start and (size + len(data) > wire.MAX_ADD_BYTES or i - start >= wire.MAX_ENTRIES_PER_ADD):
                calls.append(self._add(ledger_id, first_entry_id + start, datas[start:i], recovery_add))
                start, size = i, 0
            size += len(data)
        if start < len(datas):
            calls.append(self._add(ledger_id, first_entry_id + start, datas[start:], recovery_add))
        if len(calls) == 1:
            await calls[0]
        else:
            await asyncio.gather(*calls)

    async def _add(self, ledger_id: int, first: int, datas: list[bytes], recovery: bool) -> None:
        await self._call(lambda rid: wire.encode_add(rid, ledger_id, first, datas, recovery), self._add_timeout_s)

    async def read_entry(self, ledger_id: int, entry_id: int) -> bytes:
        return (await self.read_entries(ledger_id, entry_id, entry_id))[0]

    async def read_entries(self, ledger_id: int, first: int, last: int) -> list[bytes]:
        """Entries first..last, in as many requests as the answers' size limit takes; stops
        early (NoSuchEntryError only if `first` itself is absent) at the bookie's first gap."""
        out: list[bytes] = []
        while first + len(out) <= last:
            start = first + len(out)
            try:
                response = await self._call(
                    lambda rid, s=start: wire.encode_read(rid, ledger_id, s, last), self._read_timeout_s
                )
            except StorageError:
                if not out:
                    raise
                break
            out.extend(response.entries)
            if start + len(response.entries) <= last and not response.entries:
                break
        return out

    async def read_last_entry_id(self, ledger_id: int) -> int:
        response = await self._call(lambda rid: wire.encode_ledger_op(wire.READ_LAST, rid, ledger_id))
        return response.entry_id

    async def fence(self, ledger_id: int) -> int:
        response = await self._call(lambda rid: wire.encode_ledger_op(wire.FENCE, rid, ledger_id))
        return response.entry_id

    async def delete_ledger(self, ledger_id: int) -> None:
        await self._call(lambda rid: wire.encode_ledger_op(wire.DELETE, rid, ledger_id))

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close(BookieUnavailableError(f"client of bookie {self.address} is closed"))
            self._conn = None
