"""Calls to the other function workers' REST APIs (status of their instances, restarts), with
the worker's own token when authentication is on (a superuser's, as it calls the broker)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

PEER_TIMEOUT_S = 5.0


class PeerError(Exception):
    """A peer did not answer, or answered an error other than 404."""


def function_path(fqfn: str) -> str:
    return "/admin/v3/functions/" + "/".join(quote(part, safe="") for part in fqfn.split("/"))


class Peers:
    def __init__(self, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(timeout=PEER_TIMEOUT_S, headers=headers, follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def instance(self, url: str, fqfn: str, instance_id: int, what: str) -> Any | None:
        """GET an instance's `status` or `stats` at the worker running it; None on 404."""
        try:
            response = await self._http.get(f"{url}{function_path(fqfn)}/{instance_id}/{what}")
        except httpx.HTTPError as exc:
            raise PeerError(f"worker {url} did not answer: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PeerError(f"worker {url} answered {response.status_code}: {response.text[:200]}")
        return response.json()

    async def restart(self, url: str, fqfn: str, instance_id: int) -> None:
        try:
            response = await self._http.post(f"{url}{function_path(fqfn)}/{instance_id}/restart")
        except httpx.HTTPError as exc:
            raise PeerError(f"worker {url} did not answer: {exc}") from None
        if response.status_code not in (204, 404):
            raise PeerError(f"worker {url} answered {response.status_code}: {response.text[:200]}")

    async def state_op(self, url: str, fqfn: str, header: dict[str, Any], blob: bytes) -> Any:
        """One instance's state op at the worker holding the function's table."""
        params = {"op": str(header.get("op", "")), "key": str(header.get("key", "")),
                  "amount": str(header.get("amount", 0))}
        try:
            response = await self._http.post(f"{url}{function_path(fqfn)}/state-op", params=params, content=blob)
        except httpx.HTTPError as exc:
            raise PeerError(f"worker {url} did not answer: {exc}") from None
        if response.status_code != 200:
            raise PeerError(f"worker {url} answered {response.status_code}: {response.text[:200]}")
        return response.json()
