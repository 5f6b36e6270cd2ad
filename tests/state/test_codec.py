"""The sans-IO codec, byte strings only; and servers fed garbage keep serving others."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from taureau.common import errors
from taureau.state import codec
from taureau.state.codec import OK, REQUEST, FrameDecoder, Op


def test_roundtrip_and_split_feeding():
    frames = [codec.encode(REQUEST, Op.PUT, 7, [b"\x00" * 8, b"k", b""]), codec.encode(OK, Op.GET, 9, [])]
    data = b"".join(frames)
    d = FrameDecoder()
    out = []
    for i in range(len(data)):  # one byte at a time
        out += d.feed(data[i : i + 1])
    assert [(f.kind, f.op, f.req_id, f.fields) for f in out] == [
        (REQUEST, Op.PUT, 7, [b"\x00" * 8, b"k", b""]),
        (OK, Op.GET, 9, []),
    ]
    assert d.buffered == 0


def test_error_reply_maps_back_to_typed_exception():
    (fr,) = FrameDecoder().feed(codec.encode_exc(Op.GET, 3, errors.KeyNotFoundError("gone")))
    exc = codec.reply_exception(fr.fields)
    assert isinstance(exc, errors.KeyNotFoundError) and str(exc) == "gone"
    (fr,) = FrameDecoder().feed(codec.encode_error(Op.GET, 3, codec.STALE, "moved"))
    assert isinstance(codec.reply_exception(fr.fields), codec.Redirect)
    assert isinstance(codec.reply_exception([]), errors.StateProtocolError)


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">I", 2) + b"xx",  # length below the header size
        struct.pack(">I", 1 << 31),  # absurd length
        struct.pack(">IBBI", 6, 9, 1, 1),  # unknown kind
        struct.pack(">IBBI", 8, 0, 1, 1) + b"\x00\x00",  # truncated field length
        struct.pack(">IBBII", 11, 0, 1, 1, 50) + b"a",  # field runs past the frame
    ],
)
def test_decoder_rejects_malformed_frames(data):
    with pytest.raises(errors.StateProtocolError):
        FrameDecoder().feed(data)


def test_an_oversized_length_is_refused_however_the_bytes_are_cut():
    # Found by tests/fuzz (atheris): a 6.6 MB length word was refused when its 4 bytes came
    # in one read, but waited for a full 10-byte header when they came one by one.
    from taureau.state.limits import controller_limits

    data = b"\x00\x65\x00\x00\x00"
    with pytest.raises(codec.FrameRefused):
        FrameDecoder(controller_limits()).feed(data)
    dec = FrameDecoder(controller_limits())
    for b in data[:3]:
        assert dec.feed(bytes([b])) == []
    with pytest.raises(codec.FrameRefused, match="exceeds every limit"):
        dec.feed(data[3:4])


def test_control_json_must_be_an_object():
    with pytest.raises(errors.StateProtocolError):
        codec.unpack_json([b"[1]"])
    with pytest.raises(errors.StateProtocolError):
        codec.unpack_json([b"{not json"])
    with pytest.raises(errors.StateProtocolError):
        codec.unpack_u64(b"\x01")


def _raw(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_garbage_to_servers_closes_that_connection_only(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/g/ht")
    ht.put(b"a", b"1")
    for addr in (cluster.address, cluster.memory_servers[0].address):
        s = _raw(addr)
        s.sendall(b"\xff" * 64)
        assert s.recv(4096)  # an error frame, then EOF
        assert s.recv(4096) == b""
        s.close()
    # well-framed nonsense gets a typed error reply and the connection stays usable
    s = _raw(cluster.address)
    s.sendall(codec.encode(REQUEST, Op.CREATE, 1, [b'{"path": 5}']) + codec.encode(REQUEST, 250, 2, []))
    d, frames = FrameDecoder(), []
    while len(frames) < 2:
        frames += d.feed(s.recv(4096))
    assert [type(codec.reply_exception(f.fields)) for f in frames] == [errors.StateProtocolError] * 2
    s.sendall(codec.encode(REQUEST, Op.EXISTS_PATH, 3, [json.dumps({"path": "/g/ht"}).encode()]))
    assert json.loads(d.feed(s.recv(4096))[0].fields[0]) == {"exists": True}
    s.close()
    # data op with missing fields
    ms = _raw(cluster.memory_servers[0].address)
    ms.sendall(codec.encode(REQUEST, Op.PUT, 1, [ht._parts[0].alloc]))
    (fr,) = FrameDecoder().feed(ms.recv(4096))
    assert isinstance(codec.reply_exception(fr.fields), errors.StateProtocolError)
    ms.close()
    assert ht.get(b"a") == b"1"
