"""dump/load of every structure kind, and bad dumps or backing paths."""

from __future__ import annotations

import os
import stat
import time

import pytest

from taureau.common import errors
from taureau.state.persist import decode_dump, encode_dump


def test_dump_and_load_each_kind(make_cluster):
    c = make_cluster(num_blocks=48).client()
    ht = c.open_or_create_hash_table("/d/ht")
    ht.multi_put({b"k%d" % i: b"v" * 150 for i in range(1000)})  # several blocks
    q = c.open_or_create_queue("/d/q")
    q.multi_enqueue([b"i%d" % i for i in range(50)])
    f = c.open_or_create_file("/d/f")
    f.write(b"abc" * 40000)
    for name in ("ht", "q", "f"):
        c.dump(f"/d/{name}", f"local://dumps/{name}")
        c.load(f"/e/{name}", f"local://dumps/{name}")
    assert c.open_hash_table("/e/ht").multi_get([b"k%d" % i for i in range(1000)]) == [b"v" * 150] * 1000
    q2 = c.open_queue("/e/q")
    assert [q2.dequeue() for _ in range(50)] == [b"i%d" % i for i in range(50)]
    assert c.open_file("/e/f").read() == b"abc" * 40000
    with pytest.raises(errors.PathExistsError):
        c.load("/e/ht", "local://dumps/ht")


def test_bad_dumps_and_backing_paths(cluster, tmp_path):
    c = cluster.client()
    c.open_or_create_hash_table("/d/x").put(b"a", b"b")
    with pytest.raises(errors.BackingStoreError):
        c.load("/d/y", "local://missing")
    with pytest.raises(errors.BackingStoreError):
        c.dump("/d/x", "local://../../escape")
    with pytest.raises(errors.BackingStoreError):
        c.dump("/d/x", "s3://bucket/key")
    c.dump("/d/x", "local://ok")
    p = tmp_path / "state" / "ok"
    p.write_bytes(p.read_bytes()[:-3])  # truncated
    with pytest.raises(errors.BackingStoreError):
        c.load("/d/y", "local://ok")
    assert not c.exists("/d/y")
    assert c.open_hash_table("/d/x").get(b"a") == b"b"


def test_drop_dump_deletes_only_dumps(cluster, tmp_path):
    c = cluster.client()
    c.open_or_create_hash_table("/d/x").put(b"a", b"b")
    c.dump("/d/x", "local://spills/x.dump")
    dump = tmp_path / "state" / "spills" / "x.dump"
    assert dump.exists()
    c.drop_dump("local://spills/x.dump")
    assert not dump.exists()
    with pytest.raises(errors.BackingStoreError, match="cannot delete"):
        c.drop_dump("local://spills/x.dump")  # already gone
    (tmp_path / "state" / "notes").write_bytes(b"not a dump")
    with pytest.raises(errors.BackingStoreError, match="not a dump"):
        c.drop_dump("local://notes")  # the data directory's other files are not a client's to delete
    assert (tmp_path / "state" / "notes").exists()
    with pytest.raises(errors.BackingStoreError, match="escapes"):
        c.drop_dump("local://../../escape")


def _flushed_mapped_table(c) -> None:
    """/p/m, backed by local://flushed/m.dump, closed and waited for until its lease flushed it."""
    c.create_hash_table("/p/m", mapped=True, backing_path="local://flushed/m.dump").put(b"k", b"v")
    c.close("/p/m")
    deadline = time.monotonic() + 5
    while c.status("/p/m")["state"] != "flushed":
        assert time.monotonic() < deadline, "mapped structure was not flushed"
        time.sleep(0.02)


def test_drop_dump_keeps_the_backing_of_a_flushed_structure(make_cluster, tmp_path):
    c = make_cluster(lease_ms=100).client()
    _flushed_mapped_table(c)
    with pytest.raises(errors.BackingStoreError, match="holds flushed /p/m"):
        c.drop_dump("local://flushed/m.dump")  # its only copy
    assert (tmp_path / "state" / "flushed" / "m.dump").exists()
    assert c.open_hash_table("/p/m").get(b"k") == b"v"


@pytest.mark.parametrize(
    "blob",
    [b"", b"TAUS", b"XXXX\x01\x01" + bytes(12), encode_dump("queue", [b"a", b"b"])[:-1] + b"\x00"],
)
def test_decode_dump_rejects_garbage(blob):
    with pytest.raises(errors.BackingStoreError):
        decode_dump(blob)


def test_dump_format_roundtrip():
    assert decode_dump(encode_dump("hash_table", [b"k", b"", b"", b"v"])) == (
        "hash_table",
        [b"k", b"", b"", b"v"],
    )


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_state_files_and_directories_are_owner_only(make_cluster, tmp_path):
    old = os.umask(0o022)  # a usual umask: what is not set explicitly comes out world-readable
    try:
        cl = make_cluster(lease_ms=100)
        c = cl.client()
        c.open_or_create_hash_table("/p/x").put(b"a", b"b")
        root = tmp_path / "state"
        (root / "deep").mkdir(mode=0o700)
        (root / "deep" / "x.dump.tmp").write_bytes(b"old")  # a leftover from a crash, 0644
        c.dump("/p/x", "local://deep/x.dump")
        c.dump("/p/x", "local://deeper/still/x.dump")
        _flushed_mapped_table(c)
    finally:
        os.umask(old)
    for d in (root, root / "deeper", root / "deeper" / "still", root / "flushed"):
        assert _mode(d) == 0o700, d
    for f in (root / "deep" / "x.dump", root / "deeper" / "still" / "x.dump", root / "flushed" / "m.dump"):
        assert _mode(f) == 0o600, f
    assert c.open_hash_table("/p/m").get(b"k") == b"v"
