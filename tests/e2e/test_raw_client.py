"""The raw test client itself: a read must not leave its short deadline on the socket.

It did: `frames()` set the socket's timeout to what was left of a read (at most the 0.2 s of
`expect`'s polls) and kept it, so every later `sendall` of a test had 0.2 s to go out whole.
A 1 MiB send to a broker that paused reading for longer (its in-flight bound, a busy CI
machine) then failed with TimeoutError, which twice failed CI as a "stalled broker".
"""

from __future__ import annotations

import socket
import threading

from taureau.protocol import FrameDecoder, encode_command
from tests.e2e.raw import RawClient, T, command


def _one_peer_that_answers_connect(listener: socket.socket, release: threading.Event) -> None:
    """Accept one client, answer its CONNECT, then read nothing until `release` is set."""
    peer, _ = listener.accept()
    with peer:
        decoder = FrameDecoder(1 << 20)
        while not any(f.command.type == T.CONNECT for f in decoder.feed(peer.recv(65536))):
            pass
        peer.sendall(encode_command(command(T.CONNECTED, "connected", server_version="fake", protocol_version=20)))
        release.wait(10)
        while peer.recv(1 << 20):  # drain until the client closes
            pass


def test_a_send_after_a_read_gets_the_clients_timeout_not_the_reads():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        release = threading.Event()
        peer = threading.Thread(target=_one_peer_that_answers_connect, args=(listener, release), daemon=True)
        peer.start()
        raw = RawClient(listener.getsockname()[1], timeout=30)  # CONNECT, then expect(CONNECTED)
        try:
            assert raw.frames(0.05) == []  # a read that times out: its own deadline only
            assert raw.sock.gettimeout() == 30
            # The peer reads nothing: 8 MiB fill the socket buffers, and the send waits for
            # longer than any read's deadline. With 0.2 s left on the socket it raised.
            threading.Timer(1.0, release.set).start()
            raw.send_raw(b"\0" * (8 << 20))
        finally:
            release.set()
            raw.close()
        peer.join(10)
        assert not peer.is_alive()
