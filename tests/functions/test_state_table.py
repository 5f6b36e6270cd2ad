"""StateTable: durable counters and values over a managed ledger; snapshots; crash recovery."""

from __future__ import annotations

import asyncio

import pytest

from taureau.functions import state_table
from taureau.functions.errors import FunctionStateError, StateKeyNotFoundError
from taureau.functions.state_table import StateTable
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.storage.ledger.local import open_local_ledger_client
from taureau.storage.managed_ledger import ManagedLedgerConfig, ManagedLedgerFactory

pytestmark = pytest.mark.anyio

FQFN = "public/default/counter"


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _open(tmp_path, **config):
    store = EmbeddedMetadataStore(str(tmp_path / "md"))
    client = await open_local_ledger_client(tmp_path / "bookies", store, journal_fsync=False)
    factory = ManagedLedgerFactory(store, client, ManagedLedgerConfig(**config), cursor_persist_interval_s=0.01,
                                   trim_interval_s=0.05)
    return factory


async def test_counters_values_and_deletes_survive_a_crash(tmp_path):
    factory = await _open(tmp_path)
    table = await StateTable.open(factory, FQFN)
    results = await asyncio.gather(*(table.incr("hits", 1) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))  # concurrent increments never lose one
    assert await table.incr("hits", -10) == 40
    await table.put("name", b"alice")
    await table.put("gone", "x")
    await table.delete("gone")
    assert table.get("name") == b"alice" and table.get("gone") is None
    assert table.keys() == ["hits", "name"]
    factory.abandon()  # kill -9: nothing closed

    factory2 = await _open(tmp_path)
    again = await StateTable.open(factory2, FQFN)
    assert again.get_counter("hits") == 40
    assert again.get("name") == b"alice"
    assert again.keys() == ["hits", "name"]
    cell = again.cell("hits")
    assert cell is not None and cell.counter and cell.version == 50
    assert not again.cell("name").counter
    await again.close()


async def test_snapshot_then_trim_then_recover(tmp_path, monkeypatch):
    monkeypatch.setattr(state_table, "SNAPSHOT_EVERY", 20)
    factory = await _open(tmp_path, max_entries_per_ledger=10)
    table = await StateTable.open(factory, FQFN)
    for i in range(95):
        await table.put(f"k{i % 7}", b"v%d" % i)
        await table.incr("n", 2)
    await asyncio.sleep(0.3)  # snapshots written, cursor persisted, old ledgers trimmed
    ledger = table._ledger
    assert ledger.entries_count < 190  # trimmed: the log no longer holds every record
    expected = {f"k{i % 7}": b"v%d" % i for i in range(95)}
    factory.abandon()

    factory2 = await _open(tmp_path, max_entries_per_ledger=10)
    again = await StateTable.open(factory2, FQFN)
    assert {k: again.get(k) for k in expected} == expected
    assert again.get_counter("n") == 190
    await again.close()


async def test_an_incomplete_snapshot_is_ignored(tmp_path):
    factory = await _open(tmp_path)
    table = await StateTable.open(factory, FQFN)
    await table.put("a", b"1")
    await table.incr("c", 5)
    # A crash cut a snapshot after its BEGIN and one CHUNK holding only part of the table.
    partial = state_table._cell_bytes("a", state_table.Cell(b"1", False, 0))
    await table._ledger.add_entries([
        bytes([state_table.BEGIN]) + state_table._U64.pack(99),
        bytes([state_table.CHUNK]) + state_table._U64.pack(99) + state_table._U32.pack(1) + partial,
    ])
    await table.incr("c", 1)
    factory.abandon()
    again = await StateTable.open(await _open(tmp_path), FQFN)
    assert again.get("a") == b"1" and again.get_counter("c") == 6


async def test_bad_ops_are_refused_and_change_nothing(tmp_path):
    factory = await _open(tmp_path)
    table = await StateTable.open(factory, FQFN)
    await table.put("text", b"not a counter")
    with pytest.raises(FunctionStateError, match="not a counter"):
        await table.incr("text", 1)
    with pytest.raises(StateKeyNotFoundError):
        await table.delete("never")
    with pytest.raises(FunctionStateError, match="over 1024 bytes"):
        await table.put("k" * 2000, b"x")
    with pytest.raises(FunctionStateError, match="bytes or str"):
        await table.put("k", 42)
    await table.incr("big", 2**63 - 1)
    with pytest.raises(FunctionStateError, match="overflow"):
        await table.incr("big", 1)
    assert table.get("text") == b"not a counter" and table.get_counter("big") == 2**63 - 1
    small = StateTable(table._ledger, table._cursor, max_bytes=100)
    with pytest.raises(FunctionStateError, match="budget"):
        await small.put("k", b"x" * 200)
    assert small.get("k") is None
    await table.close()
