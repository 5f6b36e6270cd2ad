"""A structure-aware fuzzer of Pulsar commands against a real broker (issue 7).

Hypothesis builds sessions of commands the way a buggy or hostile client might send them:
well-formed commands with odd values (ids that collide, huge or zero permits, acks of
positions that do not exist, names that are not UTF-8, a PRODUCER or SUBSCRIBE on topics that
are not valid), SENDs whose metadata and payload are generated field by field (batch counts
that do or do not match the records, compression with right or wrong sizes, properties and
keys that are not UTF-8, bad checksums), frames cut short or with a byte flipped, and among
them ordinary good SENDs. Each session is one connection, pipelined, read back briefly.

The pass condition is not only "no crash":
- the broker process lives through every session, and keeps serving afterwards (a new
  producer and consumer of the official client round-trip a message; REST answers);
- a fresh subscription from Earliest on every fuzzed topic receives every message the broker
  acknowledged with a SEND_RECEIPT (good and fuzzed alike: acknowledged means stored and
  readable), read by the official client in a child process so a client crash is a failure;
- the broker's RSS stays under a bound throughout.

Inputs are derandomized and bounded (FUZZ_EXAMPLES sessions, about 20 s here) so the suite
stays fast and repeatable; raise FUZZ_EXAMPLES in the environment for a longer hunt.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zlib

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from taureau.protocol import FrameDecoder, encode_command, encode_entry, encode_payload_command, pb
from tests.e2e.harness import RssPeak, Standalone
from tests.e2e.raw import T, bad_string, recv_by

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
NAMESPACE = "public/fuzz"
TOPICS = [f"persistent://{NAMESPACE}/t{i}" for i in range(3)]
PRODUCER_IDS = [1, 2, 3]  # each registers on TOPICS[id - 1]: its receipts are checked
RSS_BOUND_MIB = 400
LZ4 = pb.CompressionType.Value("LZ4")
ZSTD = pb.CompressionType.Value("ZSTD")
ZLIB = pb.CompressionType.Value("ZLIB")

# -- values -----------------------------------------------------------------------------------

# Strings: usually text, sometimes bytes that are not UTF-8 (set raw on the wire).
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", ".", "..", "a\nb", "中文", "x" * 300]),
    st.binary(min_size=1, max_size=6).filter(lambda b: not _is_utf8(b)),
)
ids = st.one_of(st.integers(1, 4), st.integers(0, 2**64 - 1))
topic_names = st.one_of(
    st.sampled_from(TOPICS),
    st.sampled_from(["", "persistent://public/fuzz/..", "persistent://nope/ns/t", "t0\n", "a/b/c/d"]),
    st.text(max_size=20),
)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _set(message, field: str, value: str | bytes):
    """Set a string field, to bytes that are not UTF-8 if so drawn (protobuf refuses those)."""
    if isinstance(value, bytes):
        return bad_string(message, field, value)
    setattr(message, field, value)
    return message


# -- entries (the SEND payload section) -------------------------------------------------------------


@st.composite
def batch_payloads(draw) -> tuple[bytes, int]:
    """(uncompressed batch payload, records in it)."""
    bodies = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=6))
    out = b""
    for body in bodies:
        record = pb.SingleMessageMetadata(payload_size=len(body))
        if draw(st.booleans()):
            record = _set(record, "partition_key", draw(texts))
        raw = record.SerializeToString()
        out += len(raw).to_bytes(4, "big") + raw + body
    if draw(st.integers(0, 9)) == 0:
        out = out[: draw(st.integers(0, len(out)))]  # cut inside a record
    return out, len(bodies)


@st.composite
def entries(draw) -> bytes:
    meta = pb.MessageMetadata(
        sequence_id=draw(st.integers(0, 2**64 - 1)), publish_time=draw(st.integers(0, 2**64 - 1))
    )
    meta = _set(meta, "producer_name", draw(texts))
    for _ in range(draw(st.integers(0, 2))):
        kv = _set(_set(pb.KeyValue(), "key", draw(texts)), "value", draw(texts))
        meta.properties.add().CopyFrom(kv)
    if draw(st.booleans()):
        meta = _set(meta, "partition_key", draw(texts))
    if draw(st.booleans()):
        meta.ordering_key = draw(st.binary(max_size=8))
    if draw(st.booleans()):
        meta.event_time = draw(st.integers(0, 2**64 - 1))
    shape = draw(st.sampled_from(["single", "batch", "compressed-batch", "compressed-single"]))
    if shape == "single":
        payload = draw(st.binary(max_size=200))
    else:
        payload, records = draw(batch_payloads()) if "batch" in shape else (draw(st.binary(max_size=200)), 1)
        if "batch" in shape:
            meta.num_messages_in_batch = draw(
                st.one_of(st.just(records), st.integers(-2, records + 3), st.integers(0, 2**31 - 1))
            )
        if "compressed" in shape:
            codec = draw(st.sampled_from([ZLIB, LZ4, ZSTD]))
            meta.compression = codec
            meta.uncompressed_size = draw(
                st.one_of(st.just(len(payload)), st.integers(0, 2**32 - 1), st.integers(0, len(payload) + 8))
            )
            payload = _compress(codec, payload)
    data = encode_entry(meta, payload, checksum=draw(st.booleans()))
    if data[:2] == b"\x0e\x01" and draw(st.integers(0, 9)) == 0:
        data = data[:-1] + bytes([data[-1] ^ 0x5A])  # the checksum no longer matches
    return data


def _compress(codec: int, data: bytes) -> bytes:
    if codec == ZLIB:
        return zlib.compress(data)
    if codec == LZ4:
        import lz4.block

        return lz4.block.compress(data, store_size=False)
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


# -- commands -------------------------------------------------------------------------------------


def _frame(kind: int, field: str, body) -> bytes:
    cmd = pb.BaseCommand(type=kind)
    getattr(cmd, field).CopyFrom(body)
    return encode_command(cmd)


def _message_id(draw) -> pb.MessageIdData:
    return pb.MessageIdData(ledgerId=draw(st.integers(0, 2**64 - 1)), entryId=draw(st.integers(0, 2**64 - 1)))


# Command kinds, repeated for weight: good and fuzzed SENDs are what can be stored.
KINDS = (
    ["good"] * 3
    + ["send"] * 5
    + ["producer", "subscribe", "flow", "ack", "redeliver", "seek", "close_producer", "close_consumer"]
    + ["unsubscribe", "lookup", "partitioned", "last_id", "ping", "connect"]
)


@st.composite
def mangled(draw) -> bytes:
    """A SEND frame cut short or with one byte flipped: the connection's last frame."""
    frame = draw(commands(kind="mangled"))
    assert isinstance(frame, bytes)
    return frame


