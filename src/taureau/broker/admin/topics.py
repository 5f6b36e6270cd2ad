"""/admin/v2/persistent: topics, partitioned topics and subscriptions."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.admin import (
    partitioned,
    paths,  # noqa: F401 - registers the `subname` path convertor
)
from taureau.broker.admin.decoded import decoded_message
from taureau.broker.admin.headers import peek_headers
from taureau.broker.ownership.rest import at_owner
from taureau.broker.policies import TOPIC_TTL
from taureau.broker.resources import ResourceNotFoundError
from taureau.broker.schemas.compatibility import Strategy
from taureau.broker.schemas.topics import TOPIC_STRATEGY
from taureau.common.names import NamespaceName, TopicName
from taureau.protocol import parse_metadata, split_batch
from taureau.storage.managed_ledger.persisted_info import persisted_info
from taureau.storage.position import EARLIEST, LATEST, Position

router = APIRouter(prefix="/admin/v2/persistent", tags=["topics"])


def _service(request: Request):
    return request.app.state.service


def _topic_name(tenant: str, namespace: str, topic: str) -> TopicName:
    return TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")


async def _topic(request: Request, tenant: str, namespace: str, topic: str):
    name = _topic_name(tenant, namespace, topic)
    service = _service(request)
    if not await service.topic_exists(name):
        raise ResourceNotFoundError(f"topic {name} does not exist")
    return await service.get_topic(name, create=False)


def _position_body(body: Any) -> Position | None:
    """A MessageId JSON body {"ledgerId": L, "entryId": E}; None means latest."""
    if body is None:
        return None
    if not isinstance(body, dict) or not {"ledgerId", "entryId"} <= set(body):
        raise ValueError('message id must be {"ledgerId": <int>, "entryId": <int>}')
    ledger_id, entry_id = body["ledgerId"], body["entryId"]
    if not isinstance(ledger_id, int) or not isinstance(entry_id, int):
        raise ValueError("ledgerId and entryId must be integers")
    if ledger_id < 0:
        return EARLIEST
    if ledger_id == LATEST.ledger_id:
        return LATEST
    return Position(ledger_id, entry_id)


# -- namespace listings -----------------------------------------------------------------------


@router.get("/{tenant}/{namespace}")
async def list_topics(request: Request, tenant: str, namespace: str) -> list[str]:
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await service.resources.get_policies(ns)
    return await service.list_topics(ns)


@router.get("/{tenant}/{namespace}/partitioned")
async def list_partitioned(request: Request, tenant: str, namespace: str) -> list[str]:
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await service.resources.get_policies(ns)
    return await service.resources.list_partitioned_topics(ns)


# -- topics -----------------------------------------------------------------------------------


@router.put("/{tenant}/{namespace}/{topic}", status_code=204)
async def create_topic(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    await _service(request).create_topic(_topic_name(tenant, namespace, topic))
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/{topic}", status_code=204)
async def delete_topic(
    request: Request, tenant: str, namespace: str, topic: str, force: bool = False
) -> Response:
    name = _topic_name(tenant, namespace, topic)
    await _topic(request, tenant, namespace, topic)
    await _service(request).delete_topic(name, force=force)
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{topic}/stats")
async def topic_stats(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    loaded = await _topic(request, tenant, namespace, topic)
    stats = loaded.stats()
    rates = _service(request).rates.get(str(loaded.name), {})
    for key in ("msgRateIn", "msgRateOut", "msgThroughputIn", "msgThroughputOut"):
        stats[key] = rates.get(key, 0.0)
    return stats


@router.get("/{tenant}/{namespace}/{topic}/internalStats")
async def internal_stats(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    return (await _topic(request, tenant, namespace, topic)).ledger.internal_stats()


@router.get("/{tenant}/{namespace}/{topic}/internal-info")
async def internal_info(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    """What the metadata holds (`pulsar-admin topics info-internal`): the ledger list and each
    cursor's saved position, where internalStats shows the positions in memory."""
    loaded = await _topic(request, tenant, namespace, topic)
    return await persisted_info(_service(request).store, loaded.ledger.name)


