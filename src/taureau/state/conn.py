"""Blocking client connection for the state wire: one socket, pipelined requests, typed replies."""

from __future__ import annotations

import select
import socket

from taureau.common import errors
from taureau.state import codec
from taureau.state.codec import ERROR, EVENT, OK, REQUEST, Frame

# Plain blocking sockets rather than a background event-loop thread: a call costs one
# sendall + one recv here, while a loop thread adds two thread hand-offs; bench/state.py
# measured 17.7k vs 5.5k single gets/s. Each thread gets its own Conn (see
# StateClient), so no lock is held across a round trip.

RECV_SIZE = 1 << 18


class Conn:
    """Owned by one thread at a time. Replies are matched to requests by req_id."""

    def __init__(self, address: str, timeout: float, max_request: int = codec.DEFAULT_MAX_FRAME) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        except (OSError, ValueError) as e:
            raise errors.StateUnavailableError(f"cannot connect to {address}: {e}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.max_request = max_request  # the server's frame limit, when it is known up front
        self.decoder = codec.FrameDecoder()
        self.ready: dict[int, Frame] = {}  # replies read while waiting for another req_id
        self.events: list[Frame] = []  # pushed events read while waiting for replies
        self.next_id = 1
        self.broken = False
        self.tickets: dict[int, str] = {}  # structure id -> the ticket presented on this connection

    def close(self) -> None:
        self.broken = True
        self.sock.close()

    def stale(self) -> bool:
        """True if the server has closed this idle connection (e.g. it restarted): better to
        dial again than to send a request that cannot be known to have arrived."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def send(self, op: int, fields: list[bytes]) -> int:
        req_id = self.next_id
        self.next_id = (req_id + 1) & 0xFFFFFFFF or 1
        frame = codec.encode(REQUEST, op, req_id, fields)
        if len(frame) - 4 > self.max_request:  # the server would refuse it and drop the connection
            raise errors.FrameTooLargeError(
                f"a {len(frame) - 4}-byte {codec.op_name(op)} request exceeds the server's "
                f"{self.max_request}-byte limit"
            )
        self._sendall(frame)
        return req_id

    def _sendall(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.close()
            raise errors.StateUnavailableError(f"connection to {self.address} failed: {e}") from None

    def call(self, op: int, fields: list[bytes]) -> list[bytes]:
        """One request, one reply. Raises the server's typed error, or Redirect."""
        fr = self.wait(self.send(op, fields))
        if fr.kind == OK:
            return fr.fields
        raise self._error(fr)

    def _error(self, fr: Frame) -> Exception:
        exc = codec.reply_exception(fr.fields)
        if isinstance(exc, errors.FrameTooLargeError):
            self.close()  # the server refused the frame unread and closed the connection
        return exc

    def pipeline(self, reqs: list[tuple[int, list[bytes]]]) -> list[list[bytes] | Exception]:
        """Send every request, then collect every reply (errors returned, not raised)."""
        ids = []
        out: list[bytes] = []
        for op, fields in reqs:
            req_id = self.next_id
            self.next_id = (req_id + 1) & 0xFFFFFFFF or 1
            ids.append(req_id)
            out.append(codec.encode(REQUEST, op, req_id, fields))
        self._sendall(b"".join(out))
        res: list[list[bytes] | Exception] = []
        for i in ids:
            fr = self.wait(i)
            res.append(fr.fields if fr.kind == OK else self._error(fr))
        return res

    def wait(self, req_id: int, timeout: float | None = None) -> Frame:
        fr = self.ready.pop(req_id, None)
        while fr is None:
            for f in self.read_frames(timeout):
                if f.kind == EVENT:
                    self.events.append(f)
                elif f.req_id == req_id:
                    fr = f
                elif f.kind in (OK, ERROR):
                    self.ready[f.req_id] = f
        return fr

    def read_frames(self, timeout: float | None = None) -> list[Frame]:
        """Block for at least one frame; [] only if `timeout` passes first (socket.timeout)."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    raise ConnectionResetError("closed by peer")
                frames = self.decoder.feed(data)
                if frames:
                    return frames
        except TimeoutError:
            if timeout is not None:
                return []
            self.close()
            raise errors.StateUnavailableError(f"no reply from {self.address} in time") from None
        except (OSError, errors.StateProtocolError) as e:
            self.close()
            raise errors.StateUnavailableError(f"connection to {self.address} failed: {e}") from None
        finally:
            if timeout is not None and not self.broken:
                self.sock.settimeout(self.timeout)
