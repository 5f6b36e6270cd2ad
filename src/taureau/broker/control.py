"""Handlers for the control commands of a connection (everything but SEND, FLOW and PING).

Each handler is `async def handler(conn, cmd)` and runs on the connection's control task,
one at a time in arrival order. Errors become typed replies: ERROR for generic requests,
the Failed form of the response for LOOKUP and PARTITIONED_METADATA (the client matches
nothing else to those request ids).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from taureau.broker.consumer import Consumer
from taureau.broker.producer import Producer, generate_producer_name
from taureau.broker.subscription import SubType
from taureau.common.errors import ConsumerBusyError, ConsumerNotFoundError, TaureauError
from taureau.common.names import NamespaceName, TopicName
from taureau.protocol import pb, replies
from taureau.protocol.validate import non_utf8_field
from taureau.storage.managed_ledger.api import InitialPosition
from taureau.storage.position import Position

log = logging.getLogger(__name__)

T = pb.BaseCommand.Type
_U64 = 2**64
_NOT_ALLOWED = 22  # ServerError.NotAllowedError: a request the broker will never accept as sent
Handler = Callable[..., Awaitable[None]]
_HANDLERS: dict[int, Handler] = {}


def handler_for(kind: int) -> Handler | None:
    return _HANDLERS.get(kind)


def _handles(kind: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        async def checked(conn, cmd) -> None:
            # A refused command must leave nothing behind, so it is refused before its
            # handler runs: upb hands back bytes for a proto2 string that is not UTF-8, and
            # such a name would break every later reader of it (stats, replies, dedup).
            field = cmd.DESCRIPTOR.fields_by_number[kind].name
            body = getattr(cmd, field)
            bad = non_utf8_field(body)
            if bad is None:
                await fn(conn, cmd)
            else:
                _refuse(conn, kind, body, f"{field}.{bad} is not valid UTF-8")

        _HANDLERS[kind] = checked
        return fn

    return register


def _refuse(conn, kind: int, body, reason: str) -> None:
    """Answer a command refused before it ran, in the reply form its client waits for."""
    log.warning("refusing %s from %s: %s", T.Name(kind), conn.remote_address, reason)
    has_id = "request_id" in body.DESCRIPTOR.fields_by_name and body.HasField("request_id")
    request_id = body.request_id if has_id else None
    if request_id is None:
        return  # nothing waits for an answer (ACK without request id, REDELIVER...)
    if kind == T.LOOKUP:
        conn.write(replies.lookup_response(request_id, None, 2, False, False, _NOT_ALLOWED, reason))
    elif kind == T.PARTITIONED_METADATA:
        conn.write(replies.partitioned_metadata_response(request_id, 0, _NOT_ALLOWED, reason))
    else:
        conn.write(replies.error(request_id, _NOT_ALLOWED, reason))


def _signed(value: int) -> int:
    """uint64 fields carry -1 as 0xFFFFFFFFFFFFFFFF."""
    return value - _U64 if value >= 2**63 else value


def _error_code(exc: Exception) -> int:
    return exc.server_error if isinstance(exc, TaureauError) else 0


async def _generic(conn, request_id: int, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work`; on failure answer ERROR(request_id) with the typed server error."""
    try:
        await work()
    except Exception as exc:
        if not isinstance(exc, TaureauError):
            log.exception("request %d from %s failed", request_id, conn.remote_address)
        conn.write(replies.error(request_id, _error_code(exc), str(exc) or type(exc).__name__))


# -- lookup -----------------------------------------------------------------------------------


@_handles(T.PARTITIONED_METADATA)
async def partitioned_metadata(conn, cmd) -> None:
    req = cmd.partitionMetadata
    try:
        partitions = await conn.service.partitioned_metadata(TopicName.parse(req.topic))
        conn.write(replies.partitioned_metadata_response(req.request_id, partitions))
    except Exception as exc:
        conn.write(replies.partitioned_metadata_response(req.request_id, 0, _error_code(exc), str(exc)))


@_handles(T.LOOKUP)
async def lookup(conn, cmd) -> None:
    req = cmd.lookupTopic
    try:
        name = TopicName.parse(req.topic)
        await conn.service.resources.get_policies(name.namespace_name)
        conn.write(replies.lookup_response(req.request_id, conn.service.config.service_url, 1, True, False))
    except Exception as exc:
        conn.write(replies.lookup_response(req.request_id, None, 2, False, False, _error_code(exc), str(exc)))


