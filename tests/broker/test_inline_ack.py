"""ACKs outside a transaction are applied as the connection reads them (no control-queue job
per frame), but never ahead of a control command that came before them."""

from __future__ import annotations

import asyncio
import time

import pytest

from taureau.broker.config import BrokerConfig
from taureau.broker.connection import ServerConnection
from taureau.broker.error_codes import ServerError
from taureau.broker.service import BrokerService
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.protocol import FrameDecoder, encode_command, encode_payload_command, pb
from taureau.protocol.metadata import encode_entry
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory
from taureau.storage.position import Position
from taureau.testing.memory_ledger import MemoryLedgerClient
from tests.e2e.raw import bad_string

pytestmark = pytest.mark.anyio
T = pb.BaseCommand.Type


class Transport:
    """What ServerConnection needs of a transport; keeps the frames written to it."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder(64 * 1024 * 1024)
        self.frames: list[pb.BaseCommand] = []
        self.closed = False

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def write(self, data) -> None:
        self.frames += [frame.command for frame in self.decoder.feed(bytes(data))]

    def writelines(self, parts) -> None:
        self.write(b"".join(parts))

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def of(self, kind: int) -> list[pb.BaseCommand]:
        return [cmd for cmd in self.frames if cmd.type == kind]


def cmd(kind: int, field: str, **values) -> bytes:
    return encode_command(pb.BaseCommand(type=kind, **{field: values}))


def ack(consumer_id: int, position: Position, request_id: int | None = None, body=None) -> bytes:
    if body is None:
        body = pb.CommandAck(consumer_id=consumer_id, ack_type=pb.CommandAck.Cumulative)
        body.message_id.add(ledgerId=position.ledger_id, entryId=position.entry_id)
        if request_id is not None:
            body.request_id = request_id
    return encode_command(pb.BaseCommand(type=T.ACK, ack=body))


async def until(predicate, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


@pytest.fixture
async def service():
    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    svc = BrokerService(BrokerConfig(), store, factory)
    await svc.start()
    yield svc
    await svc.close()
    await factory.close()


def connect(service: BrokerService) -> tuple[ServerConnection, Transport]:
    conn, transport = ServerConnection(service), Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(cmd(T.CONNECT, "connect", client_version="test", protocol_version=20))
    return conn, transport


def subscribe(topic: str, request_id: int = 1) -> bytes:
    return cmd(T.SUBSCRIBE, "subscribe", topic=topic, subscription="s", subType=0, consumer_id=1,
               request_id=request_id, consumer_name="c", initialPosition=1)  # fmt: skip


async def stored_entry(service: BrokerService, topic: str, body: bytes) -> Position:
    """Publish through a producer connection; the position the receipt names."""
    conn, transport = connect(service)
    conn.data_received(cmd(T.PRODUCER, "producer", topic=topic, producer_id=1, request_id=1))
    await until(lambda: transport.of(T.PRODUCER_SUCCESS), "the producer")
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1)
    send = pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=1, sequence_id=0))
    conn.data_received(encode_payload_command(send, encode_entry(meta, body)))
    await until(lambda: transport.of(T.SEND_RECEIPT), "the receipt")
    mid = transport.of(T.SEND_RECEIPT)[0].send_receipt.message_id
    return Position(mid.ledgerId, mid.entryId)


async def subscribed(service: BrokerService, name: str) -> tuple[str, Position, ServerConnection, Transport]:
    """A topic with one stored entry, and a connection subscribed to it (consumer 1, "s") whose
    control task is idle again."""
    topic = f"persistent://public/default/inline-{name}"
    position = await stored_entry(service, topic, b"a")
    conn, transport = connect(service)
    conn.data_received(subscribe(topic))
    await until(lambda: transport.of(T.SUCCESS), "the subscription")
    await asyncio.sleep(0.01)  # the control task is back waiting on its queue
    return topic, position, conn, transport


def cursor(service: BrokerService, topic: str):
    (found,) = [t for t in service.loaded_topics() if str(t.name) == topic]
    return found.subscriptions["s"].cursor


async def test_an_ack_behind_a_subscribe_in_the_same_read_waits_for_it(service, request):
    topic = f"persistent://public/default/inline-{request.node.name}"
    position = await stored_entry(service, topic, b"a")
    conn, transport = connect(service)
    # SUBSCRIBE goes to the control queue; the ACK right behind it may not overtake it (it
    # would find no consumer 1 and be answered ConsumerNotFound).
    conn.data_received(subscribe(topic) + ack(1, position, request_id=7))
    await until(lambda: transport.of(T.ACK_RESPONSE), "the ack response")
    assert transport.of(T.SUCCESS)  # the subscribe, answered first
    response = transport.of(T.ACK_RESPONSE)[0].ackResponse
    assert response.request_id == 7 and not response.HasField("error")
    assert cursor(service, topic).mark_delete_position == position


async def test_an_ack_with_the_control_queue_idle_is_applied_as_it_is_read(service, request):
    topic, position, conn, transport = await subscribed(service, request.node.name)
    conn.data_received(ack(1, position, request_id=8))
    # No await in between: the cursor moved during data_received.
    assert cursor(service, topic).mark_delete_position == position
    await until(lambda: transport.of(T.ACK_RESPONSE), "the ack response")  # written at the turn's end
    assert [f.ackResponse.request_id for f in transport.of(T.ACK_RESPONSE)] == [8]


async def test_an_inline_ack_for_an_unknown_consumer_is_answered_and_the_connection_serves_on(service, request):
    topic, position, conn, transport = await subscribed(service, request.node.name)
    conn.data_received(ack(99, position, request_id=5))
    await until(lambda: transport.of(T.ACK_RESPONSE), "the ack response")
    (bad,) = transport.of(T.ACK_RESPONSE)
    assert bad.ackResponse.error == ServerError.ConsumerNotFound
    conn.data_received(ack(1, position, request_id=6))  # the good one still works
    await until(lambda: len(transport.of(T.ACK_RESPONSE)) == 2, "the second ack response")
    assert [f.ackResponse.request_id for f in transport.of(T.ACK_RESPONSE)] == [5, 6]
    assert not transport.of(T.ACK_RESPONSE)[1].ackResponse.HasField("error")
    assert cursor(service, topic).mark_delete_position == position
    assert not transport.closed


async def test_an_ack_with_a_non_utf8_property_is_refused_and_changes_nothing(service, request):
    topic, position, conn, transport = await subscribed(service, request.node.name)
    before = cursor(service, topic).mark_delete_position
    body = pb.CommandAck(consumer_id=1, ack_type=pb.CommandAck.Cumulative, request_id=3)
    body.message_id.add(ledgerId=position.ledger_id, entryId=position.entry_id)
    body.properties.add().CopyFrom(bad_string(pb.KeyLongValue(key="k", value=1), "key"))
    conn.data_received(ack(1, position, body=body))  # the properties send it through the queue
    await until(lambda: transport.of(T.ERROR), "the refusal")
    assert transport.of(T.ERROR)[0].error.request_id == 3
    assert cursor(service, topic).mark_delete_position == before
    conn.data_received(ack(1, position, request_id=4))
    await until(lambda: transport.of(T.ACK_RESPONSE), "the good ack")
    assert cursor(service, topic).mark_delete_position == position and not transport.closed
