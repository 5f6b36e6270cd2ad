"""Frame builders for every command a broker sends that is not on the per-entry hot path."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from taureau.protocol import pulsar_api_pb2 as pb
from taureau.protocol.commands import encode_command

# proto2 presence matters to the C++ client (brief §11.8): every field assigned below goes on
# the wire even when it equals its default (LOOKUP/PARTITIONED responses rely on `response`
# being present at 0), and fields left unassigned stay absent. uint64 ids accept -1, written as
# 0xFFFFFFFFFFFFFFFF ("no request", "empty topic").

_U64 = 0xFFFFFFFFFFFFFFFF
_T = pb.BaseCommand


def _enum(value: int) -> Any:
    """Enum fields take the plain ints Pulsar numbers them by; the stubs want the enum type."""
    return cast(Any, value)


def _frame(kind: int, field: str, **values) -> bytes:
    command = pb.BaseCommand(type=_enum(kind))
    body = getattr(command, field)
    body.SetInParent()  # empty bodies (PING/PONG) must still be present
    for name, value in values.items():
        setattr(body, name, value)
    return encode_command(command)


def _message_id(
    target: pb.MessageIdData, ledger_id: int, entry_id: int, partition: int = -1, batch_index: int = -1
) -> None:
    target.ledgerId = ledger_id & _U64
    target.entryId = entry_id & _U64
    if partition >= 0:
        target.partition = partition
    if batch_index >= 0:
        target.batch_index = batch_index


def connected(server_version: str, protocol_version: int, max_message_size: int) -> bytes:
    """CONNECTED: protocol_version is always sent (0 would disable most client features)."""
    return _frame(
        _T.CONNECTED,
        "connected",
        server_version=server_version,
        protocol_version=protocol_version,
        max_message_size=max_message_size,
    )


def auth_challenge(server_version: str, protocol_version: int, method: str, data: bytes) -> bytes:
    """AUTH_CHALLENGE: the broker asks for fresh credentials (Pulsar's refresh sends
    `PulsarAuthRefresh` as the data)."""
    body = pb.CommandAuthChallenge(server_version=server_version, protocol_version=protocol_version)
    body.challenge.auth_method_name = method
    body.challenge.auth_data = data
    return encode_command(pb.BaseCommand(type=_T.AUTH_CHALLENGE, authChallenge=body))


def ping() -> bytes:
    return _frame(_T.PING, "ping")


def pong() -> bytes:
    return _frame(_T.PONG, "pong")


def success(request_id: int) -> bytes:
    return _frame(_T.SUCCESS, "success", request_id=request_id & _U64)


def error(request_id: int, error: int, message: str) -> bytes:
    """ERROR for generic requests; `error` is a ServerError value (broker.error_codes)."""
    return _frame(_T.ERROR, "error", request_id=request_id & _U64, error=error, message=message)


def producer_success(
    request_id: int,
    producer_name: str,
    last_sequence_id: int,
    schema_version: bytes = b"",
    topic_epoch: int | None = None,
    producer_ready: bool = True,
) -> bytes:
    """PRODUCER_SUCCESS; producer_ready=False: queued (WaitForExclusive), a second one follows.

    schema_version is always set, empty for a topic without a schema, as Pulsar sends it
    (SchemaVersion.Empty): the Java client reads the field unconditionally and drops the
    connection when it is absent."""
    body = pb.CommandProducerSuccess(
        request_id=request_id & _U64,
        producer_name=producer_name,
        last_sequence_id=last_sequence_id,
        schema_version=schema_version,
    )
    if not producer_ready:
        body.producer_ready = False
    if topic_epoch is not None:
        body.topic_epoch = topic_epoch & _U64
    return encode_command(pb.BaseCommand(type=_T.PRODUCER_SUCCESS, producer_success=body))


def send_error(producer_id: int, sequence_id: int, error: int, message: str) -> bytes:
    """SEND_ERROR; the C++ client survives only ChecksumError (9), anything else drops the connection."""
    return _frame(
        _T.SEND_ERROR,
        "send_error",
        producer_id=producer_id & _U64,
        sequence_id=sequence_id & _U64,
        error=error,
        message=message,
    )


def lookup_response(
    request_id: int,
    broker_url: str | None,
    response: int,
    authoritative: bool,
    proxy_through_service_url: bool,
    error: int | None = None,
    message: str | None = None,
    broker_url_tls: str | None = None,
) -> bytes:
    """LOOKUP_RESPONSE; `response` is Redirect=0, Connect=1 or Failed=2 and always present."""
    body = pb.CommandLookupTopicResponse(
        request_id=request_id & _U64,
        response=_enum(response),
        authoritative=authoritative,
        proxy_through_service_url=proxy_through_service_url,
    )
    if broker_url is not None:
        body.brokerServiceUrl = broker_url
    if broker_url_tls is not None:
        body.brokerServiceUrlTls = broker_url_tls
    if error is not None:
        body.error = _enum(error)
    if message is not None:
        body.message = message
    return encode_command(pb.BaseCommand(type=_T.LOOKUP_RESPONSE, lookupTopicResponse=body))


def partitioned_metadata_response(
    request_id: int, partitions: int, error: int | None = None, message: str | None = None
) -> bytes:
    """PARTITIONED_METADATA_RESPONSE: Success with `partitions`, or Failed when `error` is given."""
    body = pb.CommandPartitionedTopicMetadataResponse(request_id=request_id & _U64)
    if error is None:
        body.response = pb.CommandPartitionedTopicMetadataResponse.Success
        body.partitions = partitions
    else:
        body.response = pb.CommandPartitionedTopicMetadataResponse.Failed
        body.error = _enum(error)
        if message is not None:
            body.message = message
    return encode_command(
        pb.BaseCommand(type=_T.PARTITIONED_METADATA_RESPONSE, partitionMetadataResponse=body)
    )


def close_consumer(consumer_id: int, request_id: int = -1) -> bytes:
    """Broker-initiated CLOSE_CONSUMER: the client looks the topic up again and re-subscribes."""
    return _frame(
        _T.CLOSE_CONSUMER, "close_consumer", consumer_id=consumer_id & _U64, request_id=request_id & _U64
    )


def close_producer(producer_id: int, request_id: int = -1) -> bytes:
    """Broker-initiated CLOSE_PRODUCER: the client looks the topic up again and re-creates it."""
    return _frame(
        _T.CLOSE_PRODUCER, "close_producer", producer_id=producer_id & _U64, request_id=request_id & _U64
    )


def active_consumer_change(consumer_id: int, is_active: bool) -> bytes:
    return _frame(
        _T.ACTIVE_CONSUMER_CHANGE,
        "active_consumer_change",
        consumer_id=consumer_id & _U64,
        is_active=is_active,
    )


def get_last_message_id_response(
    request_id: int,
    ledger_id: int,
    entry_id: int,
    partition: int = -1,
    batch_index: int = -1,
    mark_delete_ledger: int | None = None,
    mark_delete_entry: int | None = None,
) -> bytes:
    """GET_LAST_MESSAGE_ID_RESPONSE; an empty topic answers entry_id -1."""
    body = pb.CommandGetLastMessageIdResponse(request_id=request_id & _U64)
    _message_id(body.last_message_id, ledger_id, entry_id, partition, batch_index)
    if mark_delete_ledger is not None and mark_delete_entry is not None:
        _message_id(body.consumer_mark_delete_position, mark_delete_ledger, mark_delete_entry)
    return encode_command(pb.BaseCommand(type=_T.GET_LAST_MESSAGE_ID_RESPONSE, getLastMessageIdResponse=body))


def get_topics_of_namespace_response(request_id: int, topics: Iterable[str]) -> bytes:
    body = pb.CommandGetTopicsOfNamespaceResponse(request_id=request_id & _U64, topics=list(topics))
    return encode_command(
        pb.BaseCommand(type=_T.GET_TOPICS_OF_NAMESPACE_RESPONSE, getTopicsOfNamespaceResponse=body)
    )


def get_schema_response(
    request_id: int,
    error_code: int | None,
    message: str | None,
    schema: pb.Schema | None = None,
    schema_version: bytes | None = None,
) -> bytes:
    """GET_SCHEMA_RESPONSE: an error (e.g. TopicNotFound=11) or a schema; never a generic ERROR."""
    body = pb.CommandGetSchemaResponse(request_id=request_id & _U64)
    _schema_answer(body, error_code, message, schema_version)
    if schema is not None:
        body.schema.CopyFrom(schema)
    return encode_command(pb.BaseCommand(type=_T.GET_SCHEMA_RESPONSE, getSchemaResponse=body))


def _schema_answer(body: Any, error_code: int | None, message: str | None, schema_version: bytes | None) -> None:
    if error_code is not None:
        body.error_code = _enum(error_code)
    if message is not None:
        body.error_message = message
    if schema_version is not None:
        body.schema_version = schema_version


def get_or_create_schema_response(
    request_id: int, error_code: int | None, message: str | None, schema_version: bytes | None
) -> bytes:
    """GET_OR_CREATE_SCHEMA_RESPONSE: the version of the schema, or why it was refused."""
    body = pb.CommandGetOrCreateSchemaResponse(request_id=request_id & _U64)
    _schema_answer(body, error_code, message, schema_version)
    return encode_command(pb.BaseCommand(type=_T.GET_OR_CREATE_SCHEMA_RESPONSE, getOrCreateSchemaResponse=body))


def ack_response(
    consumer_id: int, request_id: int, error: int | None = None, message: str | None = None
) -> bytes:
    body = pb.CommandAckResponse(consumer_id=consumer_id & _U64, request_id=request_id & _U64)
    if error is not None:
        body.error = _enum(error)
    if message is not None:
        body.message = message
    return encode_command(pb.BaseCommand(type=_T.ACK_RESPONSE, ackResponse=body))
