"""Fixtures shared by the dispatch tests."""

import pytest

from taureau.broker.topic import PersistentTopic
from taureau.common.names import TopicName
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory
from taureau.testing.memory_ledger import MemoryLedgerClient


@pytest.fixture
async def topic():
    """A persistent topic on a real managed ledger over the in-memory ledger client (a test
    module may define its own `topic`, which takes precedence)."""
    store = EmbeddedMetadataStore(None)
    factory = ManagedLedgerFactory(store, MemoryLedgerClient())
    ledger = await factory.open("public/default/persistent/t")
    t = PersistentTopic(TopicName.parse("t"), ledger, store)
    yield t
    await t.close()
    await factory.close()
