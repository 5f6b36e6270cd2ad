"""The MetadataStore contract: the same tests against the embedded store (in memory, on disk)
and a real ZooKeeper server (tests/conftest.py starts a private one)."""

from __future__ import annotations

import asyncio
import time

import pytest

from taureau.common.errors import (
    BadVersionError,
    InvalidMetadataPathError,
    MetadataError,
    MetadataStoreClosedError,
    MetadataValueTooLargeError,
    NodeExistsError,
    NotEmptyError,
    NotFoundError,
)
from taureau.metadata import EmbeddedMetadataStore, MetadataStore, WatchEvent, open_metadata_store

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "disk", "zookeeper"])
def backend(request, tmp_path):
    """An async `open(**options)` that opens a session on one backing store; every call of
    one test opens the same store (same directory, same ZooKeeper chroot)."""
    if request.param == "memory":

        async def open_memory(**options) -> MetadataStore:
            return EmbeddedMetadataStore(None, **options)

        open_memory.durable = False
        return open_memory
    if request.param == "disk":

        async def open_disk(**options) -> MetadataStore:
            return EmbeddedMetadataStore(str(tmp_path / "md"), **options)

        open_disk.durable = True
        return open_disk
    url = request.getfixturevalue("zk_url")

    async def open_zk(**options) -> MetadataStore:
        from taureau.metadata.zookeeper import ZooKeeperMetadataStore

        return await ZooKeeperMetadataStore.open(url, **options)

    open_zk.durable = True
    return open_zk