@_handles(T.GET_TOPICS_OF_NAMESPACE)
async def topics_of_namespace(conn, cmd) -> None:
    req = cmd.getTopicsOfNamespace

    async def work() -> None:
        topics = await conn.service.topics_of_namespace(NamespaceName.parse(req.namespace))
        conn.write(replies.get_topics_of_namespace_response(req.request_id, topics))

    await _generic(conn, req.request_id, work)


@_handles(T.GET_SCHEMA)
async def get_schema(conn, cmd) -> None:
    # No schema registry yet: TopicNotFound makes clients fall back to their own schema.
    req = cmd.getSchema
    conn.write(replies.get_schema_response(req.request_id, 11, "no schema is stored for this topic"))


# -- producers --------------------------------------------------------------------------------


@_handles(T.PRODUCER)
async def producer(conn, cmd) -> None:
    req = cmd.producer

    async def work() -> None:
        if req.producer_id in conn.producers:
            existing, _ = conn.producers[req.producer_id]
            conn.write(replies.producer_success(req.request_id, existing.name, -1))
            return
        topic = await conn.service.get_topic(TopicName.parse(req.topic))
        user_named = req.HasField("producer_name") and bool(req.producer_name)
        new = Producer(
            producer_id=req.producer_id,
            name=req.producer_name if user_named else generate_producer_name(),
            user_provided_name=req.user_provided_producer_name,
            remote_address=conn.remote_address,
            metadata={kv.key: kv.value for kv in req.metadata},
            access_mode=req.producer_access_mode,
        )
        # Everything that can fail happens before the producer is registered anywhere.
        reply = replies.producer_success(req.request_id, new.name, topic.last_sequence_id(new.name))
        if conn.closed:  # the client left while the topic loaded
            return
        topic.add_producer(new)
        new.disconnect = lambda: conn.disconnect_producer(req.producer_id)
        conn.producers[req.producer_id] = (new, topic)
        conn.write(reply)

    await _generic(conn, req.request_id, work)


@_handles(T.CLOSE_PRODUCER)
async def close_producer(conn, cmd) -> None:
    req = cmd.close_producer
    found = conn.producers.pop(req.producer_id, None)
    if found is not None:
        found[1].remove_producer(found[0])
    conn.write(replies.success(req.request_id))


# -- consumers --------------------------------------------------------------------------------


@_handles(T.SUBSCRIBE)
async def subscribe(conn, cmd) -> None:
    req = cmd.subscribe

    async def work() -> None:
        if req.consumer_id in conn.consumers:
            raise ConsumerBusyError(f"consumer id {req.consumer_id} is already in use on this connection")
        name = TopicName.parse(req.topic)
        topic = await conn.service.get_topic(name, create=True)
        sticky = False
        ranges = None
        if req.HasField("keySharedMeta"):
            meta = req.keySharedMeta
            sticky = meta.keySharedMode == pb.KeySharedMode.Value("STICKY")
            ranges = [(r.start, r.end) for r in meta.hashRanges] or None
        consumer = Consumer(
            consumer_id=req.consumer_id,
            name=req.consumer_name,
            sink=conn,
            partition=name.partition,
            priority=req.priority_level,
            metadata={kv.key: kv.value for kv in req.metadata},
            hash_ranges=ranges,
        )
        start = None
        if req.HasField("start_message_id"):
            mid = req.start_message_id
            start = topic.resolve_position(_signed(mid.ledgerId), _signed(mid.entryId))
        sub = await topic.subscribe(
            subscription=req.subscription,
            consumer=consumer,
            sub_type=SubType(req.subType),
            durable=req.durable,
            initial_position=InitialPosition(req.initialPosition),
            start_position=start,
            sticky=sticky,
        )
        if conn.closed:  # the client left while the topic loaded
            await topic.remove_consumer(sub, consumer)
            return
        conn.consumers[req.consumer_id] = (consumer, sub, topic)
        conn.write(replies.success(req.request_id))

    await _generic(conn, req.request_id, work)


