"""Fixtures: a metadata store and a ledger client (the in-memory fake; the real one once it exists)."""

from __future__ import annotations

import importlib.util

import pytest

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.storage.managed_ledger import ManagedLedgerConfig, ManagedLedgerFactory
from taureau.testing.memory_ledger import MemoryLedgerClient

_REAL = importlib.util.find_spec("taureau.storage.ledger.local") is not None


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def store():
    return EmbeddedMetadataStore()


@pytest.fixture(params=["memory", "real"] if _REAL else ["memory"])
async def ledgers(request, store, tmp_path):
    """The ledger client every managed-ledger test runs against."""
    if request.param == "memory":
        client = MemoryLedgerClient(yield_on_add=True)
    else:
        from taureau.storage.ledger.local import open_local_ledger_client

        client = await open_local_ledger_client(
            str(tmp_path / "bookie"), store, num_bookies=1, journal_fsync=False
        )
    yield client
    await client.close()


@pytest.fixture
def make_factory(store, ledgers):
    """make_factory(**config) -> a ManagedLedgerFactory on the shared store and ledgers."""
    made: list[ManagedLedgerFactory] = []

    def make(*, persist_s: float = 0.1, trim_s: float = 60.0, **config) -> ManagedLedgerFactory:
        factory = ManagedLedgerFactory(
            store,
            ledgers,
            ManagedLedgerConfig(**config),
            cursor_persist_interval_s=persist_s,
            trim_interval_s=trim_s,
        )
        made.append(factory)
        return factory

    yield make
    for factory in made:
        factory.abandon()