@st.composite
def commands(draw, kind: str | None = None) -> bytes | tuple[str, int, int]:
    """One frame's bytes, or ("good", producer_id, n) for a good SEND filled in at send time."""
    kind = kind or draw(st.sampled_from(KINDS))
    if kind == "good":
        return ("good", draw(st.sampled_from(PRODUCER_IDS)), 0)
    if kind in ("send", "mangled"):
        producer_id = draw(st.one_of(st.sampled_from(PRODUCER_IDS), ids))
        send = pb.CommandSend(producer_id=producer_id, sequence_id=draw(st.integers(0, 2**64 - 1)))
        if draw(st.booleans()):
            send.num_messages = draw(st.integers(-(2**31), 2**31 - 1))
        cmd = pb.BaseCommand(type=T.SEND)
        cmd.send.CopyFrom(send)
        frame = encode_payload_command(cmd, draw(entries()))
        if kind == "mangled":
            cut = draw(st.integers(0, len(frame) - 1))
            frame = (
                frame[:cut] + bytes([frame[cut] ^ draw(st.integers(1, 255))]) + frame[cut + 1 :]
                if draw(st.booleans())
                else frame[:cut]
            )
        return frame
    if kind == "producer":
        body = pb.CommandProducer(topic="x", producer_id=draw(ids), request_id=draw(ids))
        body = _set(body, "topic", draw(topic_names))
        if draw(st.booleans()):
            body = _set(body, "producer_name", draw(texts))
        body.producer_access_mode = draw(st.integers(0, 3))
        return _frame(T.PRODUCER, "producer", body)
    if kind == "subscribe":
        body = pb.CommandSubscribe(
            topic="x",
            subscription="x",
            subType=draw(st.integers(0, 3)),
            consumer_id=draw(ids),
            request_id=draw(ids),
            durable=draw(st.booleans()),
            initialPosition=draw(st.integers(0, 1)),
        )
        body = _set(_set(body, "topic", draw(topic_names)), "subscription", draw(texts))
        if draw(st.booleans()):
            body = _set(body, "consumer_name", draw(texts))
        if draw(st.booleans()):
            body.start_message_id.CopyFrom(_message_id(draw))
        return _frame(T.SUBSCRIBE, "subscribe", body)
    if kind == "flow":
        return _frame(
            T.FLOW,
            "flow",
            pb.CommandFlow(consumer_id=draw(ids), messagePermits=draw(st.integers(0, 2**32 - 1))),
        )
    if kind == "ack":
        body = pb.CommandAck(consumer_id=draw(ids), ack_type=draw(st.integers(0, 1)))
        for _ in range(draw(st.integers(0, 3))):
            body.message_id.add().CopyFrom(_message_id(draw))
        return _frame(T.ACK, "ack", body)
    if kind == "redeliver":
        body = pb.CommandRedeliverUnacknowledgedMessages(consumer_id=draw(ids))
        return _frame(T.REDELIVER_UNACKNOWLEDGED_MESSAGES, "redeliverUnacknowledgedMessages", body)
    if kind == "seek":
        body = pb.CommandSeek(consumer_id=draw(ids), request_id=draw(ids))
        if draw(st.booleans()):
            body.message_id.CopyFrom(_message_id(draw))
        else:
            body.message_publish_time = draw(st.integers(0, 2**64 - 1))
        return _frame(T.SEEK, "seek", body)
    if kind == "close_producer":
        return _frame(
            T.CLOSE_PRODUCER, "close_producer", pb.CommandCloseProducer(producer_id=draw(ids), request_id=1)
        )
    if kind == "close_consumer":
        return _frame(
            T.CLOSE_CONSUMER, "close_consumer", pb.CommandCloseConsumer(consumer_id=draw(ids), request_id=1)
        )
    if kind == "unsubscribe":
        return _frame(
            T.UNSUBSCRIBE, "unsubscribe", pb.CommandUnsubscribe(consumer_id=draw(ids), request_id=1)
        )
    if kind == "lookup":
        body = _set(pb.CommandLookupTopic(topic="x", request_id=draw(ids)), "topic", draw(topic_names))
        return _frame(T.LOOKUP, "lookupTopic", body)
    if kind == "partitioned":
        body = _set(
            pb.CommandPartitionedTopicMetadata(topic="x", request_id=draw(ids)), "topic", draw(topic_names)
        )
        return _frame(T.PARTITIONED_METADATA, "partitionMetadata", body)
    if kind == "last_id":
        body = pb.CommandGetLastMessageId(consumer_id=draw(ids), request_id=draw(ids))
        return _frame(T.GET_LAST_MESSAGE_ID, "getLastMessageId", body)
    if kind == "ping":
        return encode_command(pb.BaseCommand(type=T.PING, ping=pb.CommandPing()))
    body = _set(pb.CommandConnect(protocol_version=draw(st.integers(0, 30))), "client_version", draw(texts))
    return _frame(T.CONNECT, "connect", body)


