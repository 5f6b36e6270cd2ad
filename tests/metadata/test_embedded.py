"""What only the embedded store promises: one order across paths, watches run after the change,
its own ephemerals reported deleted when it closes."""

from __future__ import annotations

import asyncio

import pytest

from taureau.metadata import EmbeddedMetadataStore, WatchEvent

pytestmark = pytest.mark.anyio


async def test_watches_fire_in_one_order_across_paths():
    store = EmbeddedMetadataStore()
    seen: list[tuple[WatchEvent, str]] = []
    store.watch("/w/x", lambda e, p: seen.append((e, p)))
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
    await store.close()


async def test_closing_reports_its_own_ephemerals_deleted(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path))
    await store.put("/brokers/b1", b"addr", ephemeral=True)
    gone: list[WatchEvent] = []
    store.watch("/brokers/b1", lambda e, p: gone.append(e))
    await store.close()
    await asyncio.sleep(0)
    assert gone == [WatchEvent.DELETED]
