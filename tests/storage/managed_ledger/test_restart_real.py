"""Process restart on the real bookie: drop client and factory without closing, reopen the same dirs."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.storage.managed_ledger import InitialPosition, ManagedLedgerConfig, ManagedLedgerFactory

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        importlib.util.find_spec("taureau.storage.ledger.local") is None, reason="no real ledger client yet"
    ),
]

NAME = "t/ns/persistent/restart"


async def _open(tmp_path):
    from taureau.storage.ledger.local import open_local_ledger_client

    store = EmbeddedMetadataStore(str(tmp_path / "md"))
    client = await open_local_ledger_client(tmp_path / "bookies", store)
    config = ManagedLedgerConfig(max_entries_per_ledger=4, retention_time_s=-1, retention_size_bytes=-1)
    factory = ManagedLedgerFactory(store, client, config, cursor_persist_interval_s=0.02)
    return store, client, factory


async def test_restart_keeps_acked_entries_and_saved_cursor(tmp_path):
    store, client, factory = await _open(tmp_path)
    ml = await factory.open(NAME)
    cursor = await ml.open_cursor("sub", InitialPosition.EARLIEST)
    acked = await asyncio.gather(*(ml.add_entry(b"%d" % i) for i in range(10)))
    await cursor.delete([acked[0], acked[1], acked[5]])
    await asyncio.sleep(0.05)  # the rate-limited save ran
    factory.abandon()  # "kill -9": nothing closed, the current ledger stays OPEN on disk
    del client, store

    store2, client2, factory2 = await _open(tmp_path)
    try:
        ml2 = await factory2.open(NAME)
        again = ml2.cursors["sub"]
        assert again.mark_delete_position == acked[1]
        assert again.individually_deleted_ranges() == [(acked[5], acked[5])]
        data = [e.data for e in await again.read_entries(100)]
        assert data == [b"2", b"3", b"4", b"6", b"7", b"8", b"9"]
        assert (await ml2.add_entry(b"new")).ledger_id > acked[-1].ledger_id
        await factory2.close()
    finally:
        await client2.close()
        await store2.close()