CONNECT = _frame(T.CONNECT, "connect", pb.CommandConnect(client_version="fuzz", protocol_version=20))
REGISTER = b"".join(
    _frame(T.PRODUCER, "producer", pb.CommandProducer(topic=TOPICS[p - 1], producer_id=p, request_id=900 + p))
    for p in PRODUCER_IDS
)


# -- the run ------------------------------------------------------------------------------------------


SEND_TIMEOUT_S = 2.0


class Session:
    """One connection: CONNECT and producers 1-3 registered (as a client does, it waits for
    their answers), then its frames out pipelined, and what comes back."""

    def __init__(self, port: int, register: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SEND_TIMEOUT_S)
        self.decoder = FrameDecoder(64 * 1024 * 1024)
        self.replies: list[pb.BaseCommand] = []
        self.registered: set[int] = set()  # producer ids that hold TOPICS[id - 1] here
        if register:
            self._send([CONNECT, REGISTER])
            answers = (T.PRODUCER_SUCCESS, T.ERROR)
            self._read(2.0, until=lambda: sum(r.type in answers for r in self.replies) == len(PRODUCER_IDS))
            # A registration can fail (an exclusive producer of an earlier session not yet gone):
            # then a fuzzed PRODUCER may put that id on another topic, whose receipts are not ours.
            self.registered = {
                r.producer_success.request_id - 900 for r in self.replies if r.type == T.PRODUCER_SUCCESS
            }

    def run(self, frames: list[bytes], wait_s: float = 0.15) -> list[pb.BaseCommand]:
        self._send(frames)
        self._read(wait_s)
        self.sock.close()
        return self.replies

    def _send(self, frames: list[bytes]) -> None:
        try:
            self.sock.sendall(b"".join(frames))
        except OSError:
            pass  # the broker closed us mid-way (a malformed frame): fine

    def _read(self, wait_s: float, until=lambda: False) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not until():
            try:
                # The fuzzed frames sent next get SEND_TIMEOUT_S, not the read's remainder: _send
                # takes a timeout for the broker closing the connection.
                chunk = recv_by(self.sock, deadline, SEND_TIMEOUT_S)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            try:
                self.replies += [f.command for f in self.decoder.feed(chunk)]
            except Exception:
                break


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    server = Standalone(tmp_path_factory.mktemp("fuzz"), "--no-journal-fsync").start()
    with httpx.Client(base_url=server.admin_url, timeout=10) as admin:
        assert admin.put(f"/admin/v2/namespaces/{NAMESPACE}").status_code == 204
        retention = {"retentionTimeInMinutes": -1, "retentionSizeInMB": -1}  # keep everything
        assert admin.post(f"/admin/v2/namespaces/{NAMESPACE}/retention", json=retention).status_code == 204
    yield server
    server.stop()


