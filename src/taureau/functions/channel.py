"""The worker <-> instance channel: a sans-IO frame codec, plus the instance's blocking end.

Byte grammar (version 1; big-endian):

    frame  := body_len:u32 header_len:u32 header blob
    header := UTF-8 JSON object, header_len bytes; always has "t" (the message type)
    blob   := body_len - 4 - header_len raw bytes (a state value, an invocation payload)

Requests that expect an answer carry "req" (an int unique per sender); the answer carries the
same "req" and "ok" (false with "error" and "kind" on failure). Message types:

    instance -> worker: hello {key|warm, pid}, status {...}, state {req, op, key, ...},
                        result {req, ok, ...}, checked {req, ok, error}
    worker -> instance: assign {spec}, invoke {req, ...}, check {req, spec}, stop {},
                        answer {req, ok, ...} (to a state request)
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple

MAX_FRAME = 16 * 1024 * 1024  # a state value or an invocation payload, plus headroom
_HEAD = struct.Struct(">II")


class ChannelError(Exception):
    """A malformed frame, or a channel that closed under a request."""


class Message(NamedTuple):
    header: dict[str, Any]
    blob: bytes


def encode(header: dict[str, Any], blob: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    body_len = 4 + len(head) + len(blob)
    if body_len > MAX_FRAME:
        raise ChannelError(f"frame of {body_len} bytes is over the {MAX_FRAME} byte limit")
    return _HEAD.pack(body_len, len(head)) + head + blob


class Decoder:
    """Feed bytes, get whole messages; raises ChannelError on a malformed stream."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= 8:
            body_len, head_len = _HEAD.unpack_from(self._buf)
            if body_len > MAX_FRAME or head_len > body_len - 4:
                raise ChannelError(f"bad frame header (body {body_len}, header {head_len})")
            if len(self._buf) < 4 + body_len:
                break
            head = bytes(self._buf[8 : 8 + head_len])
            blob = bytes(self._buf[8 + head_len : 4 + body_len])
            del self._buf[: 4 + body_len]
            try:
                header = json.loads(head)
            except ValueError:
                raise ChannelError("frame header is not JSON") from None
            if not isinstance(header, dict) or "t" not in header:
                raise ChannelError("frame header has no message type")
            out.append(Message(header, blob))
        return out


class InstanceChannel:
    """The instance's end: a blocking unix socket with a reader thread.

    Answers to this end's requests resolve the futures `request` returned; every other
    message goes to `on_message` (called on the reader thread).
    """

    def __init__(self, path: str, on_message: Callable[[Message], None], on_close: Callable[[], None]) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._on_message = on_message
        self._on_close = on_close
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Message]] = {}  # req -> its answer; owned under _send_lock
        self._next_req = 0
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name="taureau-channel", daemon=True)
        self._reader.start()

    def send(self, header: dict[str, Any], blob: bytes = b"") -> None:
        frame = encode(header, blob)
        with self._send_lock:
            if self._closed:
                raise ChannelError("channel to the worker is closed")
            self._sock.sendall(frame)

    def request(self, header: dict[str, Any], blob: bytes = b"") -> Future[Message]:
        future: Future[Message] = Future()
        frame_header = dict(header)
        with self._send_lock:
            if self._closed:
                raise ChannelError("channel to the worker is closed")
            self._next_req += 1
            frame_header["req"] = self._next_req
            self._pending[self._next_req] = future
            self._sock.sendall(encode(frame_header, blob))
        return future

    def _read_loop(self) -> None:
        decoder = Decoder()
        try:
            while True:
                data = self._sock.recv(256 * 1024)
                if not data:
                    break
                for message in decoder.feed(data):
                    if message.header["t"] == "answer":
                        with self._send_lock:
                            future = self._pending.pop(message.header.get("req", -1), None)
                        if future is not None:
                            future.set_result(message)
                    else:
                        self._on_message(message)
        except (OSError, ChannelError):
            pass
        finally:
            with self._send_lock:
                self._closed = True
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(ChannelError("channel to the worker closed"))
            self._on_close()

    def close(self) -> None:
        with self._send_lock:
            self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
