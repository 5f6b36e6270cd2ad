"""The embedded store's files: reopen, torn tails, snapshots, group fsync, write failures."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from taureau.common.errors import CorruptedDataError, MetadataStoreClosedError
from taureau.metadata import EmbeddedMetadataStore, records
from taureau.metadata import oplog as oplog_module
from taureau.metadata.oplog import MetadataLog

pytestmark = pytest.mark.anyio


def _files(path) -> list[str]:
    return sorted(os.listdir(path))


async def _dump(store: EmbeddedMetadataStore, path: str = "/") -> dict[str, tuple[bytes, int]]:
    out = {}
    for name in await store.children(path):
        child = path.rstrip("/") + "/" + name
        value, stat = await store.get(child)
        out[child] = (value, stat.version)
        out.update(await _dump(store, child))
    return out


async def _populate(store: EmbeddedMetadataStore) -> None:
    await store.put("/ledgers/1", b"L1", -1)
    await store.put("/ledgers/2", b"L2", -1)
    await store.put("/ledgers/1", b"L1b", 0)
    await store.delete("/ledgers/2")
    await store.put("/tree/a/b", b"ab")
    await store.put("/tree/c", b"c")
    await store.delete_recursive("/tree/a")
    await store.put("/bin", bytes(range(256)))


async def test_reopen_keeps_everything(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path))
    await _populate(store)
    before = await _dump(store)
    created = (await store.get("/ledgers/1"))[1].created_ms
    await store.close()
    again = EmbeddedMetadataStore(str(tmp_path))
    assert await _dump(again) == before
    assert before["/ledgers/1"] == (b"L1b", 1)
    assert "/ledgers/2" not in before and "/tree/a" not in before
    assert (await again.get("/ledgers/1"))[1].created_ms == created
    await again.put("/ledgers/1", b"L1c", 1)  # CAS continues from the recovered version
    await again.close()


async def test_unclosed_store_is_durable_once_put_returns(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path))
    await store.put("/x", b"1")
    # No close: a crashed process. A second opener sees the acknowledged change.
    assert (await EmbeddedMetadataStore(str(tmp_path)).get("/x"))[0] == b"1"


def _log_path(directory) -> str:
    (name,) = [n for n in _files(directory) if n.startswith("log-")]
    return os.path.join(directory, name)


@pytest.mark.parametrize(
    "tear",
    [
        pytest.param(lambda size, last: b"", id="empty"),
        pytest.param(lambda size, last: "header", id="header-only"),
        pytest.param(lambda size, last: "junk", id="junk-tail"),
        pytest.param(lambda size, last: size - last + 2, id="truncated-length"),
        pytest.param(lambda size, last: size - 3, id="truncated-entry"),
    ],
)
async def test_torn_log_tail(tmp_path, tear):
    store = EmbeddedMetadataStore(str(tmp_path))
    await store.put("/keep", b"k")
    size_before_last = os.path.getsize(_log_path(tmp_path))
    await store.put("/last", b"L" * 40)
    await store.close()
    path = _log_path(tmp_path)
    size = os.path.getsize(path)
    action = tear(size, size - size_before_last)
    expected: dict[str, bytes] = {"/keep": b"k"}
    if action == b"":
        open(path, "wb").close()
        expected = {}
    elif action == "header":
        os.truncate(path, 13)
        expected = {}
    elif action == "junk":
        with open(path, "ab") as f:
            f.write(b"\x00\x00\x01\x00garbage-after-a-crash")
        expected["/last"] = b"L" * 40
    else:
        os.truncate(path, action)
    again = EmbeddedMetadataStore(str(tmp_path))
    for key, value in expected.items():
        assert (await again.get(key))[0] == value
    if "/last" not in expected:
        assert await again.get("/last") is None
    # The torn bytes are gone and the store writes after the valid prefix.
    await again.put("/after", b"a")
    await again.close()
    third = EmbeddedMetadataStore(str(tmp_path))
    assert (await third.get("/after"))[0] == b"a"
    for key, value in expected.items():
        assert (await third.get(key))[0] == value
    await third.close()


async def test_foreign_file_is_refused_not_overwritten(tmp_path):
    path = tmp_path / f"log-{0:020d}"
    path.write_bytes(b"NOPE" + b"\x00" * 40)
    with pytest.raises(CorruptedDataError):
        EmbeddedMetadataStore(str(tmp_path))
    assert path.read_bytes().startswith(b"NOPE")


@pytest.mark.parametrize("fsync", [True, False])
async def test_snapshot_and_log_truncation(tmp_path, fsync):
    store = EmbeddedMetadataStore(str(tmp_path), fsync=fsync, snapshot_every=10)
    for i in range(57):
        await store.put(f"/n/{i % 13}", str(i).encode())
    await store.delete_recursive("/n/3")
    await store.put("/eph", b"", ephemeral=True)
    before = await _dump(store)
    names = _files(tmp_path)
    assert len([n for n in names if n.startswith("snapshot-")]) == 1
    assert len([n for n in names if n.startswith("log-")]) == 1
    # Truncation happened: the log holds fewer records than were written.
    assert os.path.getsize(_log_path(tmp_path)) < 57 * 20
    await store.close()
    again = EmbeddedMetadataStore(str(tmp_path))
    before.pop("/eph")
    assert await _dump(again) == before
    await again.close()


async def test_a_snapshot_is_the_tree_when_it_was_taken_though_encoded_later(tmp_path):
    # The loop only copies the tree; the encoding runs afterwards in a thread, while puts go on.
    store = EmbeddedMetadataStore(str(tmp_path), fsync=False)
    await store.put("/b", b"old")
    await store.put("/a", b"1")
    await store.put("/a/c", b"2")
    encode = store._snapshot_payloads()
    await store.put("/b", b"new")
    await store.put("/d", b"later")
    found = [records.decode(payload) for payload in encode()]
    assert [(r.path, r.value, r.version) for r in found if r.path != "/"] == [
        ("/a", b"1", 0),
        ("/a/c", b"2", 0),
        ("/b", b"old", 0),
    ]
    await store.close()


async def test_incomplete_snapshot_is_ignored(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path))
    await store.put("/x", b"1")
    await store.close()
    # A snapshot of a later generation cut short (no END record) and a leftover temp file.
    (tmp_path / f"snapshot-{5:020d}").write_bytes(b"TMDS\x01" + (5).to_bytes(8, "big"))
    (tmp_path / "snapshot-00000000000000000006.tmp").write_bytes(b"partial")
    again = EmbeddedMetadataStore(str(tmp_path))
    assert (await again.get("/x"))[0] == b"1"
    assert [n for n in _files(tmp_path) if n.startswith("snapshot")] == []
    await again.close()


async def test_concurrent_changes_share_fsyncs(tmp_path, monkeypatch):
    calls = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        real_fsync(fd)

    store = EmbeddedMetadataStore(str(tmp_path))
    monkeypatch.setattr(oplog_module.os, "fsync", counting_fsync)
    stats = await asyncio.gather(*(store.put(f"/c/{i}", b"v", -1) for i in range(200)))
    assert all(s.version == 0 for s in stats)
    assert calls < 20, f"{calls} fsyncs for 200 concurrent changes: group commit is not grouping"
    await store.close()
    assert len(await EmbeddedMetadataStore(str(tmp_path)).children("/c")) == 200


async def test_write_failure_refuses_changes_but_keeps_reading(tmp_path, monkeypatch):
    store = EmbeddedMetadataStore(str(tmp_path))
    await store.put("/before", b"b")

    def disk_full(self, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(MetadataLog, "_write", disk_full)
    with pytest.raises(MetadataStoreClosedError, match="No space left"):
        await store.put("/lost", b"x")
    with pytest.raises(MetadataStoreClosedError):
        await store.put("/later", b"y")
    assert (await store.get("/before"))[0] == b"b"
    monkeypatch.undo()
    await store.close()
    again = EmbeddedMetadataStore(str(tmp_path))
    assert (await again.get("/before"))[0] == b"b"
    assert await again.get("/lost") is None
    await again.close()
