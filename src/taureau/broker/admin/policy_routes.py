"""Dispatch rates, subscription expiration and inactive-topic policies on Pulsar's REST paths:
namespace-level (on the namespace's policies) and, where Pulsar has them, topic-level (on the
topic's own policies, which win over the namespace's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.admin.namespaces import count_routes
from taureau.broker.dispatch.rate import DispatchRate
from taureau.broker.dispatch_policies import (
    SUBSCRIPTION_POLICIES,
    TOPIC_DISPATCH_RATE,
    TOPIC_SUBSCRIPTION_DISPATCH_RATE,
)
from taureau.broker.inactive_topics import TOPIC_INACTIVE_POLICIES, InactiveTopicPolicies
from taureau.broker.subscription_expiration import check_expiration_minutes
from taureau.common.errors import SubscriptionNotFoundError
from taureau.common.names import TopicName

namespaces = APIRouter(prefix="/admin/v2/namespaces", tags=["namespaces"])
topics = APIRouter(prefix="/admin/v2/persistent", tags=["topics"])


count_routes(namespaces, "dispatchRate", "topicDispatchRate", lambda body, _: DispatchRate.from_json(body), None)
count_routes(namespaces, "subscriptionDispatchRate", "subscriptionDispatchRate",
             lambda body, _: DispatchRate.from_json(body), None)
count_routes(namespaces, "subscriptionExpirationTime", "subscription_expiration_time_minutes", lambda body, _: check_expiration_minutes(body), 0)
count_routes(namespaces, "inactiveTopicPolicies", "inactive_topic_policies",
             lambda body, _: InactiveTopicPolicies.from_json(body), None)


def _topic_policy_routes(path: str, key: str, parse: Callable[[Any], Any]) -> None:
    """GET, POST (the body checked by `parse`, stored as Pulsar's JSON) and DELETE of one
    topic-level policy; a change is pushed into the loaded topic (or its partitions)."""

    def name_of(tenant: str, namespace: str, topic: str) -> TopicName:
        return TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")

    async def get_policy(request: Request, tenant: str, namespace: str, topic: str) -> Any:
        return await request.app.state.service.resources.get_topic_policy(name_of(tenant, namespace, topic), key)

    async def store(request: Request, name: TopicName, value: Any) -> Response:
        service = request.app.state.service
        await service.resources.get_policies(name.namespace_name)  # 404 for an unknown namespace
        await service.resources.set_topic_policy(name, key, value)
        await service.apply_topic_policies(name)
        return Response(status_code=204)

    async def set_policy(request: Request, tenant: str, namespace: str, topic: str, body: Any = Body(...)) -> Response:
        return await store(request, name_of(tenant, namespace, topic), parse(body))

    async def remove_policy(request: Request, tenant: str, namespace: str, topic: str) -> Response:
        return await store(request, name_of(tenant, namespace, topic), None)

    route = f"/{{tenant}}/{{namespace}}/{{topic}}/{path}"
    topics.add_api_route(route, get_policy, methods=["GET"], name=f"get_topic_{path}")
    topics.add_api_route(route, set_policy, methods=["POST"], status_code=204, name=f"set_topic_{path}")
    topics.add_api_route(route, remove_policy, methods=["DELETE"], status_code=204, name=f"remove_topic_{path}")


_topic_policy_routes("dispatchRate", TOPIC_DISPATCH_RATE, lambda body: DispatchRate.from_json(body).to_json())
_topic_policy_routes("subscriptionDispatchRate", TOPIC_SUBSCRIPTION_DISPATCH_RATE,
                     lambda body: DispatchRate.from_json(body).to_json())
_topic_policy_routes("inactiveTopicPolicies", TOPIC_INACTIVE_POLICIES,
                     lambda body: _asdict(InactiveTopicPolicies.from_json(body)))


def _asdict(policies: InactiveTopicPolicies) -> dict[str, Any]:
    return {"inactiveTopicDeleteMode": policies.inactiveTopicDeleteMode,
            "maxInactiveDurationSeconds": policies.maxInactiveDurationSeconds,
            "deleteWhileInactive": policies.deleteWhileInactive}


# -- one subscription's own dispatch rate -----------------------------------------------------

_SUBSCRIPTION_RATE = "/{tenant}/{namespace}/{topic}/{subscription:subname}/dispatchRate"


async def _subscription_rates(request: Request, name: TopicName) -> dict[str, Any]:
    return await request.app.state.service.resources.get_topic_policy(name, SUBSCRIPTION_POLICIES) or {}


async def _check_subscription(request: Request, name: TopicName, subscription: str) -> None:
    """404 unless the topic (or one of its partitions) has the subscription: a rate for a
    subscription that does not exist would be kept for nothing."""
    service = request.app.state.service
    targets = await service.stored_partitions(name) if await service.resources.get_partitions(name) else [name]
    for target in targets:
        if await service.topic_exists(target) and subscription in (
            await service.get_topic(target, create=False)
        ).subscriptions:
            return
    raise SubscriptionNotFoundError(f"subscription {subscription} does not exist on {name}")


@topics.get(_SUBSCRIPTION_RATE)
async def get_subscription_rate(request: Request, tenant: str, namespace: str, topic: str,
                                subscription: str) -> dict | None:
    own = await _subscription_rates(request, TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}"))
    return own.get(subscription, {}).get("dispatchRate")


@topics.post(_SUBSCRIPTION_RATE, status_code=204)
async def set_subscription_rate(request: Request, tenant: str, namespace: str, topic: str, subscription: str,
                                body: Any = Body(...)) -> Response:
    rate = DispatchRate.from_json(body).to_json()
    name = TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")
    await _check_subscription(request, name, subscription)
    return await _store_subscription_rate(request, name, subscription, rate)


@topics.delete(_SUBSCRIPTION_RATE, status_code=204)
async def remove_subscription_rate(request: Request, tenant: str, namespace: str, topic: str,
                                   subscription: str) -> Response:
    name = TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")
    return await _store_subscription_rate(request, name, subscription, None)


async def _store_subscription_rate(request: Request, name: TopicName, subscription: str,
                                   rate: dict | None) -> Response:
    service = request.app.state.service
    own = await _subscription_rates(request, name)
    if rate is None:
        own.pop(subscription, None)
    else:
        own[subscription] = {"dispatchRate": rate}
    await service.resources.set_topic_policy(name, SUBSCRIPTION_POLICIES, own or None)
    await service.apply_topic_policies(name)
    return Response(status_code=204)
