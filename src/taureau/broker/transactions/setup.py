"""Starting the coordinator: its storage, and the system topic clients find it through."""

from __future__ import annotations

import logging
from collections.abc import Callable

from taureau.broker.resources import ConflictError, Resources, TenantInfo
from taureau.broker.transactions.buffer import LEDGER_NAME, TxnBuffer
from taureau.broker.transactions.coordinator import TopicSource, TransactionCoordinator
from taureau.broker.transactions.log import TxnLog
from taureau.broker.transactions.model import TC_ASSIGN_TOPIC
from taureau.broker.transactions.settings import TransactionConfig
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import ManagedLedgerConfig, ManagedLedgerFactoryBase

log = logging.getLogger(__name__)


async def publish_coordinators(resources: Resources, count: int) -> None:
    """pulsar/system/transaction_coordinator_assign with one partition per coordinator: a
    client with transactions enabled reads its partition count, looks each partition up and
    connects to coordinator i through it, as with Pulsar."""
    if "pulsar" not in await resources.list_tenants():
        try:
            await resources.create_tenant("pulsar", TenantInfo())
        except ConflictError:
            pass
    ns = NamespaceName("pulsar", "system")
    if not await resources.namespace_exists(ns):
        try:
            await resources.create_namespace(ns)
        except ConflictError:
            pass
    topic = TopicName.parse(TC_ASSIGN_TOPIC)
    current = await resources.get_partitions(topic)
    if current == 0:
        await resources.create_partitioned_topic(topic, count)
    elif current < count:
        await resources.update_partitions(topic, count)


async def start_coordinator(
    config: TransactionConfig,
    resources: Resources,
    store: MetadataStore,
    factory: ManagedLedgerFactoryBase,
    topics: TopicSource,
    is_superuser: Callable[[str | None], bool],
) -> TransactionCoordinator:
    await publish_coordinators(resources, config.coordinators)
    ledger = await factory.open(LEDGER_NAME, ManagedLedgerConfig())
    buffer = await TxnBuffer.open(ledger, config.max_buffered_bytes_per_txn, config.max_buffered_bytes_total)
    coordinator = TransactionCoordinator(config, TxnLog(store), buffer, topics, is_superuser)
    await coordinator.start()
    log.info("transaction coordinator started (%d coordinators)", config.coordinators)
    return coordinator