def _receive_everything(server: Standalone, topic: str) -> list[list]:
    """[ledger, entry, data] of every message a fresh Earliest subscription gets, read by the
    official client in a child process (a crash of the client is a failure, not ours to die of)."""
    script = f"""
import json, pulsar, uuid
client = pulsar.Client({server.service_url!r}, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
consumer = client.subscribe({topic!r}, "verify-" + uuid.uuid4().hex,
                            initial_position=pulsar.InitialPosition.Earliest)
got = []
try:
    while True:
        m = consumer.receive(timeout_millis=1500)
        got.append([m.message_id().ledger_id(), m.message_id().entry_id(), m.data().hex()])
except pulsar.Timeout:
    pass
client.close()
print(json.dumps(got))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the official client failed reading {topic}: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fuzzed_sessions_lose_nothing_acknowledged_and_keep_the_broker_serving(fuzzed):
    acknowledged: dict[str, set[tuple[int, int]]] = {topic: set() for topic in TOPICS}
    good: dict[str, set[bytes]] = {topic: set() for topic in TOPICS}
    counter = iter(range(10**9))
    refused = [0]
    peak = RssPeak(fuzzed)
    began = time.monotonic()

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # shrinking against one live broker misleads
        suppress_health_check=list(HealthCheck),
    )
    @given(
        ops=st.lists(commands(), min_size=1, max_size=14),
        tail=st.one_of(st.none(), mangled()),
        connect=st.integers(0, 9),
    )
    def session(ops, tail, connect):
        frames: list[bytes] = []
        sent_good: dict[tuple[int, int], bytes] = {}
        for op in ops:
            if isinstance(op, tuple):  # a good SEND
                n = next(counter)
                body = f"good-{n}".encode()
                cmd = pb.BaseCommand(
                    type=T.SEND, send=pb.CommandSend(producer_id=op[1], sequence_id=10**12 + n)
                )
                frames.append(encode_payload_command(cmd, encode_entry(_good_meta(n), body)))
                sent_good[(op[1], 10**12 + n)] = body
            else:
                frames.append(op)
        if tail is not None:
            frames.append(tail)
        connection = Session(fuzzed.broker_port, register=connect > 0)
        replies = connection.run(frames)
        assert fuzzed.proc.poll() is None, "the broker died:\n" + "".join(fuzzed.output[-40:])
        refused[0] += sum(r.type == T.SEND_ERROR and r.send_error.error == 9 for r in replies)
        for reply in replies:
            if reply.type == T.SEND_RECEIPT and reply.send_receipt.producer_id in connection.registered:
                receipt = reply.send_receipt
                topic = TOPICS[receipt.producer_id - 1]
                acknowledged[topic].add((receipt.message_id.ledgerId, receipt.message_id.entryId))
                body = sent_good.get((receipt.producer_id, receipt.sequence_id))
                if body is not None:
                    good[topic].add(body)

    session()
    fuzz_seconds = time.monotonic() - began
    # The broker keeps serving: REST, and a new producer/consumer pair of the official client.
    with httpx.Client(base_url=fuzzed.admin_url, timeout=10) as admin:
        for topic in TOPICS:
            assert admin.get(f"/admin/v2/persistent/{topic.split('://')[1]}/stats").status_code == 200
    for _ in range(50):  # producers of the last sessions may take a moment to go
        witness = Session(fuzzed.broker_port)
        if witness.registered == set(PRODUCER_IDS):
            break
        witness.run([])
        time.sleep(0.1)
    replies = witness.run([_good_send(p) for p in PRODUCER_IDS], 2.0)
    receipts = [r.send_receipt for r in replies if r.type == T.SEND_RECEIPT]
    assert len(receipts) == len(PRODUCER_IDS), [T.Name(r.type) for r in replies]
    for receipt in receipts:
        topic = TOPICS[receipt.producer_id - 1]
        acknowledged[topic].add((receipt.message_id.ledgerId, receipt.message_id.entryId))
        good[topic].add(b"witness")
    # A fresh subscription from Earliest gets every acknowledged entry and every good message.
    for topic in TOPICS:
        received = _receive_everything(fuzzed, topic)
        ids = {(ledger, entry) for ledger, entry, _ in received}
        bodies = {bytes.fromhex(data) for _, _, data in received}
        assert acknowledged[topic] <= ids, (topic, sorted(acknowledged[topic] - ids)[:10])
        assert good[topic] <= bodies, (topic, sorted(good[topic] - bodies)[:10])
    top = peak.stop()
    assert top < RSS_BOUND_MIB, f"broker RSS peaked at {top:.0f} MiB"
    assert sum(map(len, good.values())) > 3  # the run did store good messages among the poison
    stored = sum(map(len, acknowledged.values()))
    print(
        f"fuzzed {FUZZ_EXAMPLES} sessions in {fuzz_seconds:.1f}s: {stored} entries acknowledged "
        f"({sum(map(len, good.values()))} good), {refused[0]} SENDs refused; peak RSS {top:.0f} MiB"
    )


def _good_meta(n: int) -> pb.MessageMetadata:
    return pb.MessageMetadata(
        producer_name=f"good-{n}", sequence_id=10**12 + n, publish_time=int(time.time() * 1000)
    )


def _good_send(producer_id: int) -> bytes:
    cmd = pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=producer_id, sequence_id=1))
    meta = pb.MessageMetadata(producer_name="witness", sequence_id=1, publish_time=int(time.time() * 1000))
    return encode_payload_command(cmd, encode_entry(meta, b"witness"))
