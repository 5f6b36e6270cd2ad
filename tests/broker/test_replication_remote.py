"""The replicator's producer (broker/replication/remote.py) against scripted remote brokers
that misbehave: each wrong answer is a RemoteError (the replicator then reconnects), never a
hang or a crash. The well-behaved path runs against real standalones in
tests/e2e/test_geo_replication.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from taureau.broker.replication.remote import OutgoingEntry, RemoteError, RemoteProducer, host_port
from taureau.protocol import FrameDecoder, encode_command, encode_entry, pb, replies

TOPIC = "persistent://public/default/t"
_T = pb.BaseCommand

# What the scripted broker answers to a command: frames to write (or None to stay silent).
Script = Callable[[pb.BaseCommand], bytes | None]


def _lookup_connect(request_id: int) -> bytes:
    return replies.lookup_response(request_id, None, 1, True, True)


def well_behaved(cmd: pb.BaseCommand) -> bytes | None:
    if cmd.type == _T.CONNECT:
        return replies.connected("scripted", 19, 5 * 1024 * 1024)
    if cmd.type == _T.LOOKUP:
        return _lookup_connect(cmd.lookupTopic.request_id)
    if cmd.type == _T.PRODUCER:
        return replies.producer_success(cmd.producer.request_id, cmd.producer.producer_name, -1)
    if cmd.type == _T.CLOSE_PRODUCER:
        return replies.success(cmd.close_producer.request_id)
    return None


async def _serve(script: Script) -> tuple[asyncio.AbstractServer, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for frame in decoder.feed(data):
                answer = script(frame.command)
                if answer is not None:
                    writer.write(answer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"pulsar://127.0.0.1:{port}"


def _entry(seq: int) -> OutgoingEntry:
    meta = pb.MessageMetadata(producer_name="p", sequence_id=seq, publish_time=1)
    return OutgoingEntry(encode_entry(meta, b"x"), seq, seq, 1)


async def _send_through(script: Script, timeout: float = 5.0) -> None:
    server, url = await _serve(script)
    try:
        producer = await RemoteProducer.open(url, TOPIC, "pulsar.repl.a", timeout=timeout)
        await producer.send([_entry(0), _entry(1)], timeout)
        await producer.close()
    finally:
        server.close()
        await server.wait_closed()


def _receipts(sequence_ids: Callable[[int], int]) -> Script:
    def script(cmd: pb.BaseCommand) -> bytes | None:
        if cmd.type == _T.SEND:
            receipt = pb.CommandSendReceipt(producer_id=cmd.send.producer_id,
                                            sequence_id=sequence_ids(cmd.send.sequence_id))
            receipt.message_id.ledgerId, receipt.message_id.entryId = 1, cmd.send.sequence_id
            return encode_command(_T(type=_T.SEND_RECEIPT, send_receipt=receipt))
        return well_behaved(cmd)

    return script


def test_receipts_in_order_complete_the_sends():
    asyncio.run(_send_through(_receipts(lambda seq: seq)))


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (_receipts(lambda seq: seq + 7), "expected"),  # a receipt for another SEND
        (lambda cmd: replies.send_error(cmd.send.producer_id, cmd.send.sequence_id, pb.ServerError.PersistenceError,
                                        "disk full") if cmd.type == _T.SEND else well_behaved(cmd),
         "PersistenceError"),
        (lambda cmd: None if cmd.type == _T.SEND else well_behaved(cmd), "within"),  # never answered
        (lambda cmd: b"\x00\x00\x00\x02\xff\xff" if cmd.type == _T.SEND else well_behaved(cmd), "connection failed"),  # garbage
        (lambda cmd: replies.error(cmd.producer.request_id, pb.ServerError.ProducerBusy, "taken")
         if cmd.type == _T.PRODUCER else well_behaved(cmd), "ProducerBusy"),
        (lambda cmd: replies.lookup_response(cmd.lookupTopic.request_id, None, 2, False, False,
                                             pb.ServerError.ServiceNotReady, "not now")
         if cmd.type == _T.LOOKUP else well_behaved(cmd), "lookup failed"),
        (lambda cmd: None if cmd.type == _T.CONNECT else well_behaved(cmd), "CONNECT"),  # silent broker
    ],
    ids=["wrong-receipt", "send-error", "no-receipt", "garbage-frame", "producer-refused", "lookup-failed",
         "no-connected"],
)
def test_a_misbehaving_remote_is_a_remote_error(script, message):
    with pytest.raises(RemoteError, match=message):
        asyncio.run(_send_through(script, timeout=1.0))


def test_lookup_redirects_are_followed_to_the_owner():
    async def run() -> None:
        owner, owner_url = await _serve(_receipts(lambda seq: seq))

        def redirecting(cmd: pb.BaseCommand) -> bytes | None:
            if cmd.type == _T.LOOKUP:
                return replies.lookup_response(cmd.lookupTopic.request_id, owner_url, 0, True, False)
            return well_behaved(cmd)

        front, front_url = await _serve(redirecting)
        try:
            producer = await RemoteProducer.open(front_url, TOPIC, "pulsar.repl.a", timeout=5)
            assert producer.url == owner_url
            await producer.send([_entry(0)], 5)
            await producer.close()
        finally:
            for server in (front, owner):
                server.close()
                await server.wait_closed()

    asyncio.run(run())


@pytest.mark.parametrize("url", ["http://h:1", "pulsar+ssl://h:1", "pulsar://:1", "pulsar://h:99999"])
def test_urls_the_replicator_cannot_use_are_refused(url):
    with pytest.raises(RemoteError):
        host_port(url)
