"""open_local_ledger_client on real disk: restart keeps data; a crashed writer's ledger is recovered."""

from __future__ import annotations

import pytest

from taureau.metadata import EmbeddedMetadataStore
from taureau.storage.ledger import LedgerState, open_local_ledger_client

pytestmark = pytest.mark.anyio


async def test_restart_keeps_ledgers(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path / "md"))
    client = await open_local_ledger_client(tmp_path, store, num_bookies=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bookie-0", "bookie-1", "md"]
    ledger = await client.create_ledger(2, 2, 2)
    for i in range(100):
        await ledger.add_entry(b"entry-%d" % i)
    await ledger.close()
    await client.close()
    await store.close()

    store = EmbeddedMetadataStore(str(tmp_path / "md"))
    client = await open_local_ledger_client(tmp_path, store, num_bookies=2)
    reader = await client.open_ledger(ledger.ledger_id)
    assert await reader.read_entries(0, 99) == [b"entry-%d" % i for i in range(100)]
    await client.close()


async def test_crashed_writer_is_recovered_with_every_acked_entry(tmp_path):
    store = EmbeddedMetadataStore(str(tmp_path / "md"))
    client = await open_local_ledger_client(tmp_path, store)
    ledger = await client.create_ledger()
    for i in range(50):
        await ledger.add_entry(b"%d" % i)
    # The process dies: no close of the ledger, the client, its bookies or the store.

    store2 = EmbeddedMetadataStore(str(tmp_path / "md"))
    assert (await store2.get(f"/ledgers/{ledger.ledger_id}")) is not None
    client2 = await open_local_ledger_client(tmp_path, store2)
    recovered = await client2.open_ledger(ledger.ledger_id)
    assert recovered.metadata.state is LedgerState.CLOSED
    assert recovered.last_add_confirmed == 49
    assert await recovered.read_entries(0, 49) == [b"%d" % i for i in range(50)]
    fresh = await client2.create_ledger()
    assert fresh.ledger_id > ledger.ledger_id
    await client2.close()


async def test_bad_bookie_count(tmp_path):
    with pytest.raises(ValueError):
        await open_local_ledger_client(tmp_path, EmbeddedMetadataStore(), num_bookies=0)