async def eventually(predicate, timeout: float = 10.0) -> None:
    """ZooKeeper tells watchers asynchronously: wait (bounded) until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_versions_and_cas(backend):
    store = await backend()
    stat = await store.put("/a/b", b"one", -1)
    assert stat.version == 0 and not stat.ephemeral
    assert (await store.get("/a"))[0] == b""  # parent created empty
    with pytest.raises(NodeExistsError):
        await store.put("/a/b", b"again", -1)
    stat = await store.put("/a/b", b"two", 0)
    assert stat.version == 1 and stat.modified_ms >= stat.created_ms
    with pytest.raises(BadVersionError):
        await store.put("/a/b", b"stale", 0)
    with pytest.raises(NotFoundError):
        await store.put("/nope", b"x", 3)
    assert (await store.put("/a/b", b"three")).version == 2  # unconditional
    assert (await store.put("/c", b"new")).version == 0  # unconditional create
    value, stat = await store.get("/a/b")
    assert value == b"three" and stat.version == 2
    assert await store.get("/missing") is None
    assert await store.exists("/a") is not None
    assert await store.exists("/missing") is None
    await store.close()


async def test_concurrent_compare_and_set_lets_exactly_one_win(backend):
    store = await backend()
    await store.put("/counter", b"0", -1)
    results = await asyncio.gather(
        *(store.put("/counter", str(i).encode(), 0) for i in range(8)), return_exceptions=True
    )
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1
    assert all(isinstance(r, BadVersionError) for r in results if isinstance(r, BaseException))
    assert (await store.get("/counter"))[1].version == 1
    await store.close()


async def test_delete_rules_and_children(backend):
    store = await backend()
    for name in ("c", "a", "b"):
        await store.put(f"/p/{name}", name.encode())
    assert await store.children("/p") == ["a", "b", "c"]
    assert await store.children("/") == ["p"]
    assert await store.children("/absent") == []
    with pytest.raises(NotEmptyError):
        await store.delete("/p")
    with pytest.raises(BadVersionError):
        await store.delete("/p/a", 7)
    await store.delete("/p/a", 0)
    with pytest.raises(NotFoundError):
        await store.delete("/p/a")
    await store.put("/p/b/deep/er", b"x")
    await store.delete_recursive("/p")
    assert await store.get("/p") is None and await store.get("/p/b/deep/er") is None
    await store.delete_recursive("/p")  # absent: no error
    assert await store.children("/") == []
    await store.put("/q/r", b"")
    await store.delete_recursive("/")  # the root stays, everything under it goes
    assert await store.children("/") == []
    await store.close()


async def test_bad_input_is_rejected_and_changes_nothing(backend):
    store = await backend()
    await store.put("/ok", b"v")
    for bad in ("", "x", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/a\x00", None, 5):
        with pytest.raises(InvalidMetadataPathError):
            await store.put(bad, b"v")
        with pytest.raises(InvalidMetadataPathError):
            await store.get(bad)
    with pytest.raises(TypeError):
        await store.put("/ok", "not bytes")
    with pytest.raises(ValueError):
        await store.put("/ok", b"v", -2)
    with pytest.raises(InvalidMetadataPathError):
        await store.delete("/")
    with pytest.raises(TypeError):
        store.watch("/ok", "not callable")
    value, stat = await store.get("/ok")
    assert value == b"v" and stat.version == 0
    assert await store.children("/") == ["ok"]
    await store.put("/ok", b"still serving")
    await store.close()


async def test_a_value_over_the_record_limit_is_refused_and_stores_nothing(backend):
    store = await backend(max_value_bytes=1000)
    await store.put("/a", b"x" * 1000)
    with pytest.raises(MetadataValueTooLargeError):
        await store.put("/b", b"x" * 1001)
    with pytest.raises(MetadataValueTooLargeError):
        await store.put("/a", b"y" * 1001)
    assert await store.get("/b") is None and (await store.get("/a"))[0] == b"x" * 1000
    await store.close()
    if backend.durable:
        reopened = await backend()
        assert await reopened.get("/b") is None and (await reopened.get("/a"))[0] == b"x" * 1000
        await reopened.close()


async def test_the_default_record_limit_fits_the_store(backend):
    """The largest value a store accepts by default is stored and read back whole (ZooKeeper
    drops the connection of a request over its jute.maxbuffer, so the limit must sit under it)."""
    store = await backend()
    big = bytes(range(256)) * (store.max_value_bytes // 256) + b"z" * (store.max_value_bytes % 256)
    assert len(big) == store.max_value_bytes
    await store.put("/big/value", big)
    assert (await store.get("/big/value"))[0] == big
    with pytest.raises(MetadataValueTooLargeError):
        await store.put("/big/value", big + b"!")
    assert (await store.get("/big/value"))[1].version == 0
    await store.close()


async def test_watches_report_each_change_of_a_path_in_order(backend):
    store = await backend()
    node: list[WatchEvent] = []
    parent: list[WatchEvent] = []
    cancel_node = store.watch("/w/x", lambda e, p: node.append(e) if p == "/w/x" else None)
    store.watch("/w", lambda e, p: parent.append(e) if p == "/w" else None)
    await store.put("/w/x", b"1")
    await eventually(lambda: len(node) == 1 and len(parent) == 2)
    assert node == [WatchEvent.CREATED]
    assert parent == [WatchEvent.CREATED, WatchEvent.CHILDREN_CHANGED]
    await store.put("/w/x", b"2")
    await eventually(lambda: len(node) == 2)
    await store.delete("/w/x")
    await eventually(lambda: len(node) == 3 and len(parent) == 3)
    assert node == [WatchEvent.CREATED, WatchEvent.MODIFIED, WatchEvent.DELETED]
    assert parent == [WatchEvent.CREATED, WatchEvent.CHILDREN_CHANGED, WatchEvent.CHILDREN_CHANGED]
    cancel_node()
    await store.put("/w/x", b"3")
    await eventually(lambda: len(parent) == 4)
    assert parent[-1] == WatchEvent.CHILDREN_CHANGED
    await asyncio.sleep(0.2)
    assert len(node) == 3  # cancelled: nothing more
    await store.close()


async def test_ephemeral_nodes_go_with_the_session(backend):
    if not backend.durable:
        pytest.skip("an in-memory store has no second session to look from")
    store = await backend()
    await store.put("/brokers/b1", b"addr", ephemeral=True)
    await store.put("/keep", b"k")
    assert (await store.get("/brokers/b1"))[1].ephemeral
    assert not (await store.get("/brokers"))[1].ephemeral
    with pytest.raises(MetadataError):
        await store.put("/brokers/b1/child", b"")
    assert await store.get("/brokers/b1/child") is None
    await store.close()
    with pytest.raises(MetadataStoreClosedError):
        await store.get("/keep")
    again = await backend()
    assert await again.get("/brokers/b1") is None
    assert await again.children("/brokers") == []  # parent was persistent
    assert (await again.get("/keep"))[0] == b"k"
    await again.close()


async def test_open_metadata_store_urls(tmp_path):
    store = await open_metadata_store(None, tmp_path)
    await store.put("/x", b"1")
    await store.close()
    assert (tmp_path / "metadata").is_dir()
    store = await open_metadata_store("embedded", tmp_path)
    assert (await store.get("/x"))[0] == b"1"
    await store.close()
    memory = await open_metadata_store("memory", None)
    assert await memory.get("/x") is None
    with pytest.raises(ValueError, match="unknown metadata store URL"):
        await open_metadata_store("etcd://x", tmp_path)
    for bad in ("zk://", "zk://host", "zk://host:99999", "zk://h:1/a//b", "zk://h:x"):
        with pytest.raises(ValueError, match="zk://|host:port|port|chroot"):
            await open_metadata_store(bad, tmp_path)
