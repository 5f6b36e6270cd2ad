"""Serve an ASGI app with uvicorn inside the caller's event loop (no signal capture of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from taureau.net.tls import peer_common_name


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the process owner handles signals, not uvicorn
        yield


def _recording_protocol(names: dict[Any, str]) -> type:
    """uvicorn's HTTP protocol, noting each TLS connection's verified client certificate CN
    by the client address uvicorn puts in the request scope (scope["client"])."""

    class Recording(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            name = peer_common_name(transport)
            if name is not None and self.client is not None:
                names[tuple(self.client)] = name

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client is not None:
                names.pop(tuple(self.client), None)
            super().connection_lost(exc)

    return Recording


class WebServer:
    """An ASGI app served on host:port; port 0 picks a free port. With `ssl_context`, HTTPS,
    and `peer_names` gets, by a request's scope["client"], its client certificate's CN."""

    def __init__(self, app, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                 peer_names: dict[Any, str] | None = None) -> None:
        self.peer_names: dict[Any, str] = peer_names if peer_names is not None else {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = self._sock.getsockname()[1]
        # A request still running at shutdown gets a few seconds, then its connection is cut.
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=3,
            http=_recording_protocol(self.peer_names) if ssl_context is not None else "auto",
        )
        if ssl_context is not None:
            config.load()
            config.ssl = ssl_context  # ours, reloaded in place when the certificate changes
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()
