"""Authorize every admin REST request by its path, before a handler runs (so a refused
request changes nothing): 403 with the reason. Runs inside `Authenticate`, which put the
role in scope["state"]["role"].

The rules follow Pulsar's: tenants are the superusers' (a tenant's admins may read it);
namespaces, their policies and permissions, and creating, deleting or configuring topics are
the tenant admins'; reading a topic's stats or listing topics needs produce or consume;
subscriptions (create, skip, reset, peek, delete) need consume on the subscription; reading a
topic's schema needs produce or consume, changing it is the tenant admins';
functions and sketches need the namespace's `functions` permission. A path no rule names is
the superusers' alone, except the API's own description, /metrics and the dashboard's stream
and whoami (any role; they show a role only its own), and the dashboard's static page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from taureau.broker.admin.authn import answer, public
from taureau.broker.admin.body_limit import ASGIApp, Receive, Scope, Send
from taureau.broker.authorization import LOOKUP, AuthorizationService
from taureau.common.errors import AuthorizationError, TaureauError
from taureau.common.names import NamespaceName, TopicName

Check = Callable[[AuthorizationService, str | None], Awaitable[None]]
# Any authenticated role; the dashboard's stream and whoami show each role only its own.
_OPEN = {"/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/admin/v3/sketches/kinds",
         "/admin/taureau/live", "/admin/taureau/whoami"}
_DOMAINS = ("persistent", "non-persistent")
# Topic sub-paths that only read what a producer or consumer may see.
_TOPIC_READS = {"stats", "internalStats", "internal-info", "lastMessageId", "partitioned-stats", "partitions"}


def _segments(path: str) -> list[str]:
    # A `%2F` kept by KeepEncodedSlashes belongs to one segment (a subscription name).
    return [unquote(part) for part in path.strip("/").split("/")]


def _superuser(authz: AuthorizationService, role: str | None) -> Awaitable[None]:
    async def check() -> None:
        authz.check_superuser(role)

    return check()


def _tenant_admin(tenant: str) -> Check:
    return lambda authz, role: authz.check_tenant_admin(role, tenant)


def _namespace(ns: NamespaceName, action: str) -> Check:
    return lambda authz, role: authz.check_namespace(role, ns, action)


def _topic(topic: TopicName, action: str, subscription: str | None = None) -> Check:
    return lambda authz, role: authz.check_topic(role, topic, action, subscription)


async def _anyone(authz: AuthorizationService, role: str | None) -> None:
    return None


def rule_for(method: str, path: str) -> Check:
    """What a request must be allowed; raises TaureauError for names that do not parse."""
    if path in _OPEN or public(path):
        return _anyone
    s = _segments(path)
    if s[:2] == ["admin", "v2"]:
        return _admin_v2(method, s[2:])
    if s[:3] in (["admin", "v3", "functions"], ["admin", "v3", "sketches"]) and len(s) >= 5:
        return _namespace(NamespaceName.parse(f"{s[3]}/{s[4]}"), "functions")
    if s[:1] == ["functions"] and len(s) >= 3:  # invoking a function over HTTP
        return _namespace(NamespaceName.parse(f"{s[1]}/{s[2]}"), "functions")
    if s[:3] == ["lookup", "v2", "topic"] and len(s) >= 7:
        return _topic(TopicName.parse(f"{s[3]}://{s[4]}/{s[5]}/{s[6]}"), LOOKUP)
    return _superuser


def _admin_v2(method: str, s: list[str]) -> Check:
    if s[:1] == ["tenants"]:
        if len(s) == 2 and method in ("GET", "HEAD"):
            return _tenant_admin(s[1])
        return _superuser
    if s[:1] == ["namespaces"] and len(s) >= 2:
        if len(s) >= 4 and s[3] == "topics" and method in ("GET", "HEAD"):
            return _namespace(NamespaceName.parse(f"{s[1]}/{s[2]}"), LOOKUP)
        return _tenant_admin(s[1])
    if s[:1] == ["schemas"] and len(s) >= 5:
        topic = TopicName.parse(f"persistent://{s[1]}/{s[2]}/{s[3]}")
        # Reading a schema or testing one against it is a client's business; changing it, the admins'.
        reads = method in ("GET", "HEAD") or (method == "POST" and s[4:5] in (["compatibility"], ["version"]))
        return _topic(topic, LOOKUP) if reads else _tenant_admin(topic.tenant)
    if s[:1] and s[0] in _DOMAINS and len(s) >= 3:
        ns = NamespaceName.parse(f"{s[1]}/{s[2]}")
        if len(s) == 3 or (len(s) == 4 and s[3] == "partitioned"):
            return _namespace(ns, LOOKUP) if method in ("GET", "HEAD") else _tenant_admin(ns.tenant)
        topic = TopicName.parse(f"{s[0]}://{s[1]}/{s[2]}/{s[3]}")
        rest = s[4:]
        if rest[:1] == ["subscription"] and len(rest) >= 2:
            return _topic(topic, "consume", rest[1])
        if rest == ["subscriptions"] and method in ("GET", "HEAD"):
            return _topic(topic, "consume")
        if len(rest) == 1 and rest[0] in _TOPIC_READS and method in ("GET", "HEAD"):
            return _topic(topic, LOOKUP)
        return _tenant_admin(ns.tenant)
    return _superuser


class Authorize:
    """ASGI middleware: the request's rule checked for its role, or 403 (400 for a name that
    does not parse, as the handler would answer)."""

    def __init__(self, app: ASGIApp, authorization: AuthorizationService) -> None:
        self.app = app
        self.authorization = authorization

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        role = (scope.get("state") or {}).get("role")
        try:
            check = rule_for(scope.get("method", "GET"), scope.get("path", "/"))
            await check(self.authorization, role)
        except AuthorizationError as exc:
            await answer(send, 403, str(exc))
            return
        except (TaureauError, ValueError) as exc:
            await answer(send, 400, str(exc))
            return
        await self.app(scope, receive, send)
