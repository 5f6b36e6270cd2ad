"""Dispatch rates, subscription expiration and inactive-topic policies on Pulsar's REST paths:
namespace-level (on the namespace's policies) and, where Pulsar has them, topic-level (on the
topic's own policies, which win over the namespace's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.admin.namespaces import count_routes
from taureau.broker.dispatch.rate import DispatchRate
from taureau.broker.dispatch_policies import TOPIC_DISPATCH_RATE, TOPIC_SUBSCRIPTION_DISPATCH_RATE
from taureau.broker.inactive_topics import TOPIC_INACTIVE_POLICIES, InactiveTopicPolicies
from taureau.broker.subscription_expiration import check_expiration_minutes
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
