"""Large frames over a real socket: the broker reads the rest of a frame it knows to be large
straight into a buffer of the frame's exact size (asyncio.BufferedProtocol), allocated only
after the size passed the max-frame check. Whatever way the bytes arrive, the stored entry is
the one sent, and a bad or cut-off large frame closes that connection alone."""

from __future__ import annotations

import os
import socket
import time

import httpx

from taureau.protocol import encode_payload_command, pb
from tests.e2e.harness import receive_all
from tests.e2e.raw import RawClient, T, entry

MAX_FRAME = 5 * 1024 * 1024 + 10 * 1024  # the default max_message_size plus FRAME_SLACK


def _producer(raw: RawClient, topic: str) -> None:
    assert raw.producer(topic).type == T.PRODUCER_SUCCESS


def _frames(entries: list[bytes]) -> bytes:
    """SEND frames of producer 1 carrying `entries`, sequence ids from 0."""
    return b"".join(
        encode_payload_command(
            pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=1, sequence_id=i)), data
        )
        for i, data in enumerate(entries)
    )


def _stored(standalone, topic: str) -> int:
    stats = httpx.get(f"{standalone.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/stats")
    return stats.json()["msgInCounter"] if stats.status_code == 200 else 0


def test_a_large_frame_in_many_small_chunks_is_stored_exact(standalone, client, topic):
    body = os.urandom(1024 * 1024)
    frame = _frames([entry(body)])
    with RawClient(standalone.broker_port) as raw:
        _producer(raw, topic)
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for pos in range(0, len(frame), 4096):  # many reads on the broker's side
            raw.send_raw(frame[pos : pos + 4096])
            if pos % (64 * 4096) == 0:
                time.sleep(0.002)
        (receipt,) = raw.replies(1)
        assert receipt.type == T.SEND_RECEIPT
    assert receive_all(client, topic, "check", expect=1) == [body]


def test_several_large_frames_back_to_back_in_one_write(standalone, client, topic):
    bodies = [os.urandom(300_000 + i) for i in range(5)]
    with RawClient(standalone.broker_port) as raw:
        _producer(raw, topic)
        raw.send_raw(_frames([entry(b, sequence_id=i) for i, b in enumerate(bodies)]))
        replies = raw.replies(5)
        assert [r.type for r in replies] == [T.SEND_RECEIPT] * 5
        assert [r.send_receipt.sequence_id for r in replies] == [0, 1, 2, 3, 4]
    assert receive_all(client, topic, "check", expect=5) == bodies


def test_a_frame_size_over_the_maximum_closes_that_connection_only(standalone, client, topic):
    with RawClient(standalone.broker_port) as bystander:
        _producer(bystander, topic)
        with RawClient(standalone.broker_port) as raw:
            raw.send_raw((MAX_FRAME + 1).to_bytes(4, "big"))  # the size alone: refused at once
            raw.until_closed(10)
            assert raw.closed
        # The broker still serves: the other connection, and a new one.
        bystander.publish(entry(b"still here"), sequence_id=0)
        assert bystander.replies(1)[0].type == T.SEND_RECEIPT
    with RawClient(standalone.broker_port) as fresh:
        assert fresh.producer(topic, producer_id=2).type == T.PRODUCER_SUCCESS
    assert receive_all(client, topic, "check", expect=1) == [b"still here"]


def test_half_a_large_frame_then_a_disconnect_stores_nothing(standalone, client, topic):
    frame = _frames([entry(os.urandom(2 * 1024 * 1024))])
    with RawClient(standalone.broker_port) as raw:
        _producer(raw, topic)
        raw.send_raw(frame[: len(frame) // 2])
        time.sleep(0.2)  # the broker has read it into the frame's buffer
    time.sleep(0.2)
    assert _stored(standalone, topic) == 0
    with RawClient(standalone.broker_port) as again:  # the broker still serves
        _producer(again, topic)
        again.publish(entry(b"whole"), sequence_id=0)
        assert again.replies(1)[0].type == T.SEND_RECEIPT
    assert receive_all(client, topic, "check", expect=1) == [b"whole"]
