"""What the worker asks of the broker, over its admin REST API (the same whether the worker
runs inside standalone or on its own): subscription backlogs for scaling, de-duplication
for effectively-once outputs, and dropping a deleted function's subscription."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx

from taureau.common.names import TopicName

MAX_REDIRECTS = 5  # 307s to a topic's owning broker followed at most


class BrokerAdminError(Exception):
    pass


def _topic_path(topic: str) -> str:
    name = TopicName.parse(topic)
    return f"/admin/v2/{name.domain}/{name.tenant}/{name.namespace}/{quote(name.local, safe='')}"


def pattern_namespace(pattern: str) -> tuple[str, str]:
    """The tenant and namespace of a topics pattern (`persistent://t/ns/in-.*`; a pattern
    matches topics of one namespace, as in Pulsar)."""
    rest = pattern.split("://", 1)[-1]
    parts = rest.split("/", 2)
    if len(parts) != 3:
        return "public", "default"
    return parts[0], parts[1]


class BrokerAdmin:
    def __init__(self, admin_url: str, token: str | None = None) -> None:
        # With authentication on, the worker acts as the broker's internal role.
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.AsyncClient(base_url=admin_url.rstrip("/"), timeout=10.0, headers=headers)

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, following a cluster's 307s to the broker that owns the topic with the same
        credentials (httpx's own redirects drop them for another host or port)."""
        target = path
        for _ in range(MAX_REDIRECTS):
            response = await self._http.request(method, target, **kwargs)
            if response.status_code not in (307, 308) or "location" not in response.headers:
                return response
            target = response.headers["location"]
        return await self._http.request(method, target, **kwargs)

    async def _get(self, path: str) -> Any:
        try:
            response = await self._request("GET", path)
        except httpx.HTTPError as exc:
            raise BrokerAdminError(f"broker admin API unreachable: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise BrokerAdminError(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def topics_matching(self, pattern: str) -> list[str]:
        """Topics of the pattern's namespace whose full name matches (`--topics-pattern`)."""
        tenant, namespace = pattern_namespace(pattern)
        listed = await self._get(f"/admin/v2/namespaces/{tenant}/{namespace}/topics") or []
        regex = re.compile(pattern)
        return sorted({TopicName.parse(t).partitioned_name for t in listed if regex.fullmatch(t)})

    async def backlog(self, topic: str, subscription: str) -> int:
        """Messages the subscription has not acknowledged, over every partition (0 if the
        topic or the subscription does not exist yet)."""
        path = _topic_path(topic)
        meta = await self._get(f"{path}/partitions")
        partitioned = bool(meta and meta.get("partitions", 0) > 0)
        stats = await self._get(f"{path}/partitioned-stats" if partitioned else f"{path}/stats")
        if not stats:
            return 0
        sub = (stats.get("subscriptions") or {}).get(subscription)
        return int(sub.get("msgBacklog", 0)) if sub else 0

    async def _partition_paths(self, topic: str) -> list[str]:
        """The REST paths of a topic's partitions, or of the topic itself if it has none."""
        path = _topic_path(topic)
        meta = await self._get(f"{path}/partitions")
        count = meta.get("partitions", 0) if meta else 0
        return [_topic_path(str(TopicName.parse(topic).partition_name(i))) for i in range(count)] or [path]

    async def ensure_subscription(self, topic: str, subscription: str, earliest: bool) -> None:
        """Create the subscription (and the topic) if missing, so a function with no instance
        running still accumulates a backlog, which is what wakes it."""
        position = {"ledgerId": -1, "entryId": -1} if earliest else None
        for target in await self._partition_paths(topic):
            try:
                response = await self._request("PUT", f"{target}/subscription/{quote(subscription, safe='')}",
                                               json=position)
            except httpx.HTTPError as exc:
                raise BrokerAdminError(f"broker admin API unreachable: {exc}") from None
            if response.status_code >= 400 and response.status_code != 409:
                raise BrokerAdminError(f"cannot create subscription {subscription} on {topic}: "
                                       f"{response.text[:200]}")

    async def enable_deduplication(self, topic: str) -> None:
        path = f"{_topic_path(topic)}/deduplication"
        try:
            response = await self._request("POST", path, json=True)
        except httpx.HTTPError as exc:
            raise BrokerAdminError(f"broker admin API unreachable: {exc}") from None
        if response.status_code >= 400:
            raise BrokerAdminError(f"cannot enable de-duplication on {topic}: {response.text[:200]}")

    async def delete_subscription(self, topic: str, subscription: str) -> None:
        for target in await self._partition_paths(topic):
            try:
                await self._request("DELETE", f"{target}/subscription/{quote(subscription, safe='')}",
                                    params={"force": "true"})
            except httpx.HTTPError:
                pass
