"""Namespace limits on Pulsar's REST paths, so that one tenant cannot starve the others:
`maxProducersPerTopic`, `maxConsumersPerTopic`, `maxSubscriptionsPerTopic`, `maxTopicsPerNamespace` (an integer, 0 for no
limit) and `publishRate` (Pulsar's PublishRate, applied to each topic of the namespace)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.admin.namespaces import count_routes, get_policies, set_policy
from taureau.broker.resources import PublishRate, check_limit

router = APIRouter(prefix="/admin/v2/namespaces", tags=["namespaces"])

# REST path -> policy field
_COUNTS = {
    "maxProducersPerTopic": "max_producers_per_topic",
    "maxConsumersPerTopic": "max_consumers_per_topic",
    "maxSubscriptionsPerTopic": "max_subscriptions_per_topic",
    "maxTopicsPerNamespace": "max_topics_per_namespace",
}


for _path, _field in _COUNTS.items():
    count_routes(router, _path, _field, check_limit, None)


@router.get("/{tenant}/{namespace}/publishRate")
async def get_publish_rate(request: Request, tenant: str, namespace: str) -> dict | None:
    return (await get_policies(request, tenant, namespace))["publishMaxMessageRate"]


@router.post("/{tenant}/{namespace}/publishRate", status_code=204)
async def set_publish_rate(request: Request, tenant: str, namespace: str, body: Any = Body(...)) -> Response:
    return await set_policy(request, tenant, namespace, "publishMaxMessageRate", PublishRate.from_json(body))


@router.delete("/{tenant}/{namespace}/publishRate", status_code=204)
async def remove_publish_rate(request: Request, tenant: str, namespace: str) -> Response:
    return await set_policy(request, tenant, namespace, "publishMaxMessageRate", None)
