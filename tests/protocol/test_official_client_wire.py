"""The codec against the official pulsar-client: a minimal in-test broker built from it alone."""

import asyncio
import threading

import pulsar
import pytest

from taureau.protocol import (
    FrameDecoder,
    append_message,
    append_send_receipt,
    connected,
    lookup_response,
    parse_entry,
    partitioned_metadata_response,
    pb,
    pong,
    producer_success,
    split_batch,
    success,
)

T = pb.BaseCommand


class TinyBroker:
    """One topic, entries kept in a list: just enough to exercise every hot-path codec call."""

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def reply(self, frame, out: bytearray) -> None:
        c = frame.command
        if c.type == T.CONNECT:
            out += connected("taureau-test", min(c.connect.protocol_version, 20), 5 * 1024 * 1024)
        elif c.type == T.PARTITIONED_METADATA:
            out += partitioned_metadata_response(c.partitionMetadata.request_id, 0)
        elif c.type == T.LOOKUP:
            out += lookup_response(
                c.lookupTopic.request_id, f"pulsar://127.0.0.1:{self.port}", 1, True, False
            )
        elif c.type == T.PRODUCER:
            out += producer_success(c.producer.request_id, f"tiny-{c.producer.producer_id}", -1)
        elif c.type == T.SEND:
            assert frame.checksum_ok
            meta = parse_entry(frame.payload)
            self.entries.append(frame.payload)
            eid = len(self.entries) - 1
            append_send_receipt(out, c.send.producer_id, c.send.sequence_id, meta.highest_sequence_id, 1, eid)
        elif c.type == T.SUBSCRIBE:
            out += success(c.subscribe.request_id)
        elif c.type == T.FLOW:
            for eid, entry in enumerate(self.entries):
                append_message(out, c.flow.consumer_id, 1, eid, -1, 0, entry)
        elif c.type == T.PING:
            out += pong()
        elif c.type == T.CLOSE_PRODUCER:
            out += success(c.close_producer.request_id)
        elif c.type == T.CLOSE_CONSUMER:
            out += success(c.close_consumer.request_id)

    async def session(self, reader, writer) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            out = bytearray()
            for frame in decoder.feed(data):
                self.reply(frame, out)
            writer.write(bytes(out))  # one coalesced write per read
            await writer.drain()
        writer.close()

    def run(self) -> None:
        server = self.loop.run_until_complete(asyncio.start_server(self.session, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()


@pytest.fixture
def broker():
    tiny = TinyBroker()
    thread = threading.Thread(target=tiny.run, daemon=True)
    thread.start()
    assert tiny.ready.wait(5)
    yield tiny
    tiny.loop.call_soon_threadsafe(tiny.loop.stop)
    thread.join(5)


def test_official_client_produces_and_consumes_through_the_codec(broker):
    client = pulsar.Client(f"pulsar://127.0.0.1:{broker.port}", operation_timeout_seconds=5)
    try:
        producer = client.create_producer("wire")
        ids = [producer.send(b"m%d" % i, properties={"i": str(i)}, partition_key="pk") for i in range(3)]
        assert [(m.ledger_id(), m.entry_id()) for m in ids] == [(1, 0), (1, 1), (1, 2)]

        batching = client.create_producer(
            "wire",
            batching_enabled=True,
            batching_max_publish_delay_ms=10,
            compression_type=pulsar.CompressionType.LZ4,
        )
        for i in range(5):
            batching.send_async(b"b%d" % i * 40, None, properties={"n": str(i)})
        batching.flush()
        # A real client-made LZ4 batch: metadata, decompression and splitting all agree with it.
        meta = parse_entry(broker.entries[-1])
        assert meta.is_batch and meta.num_messages == 5 and meta.compression == pb.LZ4
        assert meta.highest_sequence_id == meta.sequence_id + 4
        assert [m[2] for m in split_batch(broker.entries[-1])] == [b"b%d" % i * 40 for i in range(5)]

        consumer = client.subscribe("wire", "sub")
        got = [consumer.receive(5000) for _ in range(8)]
        assert [m.data() for m in got[:3]] == [b"m0", b"m1", b"m2"]
        assert got[0].properties() == {"i": "0"} and got[0].partition_key() == "pk"
        assert [m.data() for m in got[3:]] == [b"b%d" % i * 40 for i in range(5)]
        assert [m.message_id().batch_index() for m in got[3:]] == [0, 1, 2, 3, 4]
    finally:
        client.close()
