"""Bad input and crashes: malformed frames, kill -9 during production, unwritable data dirs."""

import socket
import struct
import subprocess
import sys
import threading
import time

import httpx
import pulsar
import pytest
from pulsar import InitialPosition

from taureau.protocol import FrameDecoder, encode_command, encode_payload_command, pb
from taureau.protocol.metadata import encode_entry
from tests.e2e.harness import Standalone

T = pb.BaseCommand.Type


def connect_frame() -> bytes:
    return encode_command(
        pb.BaseCommand(
            type=T.CONNECT, connect=pb.CommandConnect(client_version="raw-test", protocol_version=20)
        )
    )


def raw_session(standalone, *frames: bytes, read_for: float = 1.0) -> tuple[bytes, bool]:
    """Send frames on a raw socket; return (bytes received, whether the server closed it)."""
    sock = socket.create_connection(("127.0.0.1", standalone.broker_port), timeout=read_for)
    received = b""
    closed = False
    try:
        for frame in frames:
            sock.sendall(frame)
            time.sleep(0.2)  # like a real client, wait for each reply before the next request
        deadline = time.monotonic() + read_for
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    finally:
        sock.close()
    return received, closed


def producer_frames(topic: str) -> list[bytes]:
    return [
        connect_frame(),
        encode_command(
            pb.BaseCommand(
                type=T.PRODUCER, producer=pb.CommandProducer(topic=topic, producer_id=1, request_id=1)
            )
        ),
    ]


def send_frame(payload: bytes, sequence_id: int = 0) -> bytes:
    cmd = pb.BaseCommand(type=T.SEND, send=pb.CommandSend(producer_id=1, sequence_id=sequence_id))
    return encode_payload_command(cmd, payload)


def entry(body: bytes, sequence_id: int = 0) -> bytes:
    meta = pb.MessageMetadata(
        producer_name="raw", sequence_id=sequence_id, publish_time=int(time.time() * 1000)
    )
    return encode_entry(meta, body)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x00\x00\x00\x02ab", id="total-size-too-small"),
        pytest.param(struct.pack(">II", 8, 100) + b"12345678", id="command-size-past-frame"),
        pytest.param(struct.pack(">I", 64 * 1024 * 1024) + b"x" * 100, id="frame-over-max-size"),
        pytest.param(struct.pack(">II", 12, 8) + b"\xff" * 8, id="invalid-protobuf"),
        pytest.param(
            encode_command(pb.BaseCommand(type=T.PING))[: -0 or None] + b"\x00", id="truncated-tail"
        ),
        pytest.param(struct.pack(">II", 6, 2) + b"\x08\x63", id="unknown-command-type"),
    ],
)
def test_malformed_frames_close_only_that_connection(standalone, client, topic, garbage):
    _, closed = raw_session(standalone, connect_frame(), garbage, read_for=2.0)
    assert closed or garbage.endswith(b"\x00")  # a truncated frame just waits for more bytes
    producer = client.create_producer(topic)
    producer.send(b"still serving")
    assert (
        client.subscribe(topic, "s", initial_position=InitialPosition.Earliest).receive(5000).data()
        == b"still serving"
    )


def test_command_before_connect_closes_the_connection(standalone):
    frame = encode_command(
        pb.BaseCommand(type=T.LOOKUP, lookupTopic=pb.CommandLookupTopic(topic="t", request_id=1))
    )
    _, closed = raw_session(standalone, frame)
    assert closed


def test_bad_checksum_is_refused_and_nothing_is_stored(standalone, client, topic):
    good = entry(b"payload")
    corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
    frames = producer_frames(topic) + [send_frame(corrupt)]
    received, _ = raw_session(standalone, *frames, read_for=1.5)
    assert b"checksum" in received
    stats = httpx.get(f"{standalone.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/stats").json()
    assert stats["msgInCounter"] == 0 and stats["entriesCount"] == 0


def test_unparseable_metadata_in_send_is_never_stored(standalone, client, topic):
    body = b"\xff\xff\xff\xff\xff garbage protobuf"
    garbage_entry = struct.pack(">I", len(body)) + body + b"payload"
    received, closed = raw_session(
        standalone, *producer_frames(topic), send_frame(garbage_entry), read_for=1.5
    )
    # Refused alone (ChecksumError, as Pulsar clients expect for a bad message): the
    # connection and its producer stay usable.
    errors = [f.command.send_error for f in FrameDecoder().feed(received) if f.command.type == T.SEND_ERROR]
    assert not closed and len(errors) == 1
    assert errors[0].error == 9 and errors[0].message.startswith(
        "invalid message: unparseable MessageMetadata"
    )
    stats = httpx.get(f"{standalone.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/stats").json()
    assert stats["entriesCount"] == 0
    consumer = client.subscribe(topic, "s", initial_position=InitialPosition.Earliest)
    client.create_producer(topic).send(b"fine")
    assert consumer.receive(5000).data() == b"fine"


def test_truncated_metadata_in_send_is_rejected(standalone, client, topic):
    frames = producer_frames(topic) + [send_frame(b"\x00\x00\x00\x50short")]
    raw_session(standalone, *frames, read_for=1.0)
    producer = client.create_producer(topic)
    producer.send(b"ok")


def test_unwritable_data_dir_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taureau.cli.main",
            "standalone",
            "--data-dir",
            str(blocker / "data"),
            "--broker-port",
            "0",
            "--web-port",
            "0",
            "--no-state",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "not writable" in result.stderr


