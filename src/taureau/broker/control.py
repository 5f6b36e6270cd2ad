"""Handlers for the control commands of a connection (everything but SEND, FLOW and PING).

Each handler is `async def handler(session, cmd)` and runs on the connection's control task,
one at a time in arrival order; it changes the session only through the session's methods.
Errors become typed replies (codes from error_codes): ERROR for generic requests, the Failed
form of the response for LOOKUP and PARTITIONED_METADATA (the client matches nothing else to
those request ids).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from taureau.broker.access import Admitted
from taureau.broker.authorization import LOOKUP
from taureau.broker.client_topic import AnyClientTopic
from taureau.broker.consumer import Consumer
from taureau.broker.error_codes import ServerError, server_error
from taureau.broker.policies import check_producer_quota
from taureau.broker.producer import Producer, generate_producer_name
from taureau.broker.schemas.model import SchemaNotFoundError, decode_version, encode_version, schema_id
from taureau.broker.schemas.topics import from_wire, to_wire
from taureau.broker.session import ConsumerBinding, Session
from taureau.broker.subscription import SubType
from taureau.broker.topic import PersistentTopic
from taureau.broker.transactions import handlers as transactions
from taureau.common.errors import ConsumerBusyError, TaureauError
from taureau.common.names import NamespaceName, TopicName
from taureau.protocol import pb, replies
from taureau.protocol.validate import non_utf8_field
from taureau.storage.managed_ledger.api import InitialPosition
from taureau.storage.position import Position

log = logging.getLogger(__name__)

T = pb.BaseCommand.Type
_U64 = 2**64
_NOT_ALLOWED = ServerError.NotAllowedError  # a request the broker will never accept as sent
_LOOKUP_REDIRECT, _LOOKUP_CONNECT, _LOOKUP_FAILED = 0, 1, 2  # CommandLookupTopicResponse.LookupType
Handler = Callable[[Session, pb.BaseCommand], Awaitable[None]]
_HANDLERS: dict[int, Handler] = {}


def handler_for(kind: int) -> Handler | None:
    return _HANDLERS.get(kind)


def _handles(kind: int) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        async def checked(session: Session, cmd: pb.BaseCommand) -> None:
            # A refused command must leave nothing behind, so it is refused before its
            # handler runs: upb hands back bytes for a proto2 string that is not UTF-8, and
            # such a name would break every later reader of it (stats, replies, dedup).
            field = cmd.DESCRIPTOR.fields_by_number[kind].name
            body = getattr(cmd, field)
            bad = non_utf8_field(body)
            if bad is None:
                await fn(session, cmd)
            else:
                _refuse(session, kind, body, f"{field}.{bad} is not valid UTF-8")

        _HANDLERS[kind] = checked
        return fn

    return register


def _refuse(session: Session, kind: int, body, reason: str) -> None:
    """Answer a command refused before it ran, in the reply form its client waits for."""
    log.warning("refusing %s from %s: %s", T.Name(kind), session.remote_address, reason)
    has_id = "request_id" in body.DESCRIPTOR.fields_by_name and body.HasField("request_id")
    request_id = body.request_id if has_id else None
    if request_id is None:
        return  # nothing waits for an answer (ACK without request id, REDELIVER...)
    if kind == T.LOOKUP:
        session.write(
            replies.lookup_response(request_id, None, _LOOKUP_FAILED, False, False, _NOT_ALLOWED, reason)
        )
    elif kind == T.PARTITIONED_METADATA:
        session.write(replies.partitioned_metadata_response(request_id, 0, _NOT_ALLOWED, reason))
    else:
        session.write(replies.error(request_id, _NOT_ALLOWED, reason))


def _signed(value: int) -> int:
    """uint64 fields carry -1 as 0xFFFFFFFFFFFFFFFF."""
    return value - _U64 if value >= 2**63 else value


async def _generic(session: Session, request_id: int, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work`; on failure answer ERROR(request_id) with the typed server error."""
    try:
        await work()
    except Exception as exc:
        if not isinstance(exc, TaureauError):
            log.exception("request %d from %s failed", request_id, session.remote_address)
        session.write(replies.error(request_id, server_error(exc), str(exc) or type(exc).__name__))


for _kind, _handler in transactions.HANDLERS.items():  # TC_CLIENT_CONNECT, NEW_TXN, END_TXN...
    _handles(_kind)(_handler)


@_handles(T.AUTH_RESPONSE)
async def auth_response(session: Session, cmd: pb.BaseCommand) -> None:
    await session.auth_response(cmd.authResponse)


# -- lookup -----------------------------------------------------------------------------------


