"""Permissions, on Pulsar's REST paths: granted and revoked on a namespace
(`/admin/v2/namespaces/{t}/{ns}/permissions/{role}`), on one topic
(`/admin/v2/persistent/{t}/{ns}/{topic}/permissions/{role}`, or `non-persistent`) and per subscription
(`.../permissions/subscription/{sub}`). They live in the namespace's `auth_policies`, changed
by compare-and-set like every other policy. A role may hold `/` (a function's role): send it
as `%2F`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.admin import paths  # noqa: F401 - registers the `subname` path convertor
from taureau.broker.resources import NamespacePolicies, PreconditionFailedError, check_actions
from taureau.common.names import NamespaceName, TopicName

namespaces = APIRouter(prefix="/admin/v2/namespaces", tags=["permissions"])
topics = APIRouter(prefix="/admin/v2/persistent", tags=["permissions"])
non_persistent_topics = APIRouter(prefix="/admin/v2/non-persistent", tags=["permissions"])  # same routes


def _ns(tenant: str, namespace: str) -> NamespaceName:
    return NamespaceName.parse(f"{tenant}/{namespace}")


async def _change(request: Request, ns: NamespaceName, change) -> Response:
    await request.app.state.service.resources.update_policies(ns, change)
    return Response(status_code=204)


async def _policies(request: Request, ns: NamespaceName) -> NamespacePolicies:
    return await request.app.state.service.resources.get_policies(ns)


async def _grant(request: Request, ns: NamespaceName, grants: str, key: str, value: list[str]) -> Response:
    """Set one entry of the namespace's `auth_policies.<grants>` map."""

    def change(policies: NamespacePolicies) -> None:
        getattr(policies.auth_policies, grants)[key] = value

    return await _change(request, ns, change)


def _roles(body: Any) -> list[str]:
    if not isinstance(body, list) or not all(isinstance(r, str) and r for r in body):
        raise ValueError("roles must be a list of role names")
    return sorted(set(body))


@namespaces.get("/{tenant}/{namespace}/permissions")
async def namespace_permissions(request: Request, tenant: str, namespace: str) -> dict[str, list[str]]:
    return (await _policies(request, _ns(tenant, namespace))).auth_policies.namespace_auth


@namespaces.get("/{tenant}/{namespace}/permissions/subscription")
async def subscription_permissions(request: Request, tenant: str, namespace: str) -> dict[str, list[str]]:
    return (await _policies(request, _ns(tenant, namespace))).auth_policies.subscription_auth_roles


@namespaces.post("/{tenant}/{namespace}/permissions/subscription/{subscription:subname}", status_code=204)
async def grant_subscription(request: Request, tenant: str, namespace: str, subscription: str,
                             body: Any = Body(...)) -> Response:
    return await _grant(request, _ns(tenant, namespace), "subscription_auth_roles", subscription, _roles(body))


@namespaces.delete("/{tenant}/{namespace}/permissions/{subscription:subname}/{role:subname}", status_code=204)
async def revoke_subscription(request: Request, tenant: str, namespace: str, subscription: str,
                              role: str) -> Response:
    def change(policies: NamespacePolicies) -> None:
        roles = policies.auth_policies.subscription_auth_roles
        if role not in roles.get(subscription, ()):
            raise PreconditionFailedError(f"role {role} has no permission on subscription {subscription}")
        roles[subscription] = [r for r in roles[subscription] if r != role]
        if not roles[subscription]:
            del roles[subscription]

    return await _change(request, _ns(tenant, namespace), change)


@namespaces.post("/{tenant}/{namespace}/permissions/{role:subname}", status_code=204)
async def grant_namespace(request: Request, tenant: str, namespace: str, role: str,
                          body: Any = Body(...)) -> Response:
    return await _grant(request, _ns(tenant, namespace), "namespace_auth", role, check_actions(body))


@namespaces.delete("/{tenant}/{namespace}/permissions/{role:subname}", status_code=204)
async def revoke_namespace(request: Request, tenant: str, namespace: str, role: str) -> Response:
    def change(policies: NamespacePolicies) -> None:
        policies.auth_policies.namespace_auth.pop(role, None)

    return await _change(request, _ns(tenant, namespace), change)


def _topic(request: Request, tenant: str, namespace: str, topic: str) -> TopicName:
    """The topic named by the path, of the domain of the router the request came through."""
    domain = "non-persistent" if request.url.path.startswith(non_persistent_topics.prefix + "/") else "persistent"
    return TopicName.parse(f"{domain}://{tenant}/{namespace}/{topic}")


@topics.get("/{tenant}/{namespace}/{topic}/permissions")
async def topic_permissions(request: Request, tenant: str, namespace: str, topic: str) -> dict[str, list[str]]:
    """What each role may do on the topic: its namespace's grants and the topic's own."""
    name = _topic(request, tenant, namespace, topic)
    auth = (await _policies(request, name.namespace_name)).auth_policies
    merged = {role: set(actions) for role, actions in auth.namespace_auth.items()}
    for role, actions in auth.destination_auth.get(name.partitioned_name, {}).items():
        merged.setdefault(role, set()).update(actions)
    return {role: sorted(actions) for role, actions in merged.items()}


@topics.post("/{tenant}/{namespace}/{topic}/permissions/{role:subname}", status_code=204)
async def grant_topic(request: Request, tenant: str, namespace: str, topic: str, role: str,
                      body: Any = Body(...)) -> Response:
    name = _topic(request, tenant, namespace, topic)
    actions = check_actions(body)

    def change(policies: NamespacePolicies) -> None:
        policies.auth_policies.destination_auth.setdefault(name.partitioned_name, {})[role] = actions

    return await _change(request, name.namespace_name, change)


@topics.delete("/{tenant}/{namespace}/{topic}/permissions/{role:subname}", status_code=204)
async def revoke_topic(request: Request, tenant: str, namespace: str, topic: str, role: str) -> Response:
    name = _topic(request, tenant, namespace, topic)

    def change(policies: NamespacePolicies) -> None:
        grants = policies.auth_policies.destination_auth.get(name.partitioned_name, {})
        if role not in grants:
            # As Pulsar: a namespace grant is revoked on the namespace, not on one topic.
            raise PreconditionFailedError(f"role {role} has no permission set on topic {name.partitioned_name}")
        del grants[role]
        if not grants:
            del policies.auth_policies.destination_auth[name.partitioned_name]

    return await _change(request, name.namespace_name, change)


non_persistent_topics.get("/{tenant}/{namespace}/{topic}/permissions")(topic_permissions)
non_persistent_topics.post("/{tenant}/{namespace}/{topic}/permissions/{role:subname}", status_code=204)(grant_topic)
non_persistent_topics.delete("/{tenant}/{namespace}/{topic}/permissions/{role:subname}", status_code=204)(revoke_topic)
