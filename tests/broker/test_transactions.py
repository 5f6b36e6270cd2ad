"""The transaction coordinator on real storage (embedded metadata store, managed ledgers on
the in-memory ledger client): its bounds, and what a new coordinator recovers from the log."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from taureau.broker.topic import PersistentTopic
from taureau.broker.transactions.buffer import LEDGER_NAME, TxnBuffer
from taureau.broker.transactions.coordinator import TransactionCoordinator
from taureau.broker.transactions.log import TxnLog
from taureau.broker.transactions.model import (
    InvalidTxnStatusError,
    TransactionNotFoundError,
    TxnId,
    TxnLimitError,
    TxnStatus,
)
from taureau.broker.transactions.settings import TransactionConfig
from taureau.common.errors import AuthorizationError, NotAllowedError, TopicNotFoundError
from taureau.common.names import TopicName
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.protocol import pb
from taureau.protocol.metadata import encode_entry
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory
from taureau.storage.position import EARLIEST, Position
from taureau.testing.memory_ledger import MemoryLedgerClient

pytestmark = pytest.mark.anyio

TOPIC = "persistent://public/default/t"


def message(body: bytes) -> bytes:
    return encode_entry(pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1), body)


class World:
    """One store and ledger factory; coordinators come and go over them (a broker restart)."""

    def __init__(self) -> None:
        self.store = EmbeddedMetadataStore(None)
        self.factory = ManagedLedgerFactory(self.store, MemoryLedgerClient())
        self.topics: dict[str, PersistentTopic] = {}

    async def topic(self, name: TopicName) -> PersistentTopic:
        if str(name) not in self.topics:
            if str(name) != TOPIC:
                raise TopicNotFoundError(f"topic {name} does not exist")
            ledger = await self.factory.open(name.storage_name)
            self.topics[str(name)] = PersistentTopic(name, ledger, self.store)
        return self.topics[str(name)]

    async def coordinator(self, **limits) -> TransactionCoordinator:
        config = dataclasses.replace(TransactionConfig(enabled=True), **limits)
        ledger = await self.factory.open(LEDGER_NAME)
        buffer = await TxnBuffer.open(ledger, config.max_buffered_bytes_per_txn, config.max_buffered_bytes_total)
        tc = TransactionCoordinator(config, TxnLog(self.store), buffer, self.topic)
        await tc.start()
        return tc

    async def restart(self, tc: TransactionCoordinator, **limits) -> TransactionCoordinator:
        """A new coordinator over what the old one stored (the buffer ledger reopened)."""
        await tc.close()
        await tc.buffer.cursor.close()
        await tc.buffer.ledger.close()
        self.topics.clear()
        return await self.coordinator(**limits)


class Connection:
    """Stands for the connection (Session) that opens transactions: any object it can weakly hold."""


@pytest.fixture
async def world():
    w = World()
    yield w
    await w.factory.close()


async def send(tc: TransactionCoordinator, txn: TxnId, body: bytes) -> Position:
    data = message(body)
    tc.admit_send(txn, TOPIC, len(data))
    return await tc.store_send(txn, TOPIC, data, 1)


async def test_open_transactions_are_bounded_in_total_and_per_connection(world):
    tc = await world.coordinator(max_open=3, max_open_per_connection=2)
    owner, other = Connection(), Connection()
    first = await tc.new_txn(0, 60, owner)
    await tc.new_txn(0, 60, owner)
    with pytest.raises(TxnLimitError, match="this connection has 2 open transactions"):
        await tc.new_txn(0, 60, owner)
    await tc.new_txn(0, 60, other)
    with pytest.raises(TxnLimitError, match="3 transactions are open already"):
        await tc.new_txn(0, 60, other)
    assert len(tc.open_transactions()) == 3  # the refused ones left no record
    assert len(await TxnLog(world.store).load_all()) == 3
    await tc.end(first, commit=False)  # an ended one frees its place
    await tc.new_txn(0, 60, owner)
    await tc.close()


async def test_buffered_bytes_and_messages_per_transaction_are_bounded(world):
    one = len(message(b"x" * 100))
    tc = await world.coordinator(max_buffered_bytes_per_txn=2 * one, max_buffered_entries_per_txn=10)
    txn = await tc.new_txn(0, 60)
    await tc.add_partitions(txn, [TOPIC])
    await send(tc, txn, b"x" * 100)
    await send(tc, txn, b"x" * 100)
    with pytest.raises(TxnLimitError, match="would buffer"):
        tc.admit_send(txn, TOPIC, one)
    assert tc.buffer.bytes_of(txn) == 2 * one and len(tc.buffer.entries_of(txn)) == 2
    small = await world.coordinator(max_buffered_entries_per_txn=2)
    txn2 = await small.new_txn(0, 60)
    await small.add_partitions(txn2, [TOPIC])
    await send(small, txn2, b"a")
    await send(small, txn2, b"b")
    with pytest.raises(TxnLimitError, match="holds 2 messages already"):
        small.admit_send(txn2, TOPIC, 10)
    await tc.close()
    await small.close()


async def test_partitions_subscriptions_and_pending_acks_per_transaction_are_bounded(world):
    tc = await world.coordinator(max_partitions_per_txn=2, max_subscriptions_per_txn=1, max_pending_acks_per_txn=2)
    txn = await tc.new_txn(0, 60)
    await tc.add_partitions(txn, [TOPIC, TOPIC + "-2"])
    with pytest.raises(TxnLimitError):
        await tc.add_partitions(txn, [TOPIC + "-3"])
    await tc.add_subscriptions(txn, [(TOPIC, "a")])
    with pytest.raises(TxnLimitError):
        await tc.add_subscriptions(txn, [(TOPIC, "b")])
    topic = await world.topic(TopicName.parse(TOPIC))
    for body in (b"1", b"2", b"3"):
        await topic.ledger.add_entry(message(body))
    await topic.create_subscription("a", EARLIEST)
    sub = topic.subscriptions["a"]
    first = topic.ledger.first_position
    positions = [Position(first.ledger_id, first.entry_id + i) for i in range(3)]
    await tc.ack(txn, TOPIC, sub, positions[:2])
    with pytest.raises(TxnLimitError, match="may hold 2 acknowledgements"):
        await tc.ack(txn, TOPIC, sub, positions[2:])
    meta = tc.status(txn)
    assert meta.partitions == [TOPIC, TOPIC + "-2"] and meta.subscriptions == [(TOPIC, "a")]
    assert meta.pending_ack_count() == 2 and positions[2] not in tc.pending.get(TOPIC, "a")
    with pytest.raises(NotAllowedError, match="no such entry"):
        await tc.ack(txn, TOPIC, sub, [Position(first.ledger_id, first.entry_id + 99)])
    await tc.close()


async def test_a_new_coordinator_resumes_open_and_decided_transactions(world):
    tc = await world.coordinator()
    open_txn = await tc.new_txn(0, 600)
    await tc.add_partitions(open_txn, [TOPIC])
    await send(tc, open_txn, b"kept")
    deciding = await tc.new_txn(0, 600)
    await tc.add_partitions(deciding, [TOPIC])
    await send(tc, deciding, b"decided")
    # The commit decision is stored, then the broker stops before applying it.
    meta = tc.status(deciding)
    meta.status = TxnStatus.COMMITTING
    await tc.log.save(meta)
    ended = await tc.new_txn(0, 600)
    await tc.end(ended, commit=False)

    tc = await world.restart(tc)
    topic = await world.topic(TopicName.parse(TOPIC))
    await tc.end(deciding, commit=True)  # the resumed commit; a repeated END_TXN waits for it
    assert topic.ledger.entries_count == 1  # applied once, not twice
    assert tc.status(open_txn).status is TxnStatus.OPEN
    assert [r.size for r in tc.buffer.entries_of(open_txn)] == [len(message(b"kept"))]
    with pytest.raises(TransactionNotFoundError):
        await tc.end(ended, commit=True)
    fresh = await tc.new_txn(0, 60)
    assert fresh.least > ended.least  # ids are never reused across a restart
    await tc.end(open_txn, commit=True)
    entries = await topic.ledger.read_entries(topic.ledger.first_position, 10)
    assert [e.data for e in entries] == [message(b"decided"), message(b"kept")]
    await tc.close()


async def test_only_the_owner_or_a_superuser_may_change_or_end_a_transaction(world):
    tc = await world.coordinator()
    tc.is_superuser = lambda role: role == "admin"
    txn = await tc.new_txn(0, 60, role="alice")
    with pytest.raises(AuthorizationError, match="role bob is neither the owner"):
        await tc.add_partitions(txn, [TOPIC], role="bob")
    with pytest.raises(AuthorizationError):
        await tc.end(txn, commit=True, role="bob")
    assert tc.status(txn).status is TxnStatus.OPEN and tc.status(txn).partitions == []
    await tc.add_partitions(txn, [TOPIC], role="alice")
    tc = await world.restart(tc)  # the owner is part of the stored record
    tc.is_superuser = lambda role: role == "admin"
    with pytest.raises(AuthorizationError):
        await tc.add_subscriptions(txn, [(TOPIC, "s")], role="bob")
    await tc.end(txn, commit=False, role="admin")
    await tc.close()


async def test_ids_are_distinct_across_id_blocks_and_restarts(world):
    txn_log = TxnLog(world.store)
    ids = await asyncio.gather(*(txn_log.next_id(0) for _ in range(2500)))  # three blocks of 1,000
    assert len(set(ids)) == 2500
    again = await TxnLog(world.store).next_id(0)  # a restarted log starts past every block
    assert again.least > max(i.least for i in ids)


async def test_abort_while_committing_is_an_invalid_status(world):
    tc = await world.coordinator()
    txn = await tc.new_txn(0, 60)
    meta = tc.status(txn)
    meta.status = TxnStatus.COMMITTING  # as during a commit being applied
    with pytest.raises(InvalidTxnStatusError, match="COMMITTING, cannot abort"):
        await tc.end(txn, commit=False)
    with pytest.raises(InvalidTxnStatusError, match="expected OPEN"):
        await tc.add_partitions(txn, [TOPIC])
    meta.status = TxnStatus.OPEN
    await tc.end(txn, commit=False)
    await tc.close()
