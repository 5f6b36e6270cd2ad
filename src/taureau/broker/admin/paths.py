"""Path segments that hold a `/`: subscription names such as a function's
`tenant/namespace/name`, which clients send with the slash escaped as `%2F`."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send


class SubscriptionNameConvertor(Convertor):
    """A path segment that may hold `/` sent as `%2F` (a function's subscription is
    `tenant/namespace/name`); `keep_encoded_slashes` leaves those escaped for routing."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value.replace("%2F", "/")

    def to_string(self, value: str) -> str:
        return value.replace("/", "%2F")


register_url_convertor("subname", SubscriptionNameConvertor())


class KeepEncodedSlashes:
    """Route on the raw path with `%2F` kept as `%2F` (uvicorn decodes it to `/`, which
    would split one segment in two); the `subname` convertor decodes it afterwards."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%2f" in raw.lower():
            path = raw.split(b"?", 1)[0].decode("latin-1")
            scope = dict(scope, path=unquote(path.replace("%2F", "%252F").replace("%2f", "%252F")))
        await self.app(scope, receive, send)
