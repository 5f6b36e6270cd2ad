"""/admin/v2/non-persistent: non-persistent topics, their partitioned topics and subscriptions.

What exists of such a topic is what is loaded (a topic is made by its first client, or an
admin's PUT, and forgotten once idle). What needs stored messages (backlog, skip, peek,
compaction, last message id, message TTL) is refused with 405 and a reason; a cursor reset
has nothing to move and succeeds, as Pulsar answers it. A subscription is made by a client
only (400 otherwise, as Pulsar).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from taureau.broker.admin import (
    partitioned,
    paths,  # noqa: F401 - registers the `subname` path convertor
)
from taureau.broker.nonpersistent.registry import NonPersistentTopics
from taureau.broker.nonpersistent.topic import NonPersistentTopic
from taureau.broker.resources import ConflictError, PreconditionFailedError, ResourceNotFoundError
from taureau.broker.service import BrokerService
from taureau.common.errors import NotAllowedError
from taureau.common.names import NamespaceName, TopicName

router = APIRouter(prefix="/admin/v2/non-persistent", tags=["non-persistent topics"])
TOPIC = "/{tenant}/{namespace}/{topic}"
SUBSCRIPTION = TOPIC + "/subscription/{subscription:subname}"


def _service(request: Request) -> BrokerService:
    return request.app.state.service


def _topics(request: Request) -> NonPersistentTopics:
    return _service(request).non_persistent


def _name(tenant: str, namespace: str, topic: str) -> TopicName:
    return TopicName.parse(f"non-persistent://{tenant}/{namespace}/{topic}")


def _loaded(request: Request, tenant: str, namespace: str, topic: str) -> NonPersistentTopic:
    return _topics(request).require(_name(tenant, namespace, topic))


def _refuse(what: str) -> None:
    raise NotAllowedError(f"{what} on a non-persistent topic is not allowed: it stores no messages")


# -- namespace listings -----------------------------------------------------------------------


@router.get("/{tenant}/{namespace}")
async def list_topics(request: Request, tenant: str, namespace: str) -> list[str]:
    """The loaded topics and every partition of the partitioned ones, as Pulsar lists them."""
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await service.resources.get_policies(ns)
    return await service.list_topics(ns, "non-persistent")


@router.get("/{tenant}/{namespace}/partitioned")
async def list_partitioned(request: Request, tenant: str, namespace: str) -> list[str]:
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await service.resources.get_policies(ns)
    return await service.resources.list_partitioned_topics(ns, "non-persistent")


# -- topics -----------------------------------------------------------------------------------


@router.put(TOPIC, status_code=204)
async def create_topic(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    name = _name(tenant, namespace, topic)
    topics = _topics(request)
    if topics.find(name) is not None or await _service(request).resources.get_partitions(name):
        raise ConflictError(f"topic {name} already exists")
    await topics.get(name, explicit=True)
    return Response(status_code=204)


@router.delete(TOPIC, status_code=204)
async def delete_topic(request: Request, tenant: str, namespace: str, topic: str, force: bool = False) -> Response:
    name = _name(tenant, namespace, topic)
    await _service(request).resources.get_policies(name.namespace_name)
    await _topics(request).delete(name, force=force)
    return Response(status_code=204)


@router.get(TOPIC + "/stats")
async def topic_stats(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    return _loaded(request, tenant, namespace, topic).stats()


@router.get(TOPIC + "/internalStats")
async def internal_stats(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    loaded = _loaded(request, tenant, namespace, topic)
    return {
        "entriesAddedCounter": loaded.msg_in.count,
        "numberOfEntries": 0,
        "totalSize": 0,
        "cursors": {name: {"active": bool(sub.consumers)} for name, sub in loaded.subscriptions.items()},
    }


@router.get(TOPIC + "/lastMessageId")
async def last_message_id(request: Request, tenant: str, namespace: str, topic: str) -> None:
    _refuse("GetLastMessageId")


@router.api_route(TOPIC + "/compaction", methods=["GET", "PUT"])
async def compaction(request: Request, tenant: str, namespace: str, topic: str) -> None:
    _refuse("Compaction")


@router.get(TOPIC + "/examinemessage")
async def examine_message(request: Request, tenant: str, namespace: str, topic: str) -> None:
    _refuse("Examine message")


@router.post(TOPIC + "/messageTTL")
async def set_message_ttl(request: Request, tenant: str, namespace: str, topic: str) -> None:
    """Nothing waits in a non-persistent topic for a TTL to expire."""
    _refuse("Message TTL")


# -- partitioned topics -----------------------------------------------------------------------


partitioned.add_routes(router, "non-persistent")


@router.delete(TOPIC + "/partitions", status_code=204)
async def delete_partitioned(
    request: Request, tenant: str, namespace: str, topic: str, force: bool = False
) -> Response:
    service, name = _service(request), _name(tenant, namespace, topic)
    if not await service.resources.get_partitions(name):
        raise ResourceNotFoundError(f"partitioned topic {name} does not exist")
    partitions = service.non_persistent.partitions_of(name)
    if not force:  # refuse before forgetting any partition
        for partition in partitions:
            if partition.producers or partition.subscriptions:
                raise PreconditionFailedError(f"partition {partition.name} has connected producers or consumers")
    for partition in partitions:
        await service.non_persistent.delete(partition.name, force=True)
    # The schema stays: Pulsar keys it without the domain, so it may be the persistent topic's.
    await service.resources.delete_partitioned_topic(name)
    return Response(status_code=204)


@router.get(TOPIC + "/partitioned-stats")
async def partitioned_stats(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    service, name = _service(request), _name(tenant, namespace, topic)
    partitions = await service.resources.get_partitions(name)
    if not partitions:
        raise ResourceNotFoundError(f"partitioned topic {name} does not exist")
    sums: dict[str, float] = dict.fromkeys(
        ("msgInCounter", "bytesInCounter", "msgOutCounter", "bytesOutCounter", "msgRateIn", "msgRateOut"), 0
    )
    per_partition: dict[str, dict] = {}
    for partition in service.non_persistent.partitions_of(name):
        stats = per_partition[str(partition.name)] = partition.stats()
        for key in sums:
            sums[key] += stats[key]
    return {**sums, "partitions": per_partition, "metadata": {"partitions": partitions}}


# -- subscriptions ----------------------------------------------------------------------------


@router.get(TOPIC + "/subscriptions")
async def list_subscriptions(request: Request, tenant: str, namespace: str, topic: str) -> list[str]:
    return sorted(_loaded(request, tenant, namespace, topic).subscriptions)


@router.put(SUBSCRIPTION)
async def create_subscription(request: Request, tenant: str, namespace: str, topic: str, subscription: str) -> None:
    # Pulsar's answer, and its status: a subscription lives only while a consumer holds it.
    raise ValueError("Create subscription on non-persistent topic can only be done through client")


@router.delete(SUBSCRIPTION, status_code=204)
async def delete_subscription(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, force: bool = False
) -> Response:
    await _loaded(request, tenant, namespace, topic).unsubscribe(subscription, force=force)
    return Response(status_code=204)


@router.post(SUBSCRIPTION + "/resetcursor", status_code=204)
async def reset_cursor(request: Request, tenant: str, namespace: str, topic: str, subscription: str) -> Response:
    """There is no cursor to move: success for a subscription that exists, as Pulsar."""
    _loaded(request, tenant, namespace, topic).get_subscription(subscription)
    return Response(status_code=204)


@router.post(SUBSCRIPTION + "/resetcursor/{timestamp}", status_code=204)
async def reset_cursor_to(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, timestamp: int
) -> Response:
    """The path's parameters are declared (and validated) as on persistent topics."""
    return await reset_cursor(request, tenant, namespace, topic, subscription)


@router.post(SUBSCRIPTION + "/skip_all")
async def skip_all(request: Request, tenant: str, namespace: str, topic: str, subscription: str) -> None:
    _refuse("Skipping messages")


@router.post(SUBSCRIPTION + "/skip/{count}")
async def skip(request: Request, tenant: str, namespace: str, topic: str, subscription: str, count: int) -> None:
    _refuse("Skipping messages")


@router.get(SUBSCRIPTION + "/position/{n}")
async def peek(request: Request, tenant: str, namespace: str, topic: str, subscription: str, n: int) -> None:
    _refuse("Peek messages")