@_handles(T.PARTITIONED_METADATA)
async def partitioned_metadata(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.partitionMetadata
    try:
        name = TopicName.parse(req.topic)
        await session.service.authorization.check_topic(session.role, name, LOOKUP)
        partitions = await session.service.partitioned_metadata(name)
        session.write(replies.partitioned_metadata_response(req.request_id, partitions))
    except Exception as exc:
        session.write(replies.partitioned_metadata_response(req.request_id, 0, server_error(exc), str(exc)))


@_handles(T.LOOKUP)
async def lookup(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.lookupTopic
    try:
        name = TopicName.parse(req.topic)
        await session.service.authorization.check_topic(session.role, name, LOOKUP)
        config = session.service.config
        await session.service.resources.get_policies(name.namespace_name)
        owner = await session.service.ownership.owner_of(name, req.authoritative)
        if owner is not None:  # another broker's bundle: the client asks it, which takes the bundle
            session.write(replies.lookup_response(req.request_id, owner.pulsar or None, _LOOKUP_REDIRECT, True,
                                                  False, broker_url_tls=owner.pulsar_tls or None))
            return
        url = config.listener_url(req.advertised_listener_name)
        # A client on pulsar+ssl:// takes the TLS URL (none for a named listener: plain only).
        tls_url = None if req.advertised_listener_name else config.service_url_tls
        session.write(replies.lookup_response(req.request_id, url, _LOOKUP_CONNECT, True, False,
                                              broker_url_tls=tls_url))
    except Exception as exc:
        session.write(
            replies.lookup_response(
                req.request_id, None, _LOOKUP_FAILED, False, False, server_error(exc), str(exc)
            )
        )


@_handles(T.GET_TOPICS_OF_NAMESPACE)
async def topics_of_namespace(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.getTopicsOfNamespace

    async def work() -> None:
        ns = NamespaceName.parse(req.namespace)
        await session.service.authorization.check_namespace(session.role, ns, LOOKUP)
        topics = await session.service.topics_of_namespace(ns, req.mode)
        session.write(replies.get_topics_of_namespace_response(req.request_id, topics))

    await _generic(session, req.request_id, work)


@_handles(T.GET_SCHEMA)
async def get_schema(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.getSchema
    try:
        name = TopicName.parse(req.topic)
        await session.service.authorization.check_topic(session.role, name, LOOKUP)
        sid = schema_id(name)
        registry = session.service.schemas.registry
        if req.HasField("schema_version"):
            stored = await registry.get(sid, decode_version(req.schema_version))
        else:
            stored = await registry.latest(sid)
        assert stored.schema is not None
        session.write(replies.get_schema_response(
            req.request_id, None, None, schema=to_wire(stored.schema, sid), schema_version=encode_version(stored.version)
        ))
    except Exception as exc:
        # A missing schema is TopicNotFound, as Pulsar answers: clients then use their own.
        code = ServerError.TopicNotFound if isinstance(exc, SchemaNotFoundError) else server_error(exc)
        session.write(replies.get_schema_response(req.request_id, code, str(exc) or type(exc).__name__))


@_handles(T.GET_OR_CREATE_SCHEMA)
async def get_or_create_schema(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.getOrCreateSchema
    try:
        name = TopicName.parse(req.topic)
        await session.service.authorization.check_topic(session.role, name, "produce")
        version = await session.service.schemas.for_producer(name, from_wire(req.schema))
        session.write(replies.get_or_create_schema_response(req.request_id, None, None, version))
    except Exception as exc:
        if not isinstance(exc, TaureauError):
            log.exception("schema request %d from %s failed", req.request_id, session.remote_address)
        session.write(replies.get_or_create_schema_response(
            req.request_id, server_error(exc), str(exc) or type(exc).__name__, None
        ))


# -- producers --------------------------------------------------------------------------------


@_handles(T.PRODUCER)
async def producer(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.producer

    async def work() -> None:
        existing = session.producer(req.producer_id)
        if existing is not None:
            session.write(replies.producer_success(
                req.request_id, existing.producer.name, -1, schema_version=existing.producer.schema_version
            ))
            return
        name = TopicName.parse(req.topic)
        # Refused before the topic is loaded or created: a refusal leaves nothing behind.
        await session.service.authorization.check_topic(session.role, name, "produce")
        topic = await session.service.client_topic(name)
        user_named = req.HasField("producer_name") and bool(req.producer_name)
        new = Producer(
            producer_id=req.producer_id,
            name=req.producer_name if user_named else generate_producer_name(),
            user_provided_name=req.user_provided_producer_name,
            remote_address=session.remote_address,
            metadata={kv.key: kv.value for kv in req.metadata},
            access_mode=req.producer_access_mode,
        )
        if session.closed:  # the client left while the topic loaded
            return
        new.disconnect = lambda: session.disconnect_producer(req.producer_id)
        requested_epoch = req.topic_epoch if req.HasField("topic_epoch") else None
        # A producer that will be refused registers no schema version: check its access first.
        topic.check_producer(new, requested_epoch)
        policies = await session.service.resources.get_policies(name.namespace_name)
        if isinstance(topic, PersistentTopic):  # a non-persistent topic has no backlog to bound
            await check_producer_quota(topic, policies)
        schema = from_wire(req.schema) if req.HasField("schema") else None
        new.schema_version = await session.service.schemas.for_producer(name, schema, policies)
        # Everything that can fail happens in add_producer, before anything is registered.
        admission = await topic.add_producer(new, requested_epoch)
        if session.closed:  # the client left while the topic epoch was stored
            topic.remove_producer(new)
            return
        session.add_producer(req.producer_id, new, topic)
        if isinstance(admission, Admitted):
            last = topic.last_sequence_id(new.name)
            session.write(replies.producer_success(
                req.request_id, new.name, last, new.schema_version, topic_epoch=admission.epoch
            ))
            return
        # WaitForExclusive behind another producer: "queued" now, "ready" once it holds the topic.
        new.ready = False
        session.write(replies.producer_success(
            req.request_id, new.name, -1, new.schema_version, producer_ready=False
        ))
        admission.ready.add_done_callback(partial(_exclusive_ready, session, req.request_id, new, topic))

    await _generic(session, req.request_id, work)


def _exclusive_ready(
    session: Session, request_id: int, producer: Producer, topic: AnyClientTopic, ready: asyncio.Future[int]
) -> None:
    """A queued WaitForExclusive producer got the topic, or was fenced out while waiting."""
    if ready.cancelled():
        return  # it gave up (closed, or its connection went): nothing waits for an answer
    error = ready.exception()
    if error is not None:
        session.remove_producer(producer.producer_id)
        session.write(replies.error(request_id, server_error(error), str(error)))
        return
    if session.closed:
        topic.remove_producer(producer)
        return
    producer.ready = True
    last = topic.last_sequence_id(producer.name)
    session.write(replies.producer_success(
        request_id, producer.name, last, producer.schema_version, topic_epoch=ready.result()
    ))


@_handles(T.CLOSE_PRODUCER)
async def close_producer(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.close_producer
    found = session.remove_producer(req.producer_id)
    if found is not None:
        found.topic.remove_producer(found.producer)
    session.write(replies.success(req.request_id))


# -- consumers --------------------------------------------------------------------------------


def _from_earliest(req: pb.CommandSubscribe) -> bool:
    """Whether the consumer asked for the topic from its very beginning: a reader started at
    the earliest message id, or a durable subscription whose initial position is Earliest."""
    if req.HasField("start_message_id"):
        mid = req.start_message_id
        return _signed(mid.ledgerId) < 0 and _signed(mid.entryId) < 0
    return req.durable and req.initialPosition == pb.CommandSubscribe.Earliest


@_handles(T.SUBSCRIBE)
async def subscribe(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.subscribe

    async def work() -> None:
        if session.has_consumer(req.consumer_id):
            raise ConsumerBusyError(f"consumer id {req.consumer_id} is already in use on this connection")
        name = TopicName.parse(req.topic)
        await session.service.authorization.check_topic(session.role, name, "consume", req.subscription)
        topic = await session.service.client_topic(name)
        if req.HasField("schema"):
            await session.service.schemas.for_consumer(name, from_wire(req.schema), topic.is_idle())
        sticky = False
        ranges = None
        if req.HasField("keySharedMeta"):
            meta = req.keySharedMeta
            sticky = meta.keySharedMode == pb.KeySharedMode.Value("STICKY")
            ranges = [(r.start, r.end) for r in meta.hashRanges] or None
        consumer = Consumer(
            consumer_id=req.consumer_id,
            name=req.consumer_name,
            sink=session,
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
            read_compacted=req.read_compacted,
            from_earliest=_from_earliest(req),
        )
        if session.closed:  # the client left while the topic loaded
            await topic.remove_consumer(sub, consumer)
            return
        session.add_consumer(req.consumer_id, ConsumerBinding(consumer, sub, topic))
        session.write(replies.success(req.request_id))

    await _generic(session, req.request_id, work)


def _split_acks(message_ids) -> tuple[list[Position], list[tuple[Position, list[int]]]]:
    """(entries acknowledged whole, [(entry, its messages still unacked)]): an ack_set with
    bits left acknowledges part of a batch (a batch-index ack)."""
    whole, partial = [], []
    for mid in message_ids:
        position = Position(mid.ledgerId, mid.entryId)
        if any(word for word in mid.ack_set):
            partial.append((position, list(mid.ack_set)))
        else:
            whole.append(position)
    return whole, partial


@_handles(T.ACK)
async def ack(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.ack
    if transactions.in_transaction(req):
        await transactions.ack(session, req)
    else:
        apply_ack(session, req)


def can_ack_inline(req: pb.CommandAck) -> bool:
    """Whether an ACK may skip the control queue (ServerConnection applies it as it reads it,
    when no control command is ahead of it): not one in a transaction (its handler awaits the
    coordinator), nor one with properties (strings that `checked` must vet for UTF-8 first;
    MessageIdData has no string field)."""
    return not req.properties and not transactions.in_transaction(req)


def apply_ack(session: Session, req: pb.CommandAck) -> None:
    """An ACK outside a transaction: synchronous, as the cursor saves in the background."""
    error = None
    try:
        consumer, sub, _ = session.consumer(req.consumer_id)
        if req.ack_type == pb.CommandAck.Cumulative:
            if req.message_id:
                mid = req.message_id[0]
                position = Position(mid.ledgerId, mid.entryId)
                if mid.ack_set and any(mid.ack_set):
                    # Everything before this batch, and the part of it the ack set leaves out.
                    sub.ack_cumulative(consumer, Position(mid.ledgerId, mid.entryId - 1))
                    sub.ack_batch(consumer, position, list(mid.ack_set))
                else:
                    sub.ack_cumulative(consumer, position)
        else:
            whole, partial = _split_acks(req.message_id)
            if whole:
                sub.ack_individual(consumer, whole)
            for position, unacked in partial:
                sub.ack_batch(consumer, position, unacked)
    except Exception as exc:
        error = exc
        log.info("ack from %s failed: %s", session.remote_address, exc)
    if req.HasField("request_id"):
        session.write(
            replies.ack_response(
                req.consumer_id,
                req.request_id,
                server_error(error) if error else None,
                str(error) if error else None,
            )
        )


@_handles(T.REDELIVER_UNACKNOWLEDGED_MESSAGES)
async def redeliver(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.redeliverUnacknowledgedMessages
    found = session.find_consumer(req.consumer_id)
    if found is None:
        return
    consumer, sub, _ = found
    positions = [Position(m.ledgerId, m.entryId) for m in req.message_ids] or None
    sub.redeliver(consumer, positions)


@_handles(T.CLOSE_CONSUMER)
async def close_consumer(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.close_consumer
    found = session.remove_consumer(req.consumer_id)
    try:
        if found is not None:
            consumer, sub, topic = found
            await topic.remove_consumer(sub, consumer)
    finally:
        # The consumer is gone from this connection whatever cleanup did: confirm it.
        session.write(replies.success(req.request_id))


@_handles(T.UNSUBSCRIBE)
async def unsubscribe(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.unsubscribe

    async def work() -> None:
        consumer, sub, topic = session.consumer(req.consumer_id)
        topic.check_unsubscribe(sub.name, requester=consumer, force=req.force)
        sub.remove_consumer(consumer)
        session.remove_consumer(req.consumer_id)
        await topic.unsubscribe(sub.name, force=req.force)
        session.write(replies.success(req.request_id))

    await _generic(session, req.request_id, work)


@_handles(T.SEEK)
async def seek(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.seek

    async def work() -> None:
        _, sub, topic = session.consumer(req.consumer_id)
        if req.HasField("message_publish_time"):
            position = await topic.position_for_time(req.message_publish_time)
        else:
            mid = req.message_id
            position = topic.resolve_position(_signed(mid.ledgerId), _signed(mid.entryId))
        # Pulsar disconnects the subscription's consumers so they come back with fresh permits;
        # the client expects CLOSE_CONSUMER before the SUCCESS of its seek.
        await sub.reset_to(position)
        session.write(replies.success(req.request_id))

    await _generic(session, req.request_id, work)


@_handles(T.GET_LAST_MESSAGE_ID)
async def last_message_id(session: Session, cmd: pb.BaseCommand) -> None:
    req = cmd.getLastMessageId

    async def work() -> None:
        _, sub, topic = session.consumer(req.consumer_id)
        position, batch_index = await topic.last_message_id(compacted=sub.read_compacted)
        mark_delete = sub.mark_delete_position
        session.write(
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

    await _generic(session, req.request_id, work)
