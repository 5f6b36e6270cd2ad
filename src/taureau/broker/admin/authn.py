"""Authenticate every admin REST request when authentication is on: `Authorization: Bearer
<token>`, `Authorization: Basic <base64 user:password>`, or a verified TLS client
certificate. The role goes to `request.state.role`; anything else is answered 401 before a
handler runs (so a refused request changes nothing), logged once with the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

from taureau.auth.providers import AuthenticationService, Credentials
from taureau.broker.admin.body_limit import ASGIApp, Receive, Scope, Send
from taureau.broker.session_auth import identify
from taureau.common.errors import AuthenticationError

log = logging.getLogger("taureau.broker.auth")


def public(path: str) -> bool:
    """The dashboard's page and its files: static, holding no data, and needed before any
    credential (the page asks for the token). Everything they show is read with one."""
    return path == "/" or path.startswith("/dashboard/")


def no_peer_name(scope: Scope) -> str | None:
    return None


def credentials_of(headers: dict[bytes, bytes], peer_name: str | None) -> Credentials:
    """What a request presents; AuthenticationError if it presents nothing usable."""
    header = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return Credentials("token", value.strip().encode())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise AuthenticationError("malformed Basic credentials") from None
        return Credentials("basic", decoded)
    if header:
        raise AuthenticationError(f"unsupported Authorization scheme {scheme!r} (use Bearer or Basic)")
    if peer_name:
        return Credentials("tls", peer_common_name=peer_name)
    raise AuthenticationError("authentication required: send Authorization: Bearer <token> or Basic")


class Authenticate:
    """ASGI middleware: the request's role in scope["state"]["role"], or 401."""

    def __init__(self, app: ASGIApp, service: AuthenticationService,
                 peer_name: Callable[[Scope], str | None] = no_peer_name) -> None:
        self.app = app
        self.service = service
        self.peer_name = peer_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or public(scope.get("path", "/")):
            await self.app(scope, receive, send)
            return
        try:
            credentials = credentials_of(dict(scope.get("headers") or []), self.peer_name(scope))
            identity = await identify(self.service, credentials)
        except AuthenticationError as exc:
            client = scope.get("client") or ("?", 0)
            log.warning("%s:%s: %s %s refused: %s", client[0], client[1], scope.get("method"),
                        scope.get("path"), exc)
            await answer(send, 401, str(exc))
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["role"] = identity.role
        await self.app(scope, receive, send)


async def answer(send: Send, status: int, reason: str) -> None:
    """A refusal before any handler ran: JSON {"reason": ...}, as the API's other errors."""
    body = json.dumps({"reason": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="taureau", Basic realm="taureau"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