def _consumer(conn, consumer_id: int):
    found = conn.consumers.get(consumer_id)
    if found is None:
        raise ConsumerNotFoundError(f"consumer {consumer_id} is not connected")
    return found


def _acked_positions(message_ids) -> list[Position]:
    """Entries fully acknowledged: a non-empty ack_set with bits left means part of a batch."""
    return [Position(m.ledgerId, m.entryId) for m in message_ids if not any(word for word in m.ack_set)]


@_handles(T.ACK)
async def ack(conn, cmd) -> None:
    req = cmd.ack
    error = None
    try:
        consumer, sub, _ = _consumer(conn, req.consumer_id)
        if req.ack_type == pb.CommandAck.Cumulative:
            if req.message_id:
                mid = req.message_id[0]
                position = Position(mid.ledgerId, mid.entryId)
                if any(word for word in mid.ack_set):
                    position = Position(mid.ledgerId, mid.entryId - 1)  # that batch is partly acked
                await sub.ack_cumulative(consumer, position)
        else:
            positions = _acked_positions(req.message_id)
            if positions:
                await sub.ack_individual(consumer, positions)
    except Exception as exc:
        error = exc
        log.info("ack from %s failed: %s", conn.remote_address, exc)
    if req.HasField("request_id"):
        conn.write(
            replies.ack_response(
                req.consumer_id,
                req.request_id,
                _error_code(error) if error else None,
                str(error) if error else None,
            )
        )


@_handles(T.REDELIVER_UNACKNOWLEDGED_MESSAGES)
async def redeliver(conn, cmd) -> None:
    req = cmd.redeliverUnacknowledgedMessages
    found = conn.consumers.get(req.consumer_id)
    if found is None:
        return
    consumer, sub, _ = found
    positions = [Position(m.ledgerId, m.entryId) for m in req.message_ids] or None
    sub.redeliver(consumer, positions)


@_handles(T.CLOSE_CONSUMER)
async def close_consumer(conn, cmd) -> None:
    req = cmd.close_consumer
    found = conn.consumers.pop(req.consumer_id, None)
    try:
        if found is not None:
            consumer, sub, topic = found
            await topic.remove_consumer(sub, consumer)
    finally:
        # The consumer is gone from this connection whatever cleanup did: confirm it.
        conn.write(replies.success(req.request_id))


@_handles(T.UNSUBSCRIBE)
async def unsubscribe(conn, cmd) -> None:
    req = cmd.unsubscribe

    async def work() -> None:
        consumer, sub, topic = _consumer(conn, req.consumer_id)
        topic.check_unsubscribe(sub.name, requester=consumer, force=req.force)
        sub.remove_consumer(consumer)
        conn.consumers.pop(req.consumer_id, None)
        await topic.unsubscribe(sub.name, force=req.force)
        conn.write(replies.success(req.request_id))

    await _generic(conn, req.request_id, work)


@_handles(T.SEEK)
async def seek(conn, cmd) -> None:
    req = cmd.seek

    async def work() -> None:
        _, sub, topic = _consumer(conn, req.consumer_id)
        if req.HasField("message_publish_time"):
            position = await topic.position_for_time(req.message_publish_time)
        else:
            mid = req.message_id
            position = topic.resolve_position(_signed(mid.ledgerId), _signed(mid.entryId))
        # Pulsar disconnects the subscription's consumers so they come back with fresh permits;
        # the client expects CLOSE_CONSUMER before the SUCCESS of its seek.
        await sub.reset_to(position)
        conn.write(replies.success(req.request_id))

    await _generic(conn, req.request_id, work)


@_handles(T.GET_LAST_MESSAGE_ID)
async def last_message_id(conn, cmd) -> None:
    req = cmd.getLastMessageId

    async def work() -> None:
        _, sub, topic = _consumer(conn, req.consumer_id)
        position, batch_index = await topic.last_message_id()
        mark_delete = sub.cursor.mark_delete_position
        conn.write(
            replies.get_last_message_id_response(
                req.request_id,
                position.ledger_id,
                position.entry_id,
                topic.partition,
                batch_index,
                mark_delete.ledger_id,
                mark_delete.entry_id,
            )
        )

    await _generic(conn, req.request_id, work)
