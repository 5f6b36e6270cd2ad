"""The worker's end of instance channels: a unix-socket server and one InstanceLink per process.

A process connects and says `hello`; until it is given work its link waits in the warm pool.
Its later messages go to whoever owns it then (a supervisor, or a code check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from taureau.functions.channel import ChannelError, Decoder, Message, encode

log = logging.getLogger("taureau.functions.links")

MessageHandler = Callable[["InstanceLink", Message], Awaitable[None] | None]


class InstanceLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.pid = 0
        self.token = ""  # says which runtime started this host
        self.handler: MessageHandler | None = None  # the owner's; None while in the pool
        self.closed = asyncio.Event()
        self._pending: dict[int, asyncio.Future[Message]] = {}  # our requests awaiting a result
        self._next_req = 0
        self._buffered: list[Message] = []  # messages that came before an owner took the link

    def send(self, header: dict[str, Any], blob: bytes = b"") -> None:
        if self.closed.is_set():
            raise ChannelError("instance channel is closed")
        self._writer.write(encode(header, blob))

    async def request(self, header: dict[str, Any], blob: bytes = b"", timeout: float = 30.0) -> Message:
        self._next_req += 1
        req = self._next_req
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        try:
            self.send({**header, "req": req}, blob)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(req, None)

    def set_handler(self, handler: MessageHandler | None) -> None:
        self.handler = handler
        buffered, self._buffered = self._buffered, []
        for message in buffered:
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        if self.handler is None:
            if len(self._buffered) < 100:
                self._buffered.append(message)
            return
        result = self.handler(self, message)
        if asyncio.iscoroutine(result):
            asyncio.ensure_future(result)

    async def read_loop(self, decoder: Decoder) -> None:
        try:
            while True:
                data = await self._reader.read(256 * 1024)
                if not data:
                    break
                for message in decoder.feed(data):
                    header = message.header
                    if header["t"] == "result" and header.get("req") in self._pending:
                        future = self._pending.pop(header["req"])
                        if not future.done():
                            future.set_result(message)
                    else:
                        self._deliver(message)
        except (ConnectionError, ChannelError) as exc:
            log.warning("instance %d channel broken: %s", self.pid, exc)
        finally:
            self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChannelError("instance process went away"))
        self._pending.clear()
        with contextlib.suppress(Exception):
            self._writer.close()
        if self.handler is not None:
            self._deliver(Message({"t": "closed"}, b""))


class LinkServer:
    """Accepts instance processes on a unix socket; hands each new link to `on_link`."""

    def __init__(self, path: str, on_link: Callable[[InstanceLink], None]) -> None:
        self.path = path
        self._on_link = on_link
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._accept, self.path)
        os.chmod(self.path, 0o600)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = InstanceLink(reader, writer)
        decoder = Decoder()
        try:
            data = await asyncio.wait_for(reader.read(64 * 1024), 10.0)
            messages = decoder.feed(data)
        except (TimeoutError, ConnectionError, ChannelError):
            writer.close()
            return
        if not messages or messages[0].header.get("t") != "hello":
            writer.close()
            return
        link.pid = int(messages[0].header.get("pid", 0))
        link.token = str(messages[0].header.get("token", ""))
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._on_link(link)
        for extra in messages[1:]:
            link._deliver(extra)
        try:
            await link.read_loop(decoder)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