@router.get("/{tenant}/{namespace}/{topic}/lastMessageId")
async def last_message_id(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    loaded = await _topic(request, tenant, namespace, topic)
    position, batch_index = await loaded.last_message_id()
    return {
        "ledgerId": position.ledger_id,
        "entryId": position.entry_id,
        "partitionIndex": loaded.partition,
        "batchIndex": batch_index,
    }


# -- topic policies ---------------------------------------------------------------------------


@router.get("/{tenant}/{namespace}/{topic}/deduplication")
async def get_topic_deduplication(request: Request, tenant: str, namespace: str, topic: str) -> bool | None:
    return await _service(request).resources.get_topic_deduplication(_topic_name(tenant, namespace, topic))


@router.post("/{tenant}/{namespace}/{topic}/deduplication", status_code=204)
async def set_topic_deduplication(request: Request, tenant: str, namespace: str, topic: str,
                                  body: Any = Body(...)) -> Response:
    if not isinstance(body, bool):
        raise ValueError("deduplication body must be true or false")
    name = _topic_name(tenant, namespace, topic)
    await _service(request).resources.set_topic_deduplication(name, body)
    await _service(request).apply_topic_policies(name)
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/{topic}/deduplication", status_code=204)
async def remove_topic_deduplication(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    name = _topic_name(tenant, namespace, topic)
    await _service(request).resources.set_topic_deduplication(name, None)
    await _service(request).apply_topic_policies(name)
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{topic}/schemaCompatibilityStrategy")
async def get_topic_schema_strategy(request: Request, tenant: str, namespace: str, topic: str) -> str | None:
    return await _service(request).resources.get_topic_policy(_topic_name(tenant, namespace, topic), TOPIC_STRATEGY)


@router.put("/{tenant}/{namespace}/{topic}/schemaCompatibilityStrategy", status_code=204)
@router.post("/{tenant}/{namespace}/{topic}/schemaCompatibilityStrategy", status_code=204)
async def set_topic_schema_strategy(request: Request, tenant: str, namespace: str, topic: str,
                                    body: Any = Body(...)) -> Response:
    if not isinstance(body, str):
        raise ValueError("the body must be a strategy name as a JSON string")
    name = _topic_name(tenant, namespace, topic)
    await _service(request).resources.set_topic_policy(name, TOPIC_STRATEGY, Strategy.parse(body).value)
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/{topic}/schemaCompatibilityStrategy", status_code=204)
async def remove_topic_schema_strategy(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    await _service(request).resources.set_topic_policy(_topic_name(tenant, namespace, topic), TOPIC_STRATEGY, None)
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{topic}/messageTTL")
async def get_topic_message_ttl(request: Request, tenant: str, namespace: str, topic: str) -> int | None:
    return await _service(request).resources.get_topic_policy(_topic_name(tenant, namespace, topic), TOPIC_TTL)


@router.post("/{tenant}/{namespace}/{topic}/messageTTL", status_code=204)
async def set_topic_message_ttl(request: Request, tenant: str, namespace: str, topic: str,
                                messageTTL: int) -> Response:  # noqa: N803 - Pulsar's query parameter
    if messageTTL < 0:
        raise ValueError("messageTTL must be >= 0 seconds")
    await _service(request).resources.set_topic_policy(_topic_name(tenant, namespace, topic), TOPIC_TTL, messageTTL)
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/{topic}/messageTTL", status_code=204)
async def remove_topic_message_ttl(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    await _service(request).resources.set_topic_policy(_topic_name(tenant, namespace, topic), TOPIC_TTL, None)
    return Response(status_code=204)


@router.put("/{tenant}/{namespace}/{topic}/compaction", status_code=204)
async def compact(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    """Start a compaction (every partition's, for a partitioned topic); 409 while one runs."""
    service = _service(request)
    name = _topic_name(tenant, namespace, topic)
    targets = await service.stored_partitions(name) if await service.resources.get_partitions(name) else [name]
    for target in targets:
        if await at_owner(request, target, "PUT", "/compaction") is not None:
            continue  # started by the partition's owner
        loaded = await service.get_topic(target, create=False)
        assert loaded.compaction is not None
        loaded.compaction.trigger()
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{topic}/compaction")
async def compaction_status(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    loaded = await _service(request).get_topic(_topic_name(tenant, namespace, topic), create=False)
    assert loaded.compaction is not None
    return {"status": loaded.compaction.status, "lastError": loaded.compaction.last_error}


# -- partitioned topics -----------------------------------------------------------------------


partitioned.add_routes(router, "persistent")


@router.delete("/{tenant}/{namespace}/{topic}/partitions", status_code=204)
async def delete_partitioned(
    request: Request, tenant: str, namespace: str, topic: str, force: bool = False
) -> Response:
    service = _service(request)
    name = _topic_name(tenant, namespace, topic)
    for partition in await service.stored_partitions(name):  # another broker's: deleted at its owner
        await at_owner(request, partition, "DELETE", params={"force": str(force).lower()})
    await service.delete_partitioned_topic(name, force=force)  # the rest, here
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{topic}/partitioned-stats")
async def partitioned_stats(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    service = _service(request)
    name = _topic_name(tenant, namespace, topic)
    partitions = await service.resources.get_partitions(name)
    if not partitions:
        raise ResourceNotFoundError(f"partitioned topic {name} does not exist")
    sums = dict.fromkeys(("msgInCounter", "bytesInCounter", "msgOutCounter", "storageSize"), 0)
    per_partition: dict[str, dict] = {}
    for partition in await service.stored_partitions(name):
        stats = await at_owner(request, partition, "GET", "/stats") or (
            await service.get_topic(partition, create=False)).stats()
        per_partition[str(partition)] = stats
        for key in sums:
            sums[key] += stats[key]
        await asyncio.sleep(0)  # a loaded topic completes without yielding: one per loop turn
    return {**sums, "partitions": per_partition, "metadata": {"partitions": partitions}}


# -- subscriptions ----------------------------------------------------------------------------


@router.get("/{tenant}/{namespace}/{topic}/subscriptions")
async def list_subscriptions(request: Request, tenant: str, namespace: str, topic: str) -> list[str]:
    return sorted((await _topic(request, tenant, namespace, topic)).subscriptions)


@router.put("/{tenant}/{namespace}/{topic}/subscription/{subscription:subname}", status_code=204)
async def create_subscription(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, body: Any = Body(None)
) -> Response:
    position = _position_body(body)
    name = _topic_name(tenant, namespace, topic)
    loaded = await _service(request).get_topic(name, explicit=True)
    await loaded.create_subscription(subscription, position)
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/{topic}/subscription/{subscription:subname}", status_code=204)
async def delete_subscription(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, force: bool = False
) -> Response:
    await (await _topic(request, tenant, namespace, topic)).unsubscribe(subscription, force=force)
    return Response(status_code=204)


@router.post("/{tenant}/{namespace}/{topic}/subscription/{subscription:subname}/skip_all", status_code=204)
async def skip_all(request: Request, tenant: str, namespace: str, topic: str, subscription: str) -> Response:
    sub = (await _topic(request, tenant, namespace, topic)).get_subscription(subscription)
    await sub.clear_backlog()
    return Response(status_code=204)


@router.post("/{tenant}/{namespace}/{topic}/subscription/{subscription:subname}/skip/{count}", status_code=204)
async def skip(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, count: int
) -> Response:
    if count < 0:
        raise ValueError("the number of messages to skip must be >= 0")
    sub = (await _topic(request, tenant, namespace, topic)).get_subscription(subscription)
    await sub.skip(count)
    return Response(status_code=204)


@router.post(
    "/{tenant}/{namespace}/{topic}/subscription/{subscription:subname}/resetcursor/{timestamp}", status_code=204
)
async def reset_cursor_time(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, timestamp: int
) -> Response:
    loaded = await _topic(request, tenant, namespace, topic)
    sub = loaded.get_subscription(subscription)
    await sub.reset_to(await loaded.position_for_time(timestamp))
    return Response(status_code=204)


@router.post("/{tenant}/{namespace}/{topic}/subscription/{subscription:subname}/resetcursor", status_code=204)
async def reset_cursor_id(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, body: Any = Body(...)
) -> Response:
    loaded = await _topic(request, tenant, namespace, topic)
    sub = loaded.get_subscription(subscription)
    position = _position_body(body)
    await sub.reset_to(loaded.resolve_position(*(position or LATEST)))
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{topic}/subscription/{subscription:subname}/position/{n}")
async def peek(
    request: Request, tenant: str, namespace: str, topic: str, subscription: str, n: int
) -> Response:
    """The n-th (1-based) unacknowledged message: its payload, with metadata in headers."""
    if n < 1:
        raise ValueError("message position must be >= 1")
    sub = (await _topic(request, tenant, namespace, topic)).get_subscription(subscription)
    seen = 0
    for entry in await sub.cursor.peek(n):
        messages = split_batch(entry.data)
        if seen + len(messages) < n:
            seen += len(messages)
            continue
        return _message_response(entry, messages, n - seen - 1)
    raise ResourceNotFoundError(f"subscription {subscription} has fewer than {n} messages in its backlog")


def _message_response(entry, messages: list, index: int) -> Response:
    """Message `index` of a stored entry (split into `messages`): payload, metadata in headers."""
    meta, _ = parse_metadata(entry.data)
    properties, key, payload = messages[index]
    headers = peek_headers(entry.position, meta, index, properties, key)
    if meta.HasField("num_messages_in_batch"):
        headers["X-Pulsar-num-batch-message"] = str(len(messages))
    return Response(content=payload, media_type="application/octet-stream", headers=headers)


async def _examined(request: Request, tenant: str, namespace: str, topic: str, initial: str, n: int):
    """The n-th stored entry counted from the latest (1 = the last) or the earliest (1 = the
    first), whatever the subscriptions acknowledged."""
    if initial not in ("latest", "earliest"):
        raise ValueError("initialPosition must be latest or earliest")
    if n < 1:
        raise ValueError("messagePosition must be >= 1")
    ledger = (await _topic(request, tenant, namespace, topic)).ledger
    count = ledger.entries_count
    if n > count:
        raise ResourceNotFoundError(f"the topic holds {count} entries, fewer than {n}")
    return await ledger.read_entry(ledger.position_at(count - n if initial == "latest" else n - 1))


@router.get("/{tenant}/{namespace}/{topic}/examinemessage")
async def examine_message(
    request: Request,
    tenant: str,
    namespace: str,
    topic: str,
    initialPosition: str = "latest",  # noqa: N803 - Pulsar's query parameters
    messagePosition: int = 1,  # noqa: N803
) -> Response:
    """The messagePosition-th stored entry counted from the latest (1 = the last) or the
    earliest (1 = the first), whatever the subscriptions acknowledged; its first message."""
    entry = await _examined(request, tenant, namespace, topic, initialPosition, messagePosition)
    return _message_response(entry, split_batch(entry.data), 0)


@router.get("/{tenant}/{namespace}/{topic}/examinemessage/decoded")
async def examine_decoded(
    request: Request,
    tenant: str,
    namespace: str,
    topic: str,
    initialPosition: str = "latest",  # noqa: N803 - as examinemessage
    messagePosition: int = 1,  # noqa: N803
) -> dict[str, Any]:
    """Taureau's: the message examinemessage answers, as JSON, its payload decoded with the
    schema version it was written with (JSON, AVRO, primitives)."""
    entry = await _examined(request, tenant, namespace, topic, initialPosition, messagePosition)
    return await decoded_message(_service(request).schemas.registry, _topic_name(tenant, namespace, topic),
                                 entry, split_batch(entry.data))
