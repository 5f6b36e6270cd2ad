"""EmbeddedMetadataStore semantics, in memory and on disk (same tests for both)."""

from __future__ import annotations

import asyncio

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
from taureau.metadata import (
    EmbeddedMetadataStore,
    WatchEvent,
    ZooKeeperNotAvailableError,
    open_metadata_store,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "disk"])
def store_factory(request, tmp_path):
    def make() -> EmbeddedMetadataStore:
        return EmbeddedMetadataStore(None if request.param == "memory" else str(tmp_path / "md"))

    return make


async def test_versions_and_cas(store_factory):
    store = store_factory()
    stat = await store.put("/a/b", b"one", -1)
    assert stat.version == 0
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
    value, stat = await store.get("/a/b")
    assert value == b"three" and stat.version == 2
    assert await store.get("/missing") is None
    assert await store.exists("/a") is not None
    await store.close()


async def test_delete_rules_and_children(store_factory):
    store = store_factory()
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
    await store.close()


async def test_bad_input_is_rejected_and_changes_nothing(store_factory):
    store = store_factory()
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
    assert await store.get("/ok") == (b"v", (await store.get("/ok"))[1])
    assert (await store.get("/ok"))[1].version == 0
    assert await store.children("/") == ["ok"]
    await store.put("/ok", b"still serving")
    await store.close()


async def test_watches_fire_on_the_loop(store_factory):
    store = store_factory()
    seen: list[tuple[WatchEvent, str]] = []
    cancel_node = store.watch("/w/x", lambda e, p: seen.append((e, p)))
    store.watch("/w", lambda e, p: seen.append((e, p)))
    await store.put("/w/x", b"1")
    await store.put("/w/x", b"2")
    await store.delete("/w/x")
    await asyncio.sleep(0)
    assert seen == [
        (WatchEvent.CREATED, "/w"),
        (WatchEvent.CREATED, "/w/x"),
        (WatchEvent.CHILDREN_CHANGED, "/w"),
        (WatchEvent.MODIFIED, "/w/x"),
        (WatchEvent.DELETED, "/w/x"),
        (WatchEvent.CHILDREN_CHANGED, "/w"),
    ]
    cancel_node()
    seen.clear()
    await store.put("/w/x", b"3")
    await asyncio.sleep(0)
    assert seen == [(WatchEvent.CHILDREN_CHANGED, "/w")]
    await store.close()


async def test_watch_does_not_run_inside_the_change():
    store = EmbeddedMetadataStore()
    seen: list[str] = []
    store.watch("/n", lambda e, p: seen.append(p))
    await store.put("/n", b"")
    # The callback was scheduled with call_soon, not run during put.
    assert seen == []
    await asyncio.sleep(0)
    assert seen == ["/n"]


async def test_ephemeral_nodes_go_with_the_session(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path))
    await store.put("/brokers/b1", b"addr", ephemeral=True)
    await store.put("/keep", b"k")
    assert (await store.get("/brokers/b1"))[1].ephemeral
    assert not (await store.get("/brokers"))[1].ephemeral
    with pytest.raises(MetadataError):
        await store.put("/brokers/b1/child", b"")
    gone: list[WatchEvent] = []
    store.watch("/brokers/b1", lambda e, p: gone.append(e))
    await store.close()
    await asyncio.sleep(0)
    assert gone == [WatchEvent.DELETED]
    with pytest.raises(MetadataStoreClosedError):
        await store.get("/keep")
    again = EmbeddedMetadataStore(str(tmp_path))
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
    with pytest.raises(ZooKeeperNotAvailableError, match="not implemented"):
        await open_metadata_store("zk://127.0.0.1:2181", tmp_path)
    with pytest.raises(ValueError, match="unknown metadata store URL"):
        await open_metadata_store("etcd://x", tmp_path)


async def test_a_value_over_the_record_limit_is_refused_and_stores_nothing(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path), max_value_bytes=1000)
    await store.put("/a", b"x" * 1000)
    with pytest.raises(MetadataValueTooLargeError):
        await store.put("/b", b"x" * 1001)
    with pytest.raises(MetadataValueTooLargeError):
        await store.put("/a", b"y" * 1001)
    assert await store.get("/b") is None and (await store.get("/a"))[0] == b"x" * 1000
    await store.close()
    reopened = EmbeddedMetadataStore(str(tmp_path))
    assert await reopened.get("/b") is None and (await reopened.get("/a"))[0] == b"x" * 1000
    await reopened.close()
