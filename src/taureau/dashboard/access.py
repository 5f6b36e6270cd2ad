"""What a role may see of the dashboard when authentication is on.

`whoami` tells the page who it is talking as and where to look: the tenants the role
administers, and the namespaces where it holds a grant (a role that is neither may not list
tenants or namespaces, so the page could not find them otherwise). `RoleView` cuts each live
sample down to what the role may read over REST: the topics it may look up, the functions of
namespaces where it holds `functions`, totals over those topics only; no history of totals
and no state layer (both are the whole server's: superusers only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from taureau.broker.authorization import LOOKUP, AuthorizationService
from taureau.broker.resources import ResourceNotFoundError, Resources
from taureau.common.names import NamespaceName, TopicName
from taureau.dashboard.hub import Event
from taureau.dashboard.samples import TOTAL_KEYS

MAX_TENANTS = 1000  # tenants read by whoami (a server with more lists the first ones)
MAX_NAMESPACES = 10_000  # namespaces whose grants whoami reads, over all tenants
DECISION_TTL = 5.0  # seconds a view trusts a decision: a revoke holds within this
MAX_DECISIONS = 4096  # decisions cached per view; past it the cache starts again


async def whoami(authz: AuthorizationService, resources: Resources, role: str | None) -> dict[str, Any]:
    """The caller's role, whether it is a superuser, and where it may look."""
    if not authz.enabled:
        return {"role": None, "authentication": False, "superuser": True, "tenants": [], "namespaces": []}
    superuser = authz.is_superuser(role)
    tenants: list[str] = []
    namespaces: list[str] = []
    scanned = 0
    for tenant in (await resources.list_tenants())[:MAX_TENANTS]:
        if await authz.is_tenant_admin(role, tenant):
            tenants.append(tenant)
            continue
        try:
            names = await resources.list_namespaces(tenant)
        except ResourceNotFoundError:  # deleted meanwhile
            continue
        for name in names[: max(MAX_NAMESPACES - scanned, 0)]:
            scanned += 1
            try:
                grants = (await resources.get_policies(NamespaceName.parse(name))).auth_policies.namespace_auth
            except ResourceNotFoundError:
                continue
            if grants.get(role or ""):
                namespaces.append(name)
    return {"role": role, "authentication": True, "superuser": superuser, "tenants": tenants,
            "namespaces": namespaces}


class RoleView:
    """A live-stream client's view of each event, for a role that is not a superuser.
    Decisions are the admin API's own (`can_topic` lookup, `can_namespace` functions), cached
    for DECISION_TTL seconds so that a sample of 1,000 topics does not read 1,000 policies."""

    def __init__(self, authz: AuthorizationService, role: str | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._authz = authz
        self._role = role
        self._clock = clock
        self._decided: dict[tuple[str, str], tuple[float, bool]] = {}

    async def __call__(self, event: Event) -> Any:
        if event.kind != "sample":
            return []  # the history of the whole server's totals
        sample = event.data
        topics = [row for row in sample.get("topics", []) if await self._may("topic", row["name"])]
        view: dict[str, Any] = {
            "t": sample["t"],
            "totals": {key: sum(row[key] for row in topics) for key in TOTAL_KEYS},
            "topics": topics,
            "topicCount": len(topics),
        }
        if "functions" in sample:
            view["functions"] = [row for row in sample["functions"]
                                 if await self._may("functions", row["fqfn"].rsplit("/", 1)[0])]
        return view

    async def _may(self, kind: str, name: str) -> bool:
        now = self._clock()
        cached = self._decided.get((kind, name))
        if cached is not None and now - cached[0] < DECISION_TTL:
            return cached[1]
        if kind == "topic":
            allowed = await self._authz.can_topic(self._role, TopicName.parse(name), LOOKUP)
        else:
            allowed = await self._authz.can_namespace(self._role, NamespaceName.parse(name), "functions")
        if len(self._decided) >= MAX_DECISIONS:
            self._decided.clear()
        self._decided[(kind, name)] = (now, allowed)
        return allowed
