"""What the partitioned-topic routes of both domains (/admin/v2/persistent and
/admin/v2/non-persistent) do alike: the partition count is metadata, whatever the topics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.resources import ConflictError
from taureau.broker.service import BrokerService
from taureau.common.names import TopicName


async def create(service: BrokerService, name: TopicName, body: Any) -> None:
    """PUT .../partitions: `body` partitions; 409 while a non-partitioned topic has the name."""
    if not isinstance(body, int) or isinstance(body, bool) or body < 1:
        raise ValueError("the body must be the number of partitions, an integer >= 1")
    await service.resources.get_policies(name.namespace_name)
    if await service.topic_exists(name):
        raise ConflictError(f"a non-partitioned topic {name} already exists")
    await service.check_room_for_topics(name.namespace_name, body)
    await service.resources.create_partitioned_topic(name, body)


async def update(service: BrokerService, name: TopicName, body: Any) -> None:
    """POST .../partitions: grow to `body` partitions."""
    if not isinstance(body, int) or isinstance(body, bool):
        raise ValueError("the body must be the new number of partitions")
    current = await service.resources.get_partitions(name)
    if current and body > current:
        await service.check_room_for_topics(name.namespace_name, body - current)
    await service.resources.update_partitions(name, body)


async def metadata(service: BrokerService, name: TopicName, check_allow_auto_creation: bool) -> dict:
    """GET .../partitions; with checkAllowAutoCreation it is a client's HTTP lookup and, as its
    binary PARTITIONED_METADATA, may auto-create the topic."""
    if check_allow_auto_creation:
        return {"partitions": await service.partitioned_metadata(name)}
    return {"partitions": await service.resources.get_partitions(name)}


def add_routes(router: APIRouter, domain: str) -> None:
    """PUT, POST and GET .../{topic}/partitions on `router`, for topics of `domain`."""
    path = "/{tenant}/{namespace}/{topic}/partitions"

    def service_and_name(request: Request, tenant: str, namespace: str, topic: str) -> tuple[BrokerService, TopicName]:
        return request.app.state.service, TopicName.parse(f"{domain}://{tenant}/{namespace}/{topic}")

    @router.put(path, status_code=204)
    async def create_partitioned(
        request: Request, tenant: str, namespace: str, topic: str, body: Any = Body(...)
    ) -> Response:
        await create(*service_and_name(request, tenant, namespace, topic), body)
        return Response(status_code=204)

    @router.post(path, status_code=204)
    async def update_partitioned(
        request: Request, tenant: str, namespace: str, topic: str, body: Any = Body(...)
    ) -> Response:
        await update(*service_and_name(request, tenant, namespace, topic), body)
        return Response(status_code=204)

    @router.get(path)
    async def get_partitioned(
        request: Request,
        tenant: str,
        namespace: str,
        topic: str,
        checkAllowAutoCreation: bool = False,  # noqa: N803 - Pulsar's query parameter
    ) -> dict:
        return await metadata(*service_and_name(request, tenant, namespace, topic), checkAllowAutoCreation)
