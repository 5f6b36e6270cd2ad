"""A connection's large frame under way is dropped with the connection: its buffer goes at
once, and nothing of the frame is stored (the socket-level cases are in
tests/e2e/test_large_frames.py)."""

from __future__ import annotations

import asyncio
import os

import pytest

from taureau.protocol import encode_payload_command, pb
from taureau.protocol.framing import READ_SIZE
from taureau.protocol.metadata import encode_entry
from tests.broker.test_inline_ack import cmd, connect, service, until  # noqa: F401  (service: a fixture)

pytestmark = pytest.mark.anyio
T = pb.BaseCommand.Type


def send(body: bytes, sequence_id: int) -> bytes:
    meta = pb.MessageMetadata(producer_name="p", sequence_id=sequence_id, publish_time=1)
    command = pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=1, sequence_id=sequence_id))
    return encode_payload_command(command, encode_entry(meta, body))


def read(conn, data: bytes) -> None:
    """As a BufferedProtocol transport reads: into the buffers the connection lends."""
    pos = 0
    while pos < len(data):
        view = conn.get_buffer(-1)
        n = min(len(view), len(data) - pos)
        view[:n] = data[pos : pos + n]
        conn.buffer_updated(n)
        pos += n


async def test_half_a_large_frame_then_a_disconnect_stores_nothing_and_frees_the_buffer(service):  # noqa: F811
    topic = "persistent://public/default/large-half"
    conn, transport = connect(service)
    conn.data_received(cmd(T.PRODUCER, "producer", topic=topic, producer_id=1, request_id=1))
    await until(lambda: transport.of(T.PRODUCER_SUCCESS), "the producer")
    read(conn, send(b"a" * 1000, 0))
    await until(lambda: transport.of(T.SEND_RECEIPT), "the first receipt")
    frame = send(os.urandom(1024 * 1024), 1)
    read(conn, frame[: len(frame) // 2])
    assert conn.decoder.buffered == len(frame) // 2
    assert len(conn.get_buffer(-1)) == len(frame) - len(frame) // 2  # the frame's own buffer
    conn.connection_lost(None)
    assert conn.decoder.buffered == 0
    assert len(conn.get_buffer(-1)) == READ_SIZE
    await asyncio.sleep(0.05)
    (found,) = [t for t in service.loaded_topics() if str(t.name) == topic]
    assert found.ledger.last_confirmed.entry_id == 0  # the first SEND alone
    assert len(transport.of(T.SEND_RECEIPT)) == 1


async def test_a_large_frame_read_through_lent_buffers_is_stored_exact(service):  # noqa: F811
    topic = "persistent://public/default/large-lent"
    conn, transport = connect(service)
    conn.data_received(cmd(T.PRODUCER, "producer", topic=topic, producer_id=1, request_id=1))
    await until(lambda: transport.of(T.PRODUCER_SUCCESS), "the producer")
    body = os.urandom(1024 * 1024)
    read(conn, send(body, 0) + send(b"small", 1))
    await until(lambda: len(transport.of(T.SEND_RECEIPT)) == 2, "the receipts")
    (found,) = [t for t in service.loaded_topics() if str(t.name) == topic]
    stored = await found.ledger.read_entries(found.ledger.first_position, 10)
    metas = [pb.MessageMetadata(producer_name="p", sequence_id=i, publish_time=1) for i in (0, 1)]
    assert [e.data for e in stored] == [encode_entry(metas[0], body), encode_entry(metas[1], b"small")]
