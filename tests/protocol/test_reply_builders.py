import pytest

from taureau.protocol import (
    FrameDecoder,
    ProtocolError,
    ack_response,
    active_consumer_change,
    close_consumer,
    close_producer,
    connected,
    encode_command,
    error,
    get_last_message_id_response,
    get_schema_response,
    get_topics_of_namespace_response,
    lookup_response,
    partitioned_metadata_response,
    pb,
    ping,
    pong,
    producer_success,
    send_error,
    success,
)

U64_MAX = 2**64 - 1


def _one(frame: bytes) -> pb.BaseCommand:
    (decoded,) = FrameDecoder().feed(frame)
    assert decoded.payload is None
    return decoded.command


def test_connected_always_carries_protocol_version():
    cmd = _one(connected("Taureau 0.1.0", 20, 5 * 1024 * 1024))
    assert cmd.type == pb.BaseCommand.CONNECTED
    assert cmd.connected.server_version == "Taureau 0.1.0"
    assert cmd.connected.HasField("protocol_version") and cmd.connected.protocol_version == 20
    assert cmd.connected.max_message_size == 5 * 1024 * 1024


def test_ping_and_pong_carry_their_empty_bodies():
    assert ping() == b"\x00\x00\x00\x09\x00\x00\x00\x05\x08\x12\x92\x01\x00"
    assert _one(pong()).HasField("pong")


def test_success_and_error():
    assert _one(success(5)).success.request_id == 5
    err = _one(error(6, pb.ConsumerBusy, "exclusive consumer already attached")).error
    assert (err.request_id, err.error, err.message) == (
        6,
        pb.ConsumerBusy,
        "exclusive consumer already attached",
    )
    assert _one(error(7, pb.UnknownError, "")).error.HasField("message")  # required, even if empty


def test_producer_success_optional_fields():
    plain = _one(producer_success(1, "standalone-0-3", -1)).producer_success
    assert plain.producer_name == "standalone-0-3" and plain.last_sequence_id == -1
    assert plain.HasField("last_sequence_id")
    assert not plain.HasField("topic_epoch")
    # An empty schema version is sent, not left out: the Java client requires the field.
    assert plain.HasField("schema_version") and plain.schema_version == b""
    full = _one(producer_success(1, "p", 41, schema_version=b"\x00" * 8, topic_epoch=3)).producer_success
    assert full.schema_version == b"\x00" * 8 and full.topic_epoch == 3 and full.last_sequence_id == 41


def test_send_error():
    body = _one(send_error(3, 9, pb.ChecksumError, "checksum mismatch")).send_error
    assert (body.producer_id, body.sequence_id, body.error, body.message) == (
        3,
        9,
        pb.ChecksumError,
        "checksum mismatch",
    )


@pytest.mark.parametrize("response", [0, 1])
def test_lookup_response_field_is_present_even_when_zero(response):
    body = _one(lookup_response(9, "pulsar://127.0.0.1:6650", response, True, False)).lookupTopicResponse
    assert body.HasField("response") and body.response == response
    assert body.brokerServiceUrl == "pulsar://127.0.0.1:6650"
    assert body.authoritative and body.HasField("proxy_through_service_url")
    assert not body.HasField("error")


def test_lookup_failure_carries_error():
    body = _one(
        lookup_response(9, None, 2, False, False, error=pb.TopicNotFound, message="no")
    ).lookupTopicResponse
    assert (body.response, body.error, body.message) == (2, pb.TopicNotFound, "no")
    assert not body.HasField("brokerServiceUrl")


def test_partitioned_metadata_response_success_has_response_zero_on_the_wire():
    frame = partitioned_metadata_response(4, 0)
    body = _one(frame).partitionMetadataResponse
    assert body.HasField("response") and body.response == pb.CommandPartitionedTopicMetadataResponse.Success
    assert body.HasField("partitions") and body.partitions == 0
    assert b"\x18\x00" in frame  # field 3 varint 0: literally present


def test_partitioned_metadata_response_failure():
    body = _one(
        partitioned_metadata_response(4, 0, error=pb.MetadataError, message="zk down")
    ).partitionMetadataResponse
    assert body.response == pb.CommandPartitionedTopicMetadataResponse.Failed
    assert (body.error, body.message) == (pb.MetadataError, "zk down")


def test_broker_initiated_closes_use_uint64_minus_one():
    assert _one(close_consumer(3)).close_consumer.request_id == U64_MAX
    assert _one(close_consumer(3, 8)).close_consumer.request_id == 8
    assert _one(close_producer(2)).close_producer.producer_id == 2


def test_active_consumer_change_false_is_present():
    body = _one(active_consumer_change(5, False)).active_consumer_change
    assert body.HasField("is_active") and not body.is_active


def test_get_last_message_id_response_empty_topic():
    body = _one(get_last_message_id_response(1, -1, -1)).getLastMessageIdResponse
    assert body.last_message_id.entryId == U64_MAX and body.last_message_id.ledgerId == U64_MAX
    assert not body.last_message_id.HasField("partition")
    assert not body.HasField("consumer_mark_delete_position")


def test_get_last_message_id_response_full():
    frame = get_last_message_id_response(
        1, 3, 10, partition=2, batch_index=4, mark_delete_ledger=3, mark_delete_entry=7
    )
    body = _one(frame).getLastMessageIdResponse
    assert (body.last_message_id.partition, body.last_message_id.batch_index) == (2, 4)
    assert (body.consumer_mark_delete_position.ledgerId, body.consumer_mark_delete_position.entryId) == (3, 7)


def test_topics_schema_and_ack_responses():
    topics = ["persistent://public/default/a", "persistent://public/default/b-partition-0"]
    assert (
        list(_one(get_topics_of_namespace_response(2, iter(topics))).getTopicsOfNamespaceResponse.topics)
        == topics
    )
    schema = _one(get_schema_response(3, pb.TopicNotFound, "no schema")).getSchemaResponse
    assert (schema.error_code, schema.error_message) == (pb.TopicNotFound, "no schema")
    ok = pb.Schema(name="s", schema_data=b"{}", type=pb.Schema.Json)
    with_schema = _one(
        get_schema_response(3, None, None, schema=ok, schema_version=b"\x01")
    ).getSchemaResponse
    assert with_schema.schema.type == pb.Schema.Json and not with_schema.HasField("error_code")
    ack = _one(ack_response(4, 11)).ackResponse
    assert (ack.consumer_id, ack.request_id) == (4, 11) and not ack.HasField("error")
    failed = _one(ack_response(4, 11, pb.NotAllowedError, "nope")).ackResponse
    assert (failed.error, failed.message) == (pb.NotAllowedError, "nope")


def test_encode_command_refuses_missing_required_fields():
    cmd = pb.BaseCommand(type=pb.BaseCommand.SUCCESS)
    cmd.success.SetInParent()
    with pytest.raises(ProtocolError, match="request_id"):
        encode_command(cmd)


def test_builders_reject_wrongly_typed_input():
    with pytest.raises(TypeError):
        success("7")  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        error(1, 999, "unknown enum value")
