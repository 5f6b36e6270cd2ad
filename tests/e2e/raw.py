"""A raw Pulsar protocol client for tests: sends what the official client never would.

Built on the project's own codec (taureau.protocol). `bad_string` makes protobuf messages
whose string fields are not UTF-8, which the protobuf library refuses to build directly.
"""

from __future__ import annotations

import socket
import time

from taureau.protocol import FrameDecoder, encode_command, encode_entry, encode_payload_command, pb
from taureau.protocol.framing import Frame

T = pb.BaseCommand.Type
CHECKSUM_ERROR = 9
NOT_ALLOWED = 22


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def bad_string(message, field: str, value: bytes = b"\xff\xfe"):
    """A copy of `message` with string `field` set to raw `value` (appended on the wire: for a
    singular field the last value wins, a repeated one gains an element)."""
    number = message.DESCRIPTOR.fields_by_name[field].number
    raw = message.SerializePartialToString() + _varint(number << 3 | 2) + _varint(len(value)) + value
    return type(message).FromString(raw)


def command(kind: int, field: str, body=None, **values) -> pb.BaseCommand:
    """BaseCommand of `kind` whose `field` is `body`, or built from `values`."""
    cmd = pb.BaseCommand(type=kind)
    getattr(cmd, field).CopyFrom(body if body is not None else type(getattr(cmd, field))(**values))
    return cmd


def metadata(sequence_id: int = 0, **fields) -> pb.MessageMetadata:
    meta = pb.MessageMetadata(
        producer_name="raw", sequence_id=sequence_id, publish_time=int(time.time() * 1000)
    )
    for name, value in fields.items():
        setattr(meta, name, value)
    return meta


def batch_payload(bodies: list[bytes]) -> bytes:
    out = b""
    for body in bodies:
        record = pb.SingleMessageMetadata(payload_size=len(body)).SerializeToString()
        out += len(record).to_bytes(4, "big") + record + body
    return out


def entry(body: bytes = b"good", sequence_id: int = 0, meta: pb.MessageMetadata | None = None) -> bytes:
    return encode_entry(meta if meta is not None else metadata(sequence_id), body)


def recv_by(sock: socket.socket, deadline: float, send_timeout: float) -> bytes:
    """One recv that waits until `deadline` (monotonic) at most; the socket's timeout is
    `send_timeout` again afterwards. Left at a read's remainder (0.2 s for `expect`'s polls), a
    later send of 1 MiB timed out whenever the broker paused reading that long."""
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    try:
        return sock.recv(1 << 20)
    finally:
        sock.settimeout(send_timeout)


class RawClient:
    """One connection: CONNECT on open, then frames out and frames in. The broker's keep-alive
    PINGs are answered as they are read, unless `answer_pings` is False."""

    def __init__(
        self, port: int, timeout: float = 5.0, connect: bool = True, answer_pings: bool = True
    ) -> None:
        self.answer_pings = answer_pings
        self.timeout = timeout  # of every send; a read sets its own and puts this one back
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = FrameDecoder(64 * 1024 * 1024)
        self.pending: list[Frame] = []
        self.closed = False
        if connect:
            self.send(command(T.CONNECT, "connect", client_version="raw-test", protocol_version=20))
            assert self.expect(T.CONNECTED).type == T.CONNECTED

    def send(self, cmd: pb.BaseCommand, payload: bytes | None = None) -> None:
        self.sock.sendall(encode_command(cmd) if payload is None else encode_payload_command(cmd, payload))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def producer(self, topic: str, producer_id: int = 1, request_id: int = 1, **extra) -> pb.BaseCommand:
        self.send(
            command(
                T.PRODUCER, "producer", topic=topic, producer_id=producer_id, request_id=request_id, **extra
            )
        )
        return self.expect(T.PRODUCER_SUCCESS, T.ERROR)

    def publish(self, data: bytes, sequence_id: int, producer_id: int = 1, **extra) -> None:
        self.send(command(T.SEND, "send", producer_id=producer_id, sequence_id=sequence_id, **extra), data)

    def frames(self, timeout: float) -> list[Frame]:
        """The frames that arrive within `timeout` seconds: returns as soon as some did (or
        the peer closed), [] if none came. Frames `expect` kept back are not included."""
        out: list[Frame] = []
        deadline = time.monotonic() + timeout
        while not out and not self.closed and time.monotonic() < deadline:
            try:
                chunk = recv_by(self.sock, deadline, self.timeout)
            except TimeoutError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            frames = self.decoder.feed(chunk)
            if self.answer_pings and any(f.command.type == T.PING for f in frames):
                self.send(command(T.PONG, "pong"))
            out += frames
        return out

    def until_closed(self, timeout: float) -> list[Frame]:
        """Every frame until the peer closes (or `timeout` passes)."""
        out = []
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            out += self.frames(deadline - time.monotonic())
        return out

    def expect(self, *kinds: int, timeout: float = 10.0) -> pb.BaseCommand:
        """The next command of one of `kinds` (others but PINGs kept for later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, frame in enumerate(self.pending):
                if frame.command.type in kinds:
                    del self.pending[i]
                    return frame.command
            self.pending += [f for f in self.frames(0.2) if f.command.type != T.PING]
            if self.closed and not any(f.command.type in kinds for f in self.pending):
                raise ConnectionError(f"server closed the connection; kept {self.kinds()}")
        raise TimeoutError(f"no {[T.Name(k) for k in kinds]} within {timeout}s; got {self.kinds()}")

    def replies(self, count: int, timeout: float = 10.0) -> list[pb.BaseCommand]:
        """The next `count` SEND_RECEIPT / SEND_ERROR replies, in arrival order."""
        return [self.expect(T.SEND_RECEIPT, T.SEND_ERROR, timeout=timeout) for _ in range(count)]

    def kinds(self) -> list[str]:
        return [T.Name(f.command.type) for f in self.pending]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
