"""A persistence policy changed while a topic is loaded reaches its managed ledger (the E/Qw/Qa
of its next ledger) without touching the current ledger; a topic's own policy wins over its
namespace's, and removing both goes back to the broker's flags. In process, on three real
local bookies."""

from __future__ import annotations

import dataclasses

import pytest

from taureau.broker.config import BrokerConfig
from taureau.broker.persistence import TOPIC_PERSISTENCE, PersistencePolicies
from taureau.broker.service import BrokerService
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.storage.ledger.local import open_local_ledger_client
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory

pytestmark = pytest.mark.anyio
NS = NamespaceName("public", "default")


def _quorum(service: BrokerService, name: TopicName) -> tuple[int, int, int]:
    [topic] = [t for t in service.loaded_topics() if t.name == name]
    config = topic.ledger.config
    return config.ensemble_size, config.write_quorum, config.ack_quorum


async def test_changes_reach_a_loaded_topics_next_ledger(tmp_path):
    store = EmbeddedMetadataStore(None)
    client = await open_local_ledger_client(str(tmp_path), store, num_bookies=3, journal_fsync=False)
    factory = ManagedLedgerFactory(store, client)
    config = BrokerConfig()
    config.managed_ledger = dataclasses.replace(config.managed_ledger, ensemble_size=2, write_quorum=2, ack_quorum=2)
    service = BrokerService(config, store, factory)
    await service.start()
    try:
        name = TopicName.parse("persistent://public/default/apply")
        topic = await service.get_topic(name, create=True)
        current = topic.ledger.internal_stats()["ledgers"][-1]["ledgerId"]
        assert _quorum(service, name) == (2, 2, 2)  # the broker's flags

        wide = PersistencePolicies(3, 3, 2)
        await service.resources.update_policies(NS, lambda p: setattr(p, "persistence", wide))
        await service.apply_policies(NS)
        assert _quorum(service, name) == (3, 3, 2)
        assert len((await client.get_metadata(current)).ensemble) == 2  # the current ledger keeps its own

        await service.resources.set_topic_policy(name, TOPIC_PERSISTENCE, PersistencePolicies(1, 1, 1).to_json())
        await service.apply_topic_policies(name)
        assert _quorum(service, name) == (1, 1, 1)  # the topic's own wins

        await service.resources.set_topic_policy(name, TOPIC_PERSISTENCE, None)
        await service.apply_topic_policies(name)
        assert _quorum(service, name) == (3, 3, 2)
        await service.resources.update_policies(NS, lambda p: setattr(p, "persistence", None))
        await service.apply_policies(NS)
        assert _quorum(service, name) == (2, 2, 2)
    finally:
        await service.close()
        await factory.close()
        await client.close()
