"""The server-sent-events response of one live-stream client.

Written as a raw ASGI response, not a StreamingResponse, to bound what a stalled client can
hold: each write must finish within `send_timeout`, else the response is abandoned and the
server closes the connection; the client's own queue is bounded by the hub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taureau.dashboard.hub import Event, LiveHub, Subscriber, serialize

# What one client may see of an event (a role's view, dashboard.access); None: all of it.
View = Callable[[Event], Awaitable[Any]]

RETRY_MS = 2000  # a client reconnects this long after a stream ends (the page does, web/src/live.ts)


class EventStream(Response):
    def __init__(self, hub: LiveHub, subscriber: Subscriber, send_timeout: float, view: View | None = None) -> None:
        super().__init__(media_type="text/event-stream")
        self._hub = hub
        self._subscriber = subscriber
        self._send_timeout = send_timeout
        self._view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            await self._send(send, {"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ]})
            await self._body(send, f"retry: {RETRY_MS}\n\n")
            while True:
                get = asyncio.ensure_future(self._subscriber.queue.get())
                await asyncio.wait({get, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():  # the client went away
                    get.cancel()
                    return
                event = get.result()
                if event is None:  # dropped as too slow, or the server stops
                    break
                # Serialized once for all (the hub's text), or here for a client with a view.
                text = event.text if self._view is None else serialize(event.kind, await self._view(event))
                await self._body(send, text)
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            return  # a stalled or broken connection: uvicorn closes it
        finally:
            self._hub.unsubscribe(self._subscriber)
            disconnected.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await disconnected

    async def _body(self, send: Send, text: str) -> None:
        await self._send(send, {"type": "http.response.body", "body": text.encode(), "more_body": True})

    async def _send(self, send: Send, message: dict) -> None:
        await asyncio.wait_for(send(message), self._send_timeout)


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
