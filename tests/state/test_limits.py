"""What one connection can make a state server hold: frames bounded by block size and op,
refused from their header; replies a client does not read; block commands only from their owner."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from taureau.common import errors
from taureau.state import StateClient, codec
from taureau.state.codec import REQUEST, FrameDecoder, Op, pack_u64
from taureau.state.limits import CONTROL_MAX, data_max
from tests.state.helpers import raw_socket

BLOCK = 64 << 10


def _header(length: int, op: int, req_id: int) -> bytes:
    return struct.pack(">IBBI", length, REQUEST, op, req_id)


def _replies_then_eof(s: socket.socket) -> list[codec.Frame]:
    d, frames = FrameDecoder(), []
    while data := s.recv(1 << 16):
        frames += d.feed(data)
    return frames


def _reply(s: socket.socket) -> Exception | list[bytes]:
    d, frames = FrameDecoder(), []
    while not frames:
        frames = d.feed(s.recv(1 << 16))
    (fr,) = frames
    return fr.fields if fr.kind == codec.OK else codec.reply_exception(fr.fields)


def _at_limit(server: str, alloc: bytes, limit: int) -> tuple[bytes, type[errors.StateError]]:
    """A well-formed frame exactly at the limit, and the error its op answers it with."""
    if server == "memory server":  # a value one block cannot hold
        value = b"v" * (limit - 6 - (4 + 8) - (4 + 1) - 4)
        return codec.encode(REQUEST, Op.PUT, 8, [alloc, b"k", value]), errors.ValueTooLargeError
    pad = limit - 6 - 4 - len(json.dumps({"path": "/", "kind": "queue"}))  # a path too long
    body = json.dumps({"path": "/" + "a" * pad, "kind": "queue"}).encode()
    return codec.encode(REQUEST, Op.CREATE, 8, [body]), errors.InvalidPathError


@pytest.mark.parametrize(
    ("server", "op", "limit"),
    [("memory server", Op.PUT, data_max(BLOCK)), ("controller", Op.CREATE, CONTROL_MAX)],
)
def test_oversized_frame_is_refused_from_its_header_with_a_typed_error(cluster, server, op, limit):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/lim/ht")
    ht.put(b"a", b"1")
    addr = cluster.memory_servers[0].address if server == "memory server" else cluster.address
    s = raw_socket(addr)
    s.sendall(_header(limit + 1, op, 7))  # the header alone: nothing of the body is needed
    (fr,) = _replies_then_eof(s)
    assert fr.req_id == 7
    exc = codec.reply_exception(fr.fields)
    assert type(exc) is errors.FrameTooLargeError
    assert f"{limit}-byte limit" in str(exc)
    s.close()
    # a frame of exactly the limit is read and answered by its op
    frame, answer = _at_limit(server, ht._parts[0].alloc, limit)
    assert len(frame) - 4 == limit
    s = raw_socket(addr)
    s.sendall(frame)
    assert type(_reply(s)) is answer
    s.close()
    assert ht.get(b"a") == b"1"  # only that connection was closed


def test_300_mib_frame_attack_leaves_server_rss_flat(server_process):
    srv = server_process(block_size=BLOCK)
    with StateClient(srv.address) as c:
        ht = c.open_or_create_hash_table("/lim/ht")
        ht.put(b"a", b"1")
        before = srv.rss_mb()
        chunk = memoryview(bytes(1 << 20))
        for addr, op in ((srv.ms_address, Op.PUT), (srv.address, Op.CREATE)):
            s = raw_socket(addr)
            s.sendall(_header(300 << 20, op, 1))
            sent = 0
            try:
                for _ in range(300):
                    s.sendall(chunk)
                    sent += 1
            except OSError:
                pass  # refused at the header and closed: the rest cannot be sent
            s.close()
            assert sent < 300
        time.sleep(0.2)
        grown = srv.rss_mb() - before
        assert grown < 30, f"server RSS grew {grown:.0f} MB under a 300 MiB frame"
        assert ht.get(b"a") == b"1" and srv.alive()


def test_client_that_never_reads_its_replies_is_paused_not_buffered(server_process):
    srv = server_process(block_size=BLOCK)
    with StateClient(srv.address) as c:
        f = c.open_or_create_file("/lim/f")
        f.write(b"x" * BLOCK)
        alloc = f._parts[0].alloc
        before = srv.rss_mb()
        # 4000 reads of a whole block: 250 MiB of replies for 200 KB of requests
        reqs = b"".join(
            codec.encode(REQUEST, Op.READ, i + 1, [alloc, pack_u64(0), pack_u64(BLOCK)]) for i in range(4000)
        )
        s = raw_socket(srv.ms_address)
        s.setblocking(False)
        sent, deadline = 0, time.monotonic() + 2
        while sent < len(reqs) and time.monotonic() < deadline:
            try:
                sent += s.send(reqs[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.3)
        grown = srv.rss_mb() - before
        assert grown < 30, f"server RSS grew {grown:.0f} MB for replies nobody reads"
        assert f.seek(0) == 0 and f.read(3) == b"xxx"  # everyone else is served meanwhile
        # the stalled client is served in full once it reads
        expected = sent // (len(reqs) // 4000)
        s.setblocking(True)
        s.settimeout(10)
        d, got = FrameDecoder(), 0
        while got < expected:
            got += sum(1 for fr in d.feed(s.recv(1 << 20)) if fr.kind == codec.OK)
        s.close()
        assert got == expected > 0


def test_multi_get_cannot_amplify_one_value_into_a_huge_reply(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/lim/amp")
    big = b"v" * (40 << 10)
    ht.put(b"k", big)
    s = raw_socket(cluster.memory_servers[0].address)
    s.sendall(codec.encode(REQUEST, Op.MULTI_GET, 1, [ht._parts[0].alloc, *[b"k"] * 1000]))
    assert type(_reply(s)) is errors.ValueTooLargeError
    s.close()
    assert ht.multi_get([b"k"] * 1000) == [big] * 1000  # the client asks for each key once


def test_block_commands_are_taken_only_from_their_owner(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/lim/own")
    ht.put(b"a", b"1")
    q = c.open_or_create_queue("/lim/q")
    q.enqueue(b"i")
    alloc = ht._parts[0].alloc
    ms = raw_socket(cluster.memory_servers[0].address)
    for op, fields in (
        (Op.FREE_BLOCK, codec.pack_json({"alloc": codec.unpack_u64(alloc)})),
        (Op.EXPORT, [alloc]),
        (Op.IMPORT, [alloc, b"injected", b"x"]),  # only another memory server imports
    ):
        ms.sendall(codec.encode(REQUEST, op, 1, fields))
        assert type(_reply(ms)) is errors.StateAuthError
    ms.close()
    ctl = raw_socket(cluster.address)
    qalloc = codec.unpack_u64(q._parts[0].alloc)
    for op, args in (
        (Op.DRAINED, {"alloc": qalloc}),
        (Op.SPLIT_REQUEST, {"alloc": codec.unpack_u64(alloc), "at": 100}),
        (Op.NOTIFY, {}),
    ):
        ctl.sendall(codec.encode(REQUEST, op, 1, [json.dumps(args).encode()]))
        assert type(_reply(ctl)) is errors.StateProtocolError
    ctl.close()
    assert ht.get(b"a") == b"1" and not ht.exists(b"injected")
    assert c.status("/lim/own")["blocks"] == 1 and q.dequeue() == b"i"


def test_client_refuses_an_oversized_control_request_and_keeps_its_connection(make_cluster):
    c = make_cluster(block_size=1024, num_blocks=300).client()
    with pytest.raises(errors.FrameTooLargeError):
        c.exists("/" + "a" * CONTROL_MAX)
    assert c.exists("/") is True
    # 300 open paths of 250 characters: one RENEW of them all would exceed the limit
    paths = [f"/lim/many/p{i:03d}" + "x" * 235 for i in range(300)]
    for p in paths:
        c.open_or_create_queue(p)
    time.sleep(0.2)
    renewed = time.monotonic()
    c.renew()  # cut into several requests
    remaining = [c.status(p)["lease_remaining_ms"] for p in paths]
    # A path the RENEW missed has lost the 0.2 s above as well as the time since the renew; a
    # renewed one only the time since (reading 300 statuses takes a while on a busy machine).
    since_renew_ms = (time.monotonic() - renewed) * 1000
    assert min(remaining) > c.lease_ms - since_renew_ms - 50