def test_clean_shutdown_and_restart_keep_data(tmp_path):
    server = Standalone(tmp_path / "data").start()
    try:
        keep_everything(server, "persistent://public/default/restart")
        client = pulsar.Client(server.service_url)
        producer = client.create_producer("persistent://public/default/restart")
        for i in range(20):
            producer.send(str(i).encode())
        client.close()
        assert server.stop() == 0
        server.restart()
        client = pulsar.Client(server.service_url)
        consumer = client.subscribe(
            "persistent://public/default/restart", "s", initial_position=InitialPosition.Earliest
        )
        assert [int(consumer.receive(5000).data()) for _ in range(20)] == list(range(20))
        client.close()
    finally:
        server.kill()


class Recorder:
    """Sends consecutive integers as fast as the client allows and records which were acked."""

    def __init__(self, client, topic: str, name: str) -> None:
        self.producer = client.create_producer(
            topic,
            producer_name=name,
            batching_enabled=False,
            max_pending_messages=500,
            block_if_queue_full=True,  # contiguous sequence ids: a gap would read as a duplicate
            send_timeout_millis=0,  # keep pending messages across the broker's restart
        )
        self.acked: list[int] = []
        self.next = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            value = self.next

            def done(result, msg_id, value=value):
                if result == pulsar.Result.Ok:
                    self.acked.append(value)

            try:
                self.producer.send_async(str(value).encode(), done, sequence_id=value)
            except Exception:
                return
            self.next += 1


def keep_everything(server: Standalone, topic: str) -> None:
    """A durable subscription from the start: as on Pulsar, a topic with no subscription and
    no retention policy may delete its ledgers once they roll over."""
    path = f"{server.admin_url}/admin/v2/persistent/{topic.split('://')[1]}/subscription/audit"
    assert httpx.put(path, json={"ledgerId": -1, "entryId": -1}).status_code == 204


def read_all(service_url: str, topic: str, raw: bool = False) -> list:
    """Every stored message of `topic`, read from the earliest (ints unless raw)."""
    client = pulsar.Client(service_url, operation_timeout_seconds=10)
    try:
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        stored = []
        while reader.has_message_available():
            data = reader.read_next(timeout_millis=5000).data()
            stored.append(data.decode() if raw else int(data))
        return stored
    finally:
        client.close()


@pytest.mark.parametrize("dedup", [False, True], ids=["plain", "dedup"])
def test_kill_9_during_production_loses_nothing_acknowledged(tmp_path, dedup):
    """A producer keeps sending while the broker is killed -9 and restarted, three times.
    Every acknowledged message must be stored, in send order; the client resends what was
    pending at each crash, and with de-duplication nothing is stored twice."""
    server = Standalone(tmp_path / "data").start()
    topic = "persistent://public/default/crash"
    if dedup:
        r = httpx.post(f"{server.admin_url}/admin/v2/namespaces/public/default/deduplication", json=True)
        assert r.status_code == 204
    keep_everything(server, topic)
    client = pulsar.Client(server.service_url, operation_timeout_seconds=30)
    try:
        recorder = Recorder(client, topic, "crash-producer")
        recorder.thread.start()
        for _round in range(3):
            time.sleep(1.0)
            server.kill()
            time.sleep(0.2)
            server.restart()
        time.sleep(1.0)
        recorder.stop.set()
        recorder.thread.join(30)
        recorder.producer.flush()
        acked = list(recorder.acked)
        stored = read_all(server.service_url, topic)
    finally:
        client.close()
        server.kill()
    assert len(acked) > 100, "too little was acknowledged to test anything"
    assert set(acked) <= set(stored)
    first_seen = list(dict.fromkeys(stored))
    assert first_seen == sorted(first_seen)  # in order per producer
    if dedup:
        assert len(stored) == len(set(stored)) == recorder.next


@pytest.fixture
def tiny_disk(tmp_path):
    """A 6 MiB tmpfs, so the disk really fills up (needs root, as CI has)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mount_point)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_is_an_error_not_a_silent_drop(tiny_disk):
    server = Standalone(tiny_disk / "data").start()
    topic = "persistent://public/default/full"
    keep_everything(server, topic)
    acked: list[int] = []
    failed = 0
    try:
        client = pulsar.Client(server.service_url, operation_timeout_seconds=5)
        producer = client.create_producer(topic, batching_enabled=False, send_timeout_millis=3000)
        body = b"x" * 2000
        for i in range(5000):
            try:
                producer.send(str(i).encode() + b":" + body)
                acked.append(i)
            except Exception:
                failed += 1
                if failed >= 3:
                    break
        client.close()
        assert failed >= 3, "the disk never filled up"
        assert any("No space left" in line or "disk" in line.lower() for line in server.output), "".join(
            server.output[-20:]
        )
        # Still serving: the admin API answers and the acknowledged messages are readable.
        assert httpx.get(f"{server.admin_url}/admin/v2/tenants", timeout=10).status_code == 200
        server.kill()
        subprocess.run(["mount", "-o", "remount,size=64M", str(tiny_disk)], check=True)
        server.restart()
        stored = [int(value.split(":")[0]) for value in read_all(server.service_url, topic, raw=True)]
        assert set(acked) <= set(stored)
    finally:
        server.kill()


def test_a_second_process_cannot_open_a_data_dir_in_use(tmp_path):
    first = Standalone(tmp_path / "data").start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(tmp_path / "data"),
             "--broker-port", "0", "--web-port", "0", "--no-state"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert "in use" in second.stderr
        assert httpx.get(f"{first.admin_url}/admin/v2/tenants").status_code == 200
    finally:
        assert first.stop() == 0
