"""Who may do what, as Pulsar's PulsarAuthorizationProvider decides it.

- Superusers (`--superuser-roles`, and the server's internal role) may do anything.
- A tenant's admin roles (`adminRoles`) may do anything within the tenant.
- Other roles act on topics by permission, granted on a namespace or on one topic
  (`auth_policies` of the namespace): `produce`, `consume` (a subscription listed in
  `subscription_auth_roles` is further limited to its roles), and on namespaces
  `functions`, `packages`, `sources`, `sinks`. A lookup (or topic stats) needs produce or consume.

Every check reads the namespace policies from the metadata store, so a grant or revoke holds
at once for the next request (connections already producing keep their producer, as Pulsar).
"""

from __future__ import annotations

import logging

from taureau.auth.config import AuthConfig
from taureau.auth.roles import FUNCTION_ROLE_PREFIX, function_role
from taureau.broker.resources import AuthPolicies, ResourceNotFoundError, Resources
from taureau.common.errors import AuthorizationError
from taureau.common.names import NamespaceName, TopicName

log = logging.getLogger("taureau.broker.auth")

LOOKUP = "lookup"  # produce or consume
# A function's instances act as `function:tenant/namespace/name` (auth.roles): they may
# produce and consume within their function's namespace (its submitter had `functions`
# there), and elsewhere only what is granted to that role.


__all__ = ["LOOKUP", "AuthorizationService", "function_role"]


class AuthorizationService:
    def __init__(self, config: AuthConfig, resources: Resources) -> None:
        self.config = config
        self.resources = resources

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def is_superuser(self, role: str | None) -> bool:
        return self.config.is_superuser(role)

    async def is_tenant_admin(self, role: str | None, tenant: str) -> bool:
        if role is None:
            return False
        if self.is_superuser(role):
            return True
        try:
            info = await self.resources.get_tenant(tenant)
        except (ResourceNotFoundError, ValueError):
            return False
        return role in info.adminRoles

    async def _auth_policies(self, ns: NamespaceName) -> AuthPolicies:
        try:
            return (await self.resources.get_policies(ns)).auth_policies
        except ResourceNotFoundError:
            return AuthPolicies()

    def _decided(self, role: str | None) -> bool | None:
        """True or False when the role alone decides (authorization off, no role, a
        superuser); None when its grants must be read."""
        if not self.enabled or self.is_superuser(role):
            return True
        return False if role is None else None

    async def can_topic(self, role: str | None, topic: TopicName, action: str,
                        subscription: str | None = None) -> bool:
        """May `role` do `action` (produce, consume or lookup) on `topic`?"""
        decided = self._decided(role)
        if decided is not None or role is None:
            return bool(decided)
        ns = topic.namespace_name
        if _is_function_of(role, ns):
            return True
        policies = await self._auth_policies(ns)
        granted = set(policies.namespace_auth.get(role, ()))
        granted |= set(policies.destination_auth.get(topic.partitioned_name, {}).get(role, ()))
        if granted & _wanted(action):
            roles = policies.subscription_auth_roles.get(subscription or "") if action == "consume" else None
            if roles is None or role in roles:
                return True
        return await self.is_tenant_admin(role, topic.tenant)

    async def can_namespace(self, role: str | None, ns: NamespaceName, action: str) -> bool:
        """May `role` do `action` (functions, packages, sources, sinks, or lookup: list the
        namespace's topics) in namespace `ns`?"""
        decided = self._decided(role)
        if decided is not None or role is None:
            return bool(decided)
        if action == LOOKUP and _is_function_of(role, ns):
            return True
        if set((await self._auth_policies(ns)).namespace_auth.get(role, ())) & _wanted(action):
            return True
        return await self.is_tenant_admin(role, ns.tenant)

    async def check_topic(self, role: str | None, topic: TopicName, action: str,
                          subscription: str | None = None) -> None:
        if not await self.can_topic(role, topic, action, subscription):
            what = "look up" if action == LOOKUP else action
            on = f" with subscription {subscription}" if subscription else ""
            _refuse(f"role {role} may not {what} on {topic.partitioned_name}{on}")

    async def check_namespace(self, role: str | None, ns: NamespaceName, action: str) -> None:
        if not await self.can_namespace(role, ns, action):
            what = "list topics" if action == LOOKUP else f"use {action}"
            _refuse(f"role {role} may not {what} in namespace {ns}")

    async def check_tenant_admin(self, role: str | None, tenant: str) -> None:
        if self.enabled and not await self.is_tenant_admin(role, tenant):
            _refuse(f"role {role} is not an admin of tenant {tenant}")

    def check_superuser(self, role: str | None) -> None:
        if self.enabled and not self.is_superuser(role):
            _refuse(f"role {role} is not a superuser")


def _refuse(reason: str) -> None:
    log.warning("refused: %s", reason)  # once per refused request
    raise AuthorizationError(reason)


def _wanted(action: str) -> set[str]:
    """The grants any one of which allows `action`."""
    return {"produce", "consume"} if action == LOOKUP else {action}


def _is_function_of(role: str, ns: NamespaceName) -> bool:
    """Is `role` the role of a function in namespace `ns`?"""
    return role.startswith(FUNCTION_ROLE_PREFIX) and role[len(FUNCTION_ROLE_PREFIX):].rsplit("/", 1)[0] == str(ns)
