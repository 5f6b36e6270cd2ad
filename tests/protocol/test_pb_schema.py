import re
from pathlib import Path

from google.protobuf import descriptor_pb2

from taureau.protocol import pb

PROTOCOL_DIR = Path(pb.__file__).parent


def test_every_sub_command_sits_at_its_type_number():
    fields = pb.BaseCommand.DESCRIPTOR.fields_by_number
    for value in list(range(2, 41)) + list(range(50, 64)) + [68]:
        assert value in fields, value
        assert fields[value].message_type.name.startswith("Command")
    for value in range(64, 68):  # topic-list watchers: known types, no bodies here
        assert pb.BaseCommand.Type.Name(value)
        assert value not in fields


def test_key_field_numbers_match_the_public_protocol():
    def number(message, field):
        return message.DESCRIPTOR.fields_by_name[field].number

    assert number(pb.MessageMetadata, "num_messages_in_batch") == 11
    assert number(pb.MessageMetadata, "ordering_key") == 18
    assert number(pb.MessageMetadata, "highest_sequence_id") == 24
    assert number(pb.SingleMessageMetadata, "payload_size") == 3
    assert number(pb.CommandLookupTopicResponse, "response") == 3
    assert number(pb.CommandLookupTopicResponse, "proxy_through_service_url") == 8
    assert number(pb.CommandSubscribe, "initialPosition") == 13
    assert number(pb.CommandNewTxn, "tc_id") == 3
    assert number(pb.CommandEndTxn, "txn_action") == 4
    assert number(pb.CommandAddSubscriptionToTxn, "subscription") == 4
    assert number(pb.CommandTcClientConnectResponse, "error") == 2
    assert pb.TxnAction.Value("ABORT") == 1
    assert number(pb.CommandSubscribe, "keySharedMeta") == 17
    assert number(pb.CommandConnected, "max_message_size") == 3
    assert number(pb.CommandAck, "request_id") == 8
    assert pb.CommandLookupTopicResponse.Connect == 1 and pb.CommandSubscribe.Key_Shared == 3
    assert pb.ProducerFenced == 25 and pb.SNAPPY == 4


def test_generated_module_matches_the_proto_file():
    # The committed pb2 must come from the committed .proto (regenerate with scripts/gen_proto.sh).
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    source = (PROTOCOL_DIR / "PulsarApi.proto").read_text()
    declared = set(re.findall(r"^message (\w+)", source, re.M))
    assert declared == {m.name for m in proto.message_type}
    assert proto.syntax in ("", "proto2") and proto.package == "pulsar.proto"


def test_gencode_version_stamp_accepts_the_oldest_supported_runtime():
    text = (PROTOCOL_DIR / "pulsar_api_pb2.py").read_text()
    match = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", text)
    assert match, "runtime version check not found"
    assert tuple(map(int, match.groups())) <= (6, 33, 0)  # pyproject: protobuf>=6.33
