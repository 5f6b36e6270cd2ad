"""TransactionCoordinator: opens, tracks and ends transactions; the one owner of their state.

Theory of operation (docs/transactions.md):
- Every transaction has a `TxnMeta` record in the `TxnLog`, written before any answer that
  depends on it: NEW_TXN, ADD_PARTITION_TO_TXN, ADD_SUBSCRIPTION_TO_TXN, an ACK in the
  transaction, and the decision of END_TXN (status COMMITTING or ABORTING).
- Transactional SENDs go to the `TxnBuffer`; transactional ACKs become `PendingAcks` of their
  subscription (dispatch skips them) and are listed in the record.
- A commit appends the buffered entries to each partition (recording each partition done, so a
  restart mid-commit resumes with the next one), applies the pending acks, marks the record
  COMMITTED and forgets the transaction; the record stays `committed_linger_s` so a restart
  re-applies acks a subscription may not have saved yet. An abort releases the pending acks
  (redelivered) and drops the buffered entries. Both are what Pulsar's END_TXN_ON_PARTITION /
  END_TXN_ON_SUBSCRIPTION do; here the coordinator calls the topics directly.
- A transaction not ended within its TTL is aborted. An ended transaction is forgotten: any
  later request naming it is TransactionNotFound, as in Pulsar.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taureau.broker.transactions.buffer import TxnBuffer
from taureau.broker.transactions.log import TxnLog
from taureau.broker.transactions.model import (
    CoordinatorNotFoundError,
    InvalidTxnStatusError,
    TransactionConflictError,
    TransactionNotFoundError,
    TxnId,
    TxnLimitError,
    TxnMeta,
    TxnStatus,
    sub_key,
)
from taureau.broker.transactions.pending_ack import PendingAckRegistry
from taureau.broker.transactions.settings import TransactionConfig
from taureau.common.errors import AuthorizationError, NotAllowedError, TaureauError, TopicNotFoundError
from taureau.common.names import TopicName
from taureau.storage.position import Position

if TYPE_CHECKING:
    from taureau.broker.subscription import Subscription
    from taureau.broker.topic import PersistentTopic

log = logging.getLogger(__name__)

TopicSource = Callable[[TopicName], Awaitable["PersistentTopic"]]


@dataclass(eq=False)
class _Txn:
    """A transaction not ended yet, with what only this process needs of it."""

    meta: TxnMeta
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one change of meta at a time
    writes: int = 0  # buffered SENDs admitted and not stored yet
    drained: asyncio.Event = field(default_factory=asyncio.Event)  # set while writes == 0
    timer: asyncio.TimerHandle | None = None
    ending: asyncio.Task[None] | None = None  # the commit/abort being applied
    owner: object | None = None  # the connection that opened it (for its per-connection bound)


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    def __init__(
        self,
        config: TransactionConfig,
        txn_log: TxnLog,
        buffer: TxnBuffer,
        topics: TopicSource,
        is_superuser: Callable[[str | None], bool] = lambda role: False,
    ) -> None:
        self.config = config
        self.is_superuser = is_superuser
        self.log = txn_log
        self.buffer = buffer
        self.topics = topics
        self.pending = PendingAckRegistry()
        self._txns: dict[TxnId, _Txn] = {}
        self._per_owner: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()
        self.committed = 0
        self.aborted = 0
        self.timed_out = 0

    # -- start and stop --------------------------------------------------------------------

    async def start(self) -> None:
        """Load the log and resume what it says: open transactions wait (their deadline
        kept), decided ones are finished."""
        metas = await self.log.load_all()
        await self.buffer.recover(m.txn for m in metas)
        for meta in metas:
            if meta.status is TxnStatus.COMMITTED:
                self._spawn(self._reapply_acks(meta))
                continue
            txn = self._register(meta)
            for key, positions in meta.acks.items():
                topic, _, subscription = key.partition("\x00")
                self.pending.get(topic, subscription).hold(meta.txn, positions)
            if meta.status is TxnStatus.OPEN:
                self._arm_timeout(txn)
            else:
                txn.ending = self._spawn(self._finish(txn))
        if metas:
            log.info("transaction log: %d transactions recovered", len(metas))

    async def close(self) -> None:
        for txn in self._txns.values():
            if txn.timer is not None:
                txn.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- opening -------------------------------------------------------------------------------

    def check_coordinator(self, tc_id: int) -> None:
        if not 0 <= tc_id < self.config.coordinators:
            raise CoordinatorNotFoundError(
                f"transaction coordinator {tc_id} does not exist (0..{self.config.coordinators - 1})"
            )

    async def new_txn(
        self, tc_id: int, ttl_s: int, owner: object | None = None, role: str | None = None
    ) -> TxnId:
        self.check_coordinator(tc_id)
        config = self.config
        if len(self._txns) >= config.max_open:
            raise TxnLimitError(f"{config.max_open} transactions are open already")
        if owner is not None and self._per_owner.get(owner, 0) >= config.max_open_per_connection:
            raise TxnLimitError(f"this connection has {config.max_open_per_connection} open transactions")
        ttl = min(ttl_s or config.default_ttl_s, config.max_ttl_s)
        meta = TxnMeta(await self.log.next_id(tc_id), TxnStatus.OPEN, _now_ms() + ttl * 1000, owner=role)
        await self.log.save(meta)
        txn = self._register(meta, owner)
        self._arm_timeout(txn)
        return meta.txn

    def _register(self, meta: TxnMeta, owner: object | None = None) -> _Txn:
        txn = _Txn(meta, owner=owner)
        txn.drained.set()
        self._txns[meta.txn] = txn
        if owner is not None:
            self._per_owner[owner] = self._per_owner.get(owner, 0) + 1
        return txn

    def _forget(self, txn: _Txn) -> None:
        self._txns.pop(txn.meta.txn, None)
        if txn.timer is not None:
            txn.timer.cancel()
        if txn.owner is not None and txn.owner in self._per_owner:
            self._per_owner[txn.owner] -= 1

    def _arm_timeout(self, txn: _Txn) -> None:
        delay = max(0.0, (txn.meta.timeout_at_ms - _now_ms()) / 1000)
        txn.timer = asyncio.get_running_loop().call_later(delay, self._timed_out, txn)

    def _timed_out(self, txn: _Txn) -> None:
        if self._txns.get(txn.meta.txn) is txn and txn.meta.status is TxnStatus.OPEN:
            log.info("transaction %s timed out: aborting it", txn.meta.txn)
            self.timed_out += 1
            self._spawn(self._abort_quietly(txn))

    async def _abort_quietly(self, txn: _Txn) -> None:
        try:
            await self._decide(txn, commit=False)
        except TaureauError as exc:
            log.info("timed-out transaction %s: %s", txn.meta.txn, exc)

    def _check_owner(self, txn: _Txn, role: str | None) -> None:
        """As Pulsar: only the role that opened a transaction, or a superuser, may change or
        end it (nobody is checked while authentication is off: every role is None)."""
        owner = txn.meta.owner
        if owner is not None and role != owner and not self.is_superuser(role):
            raise AuthorizationError(
                f"role {role} is neither the owner of transaction {txn.meta.txn} nor a superuser"
            )

    def _open(self, txn_id: TxnId, role: str | None = None) -> _Txn:
        """The transaction, which must still be OPEN (and belong to `role`)."""
        txn = self._txns.get(txn_id)
        if txn is None:
            raise TransactionNotFoundError(f"transaction {txn_id} not found (never opened, or ended)")
        self._check_owner(txn, role)
        if txn.meta.status is not TxnStatus.OPEN:
            raise InvalidTxnStatusError(
                f"transaction {txn_id} is {txn.meta.status.value}, expected {TxnStatus.OPEN.value}"
            )
        return txn

    async def _save(self, txn: _Txn, undo: Callable[[], None]) -> None:
        """Store the changed record; a failed write undoes the change, so nothing unstored is
        acted on."""
        try:
            await self.log.save(txn.meta)
        except Exception:
            undo()
            raise

    # -- what a transaction touches ------------------------------------------------------------

    async def add_partitions(self, txn_id: TxnId, partitions: list[str], role: str | None = None) -> None:
        names = [str(TopicName.parse(p)) for p in partitions]  # InvalidTopicName before any change
        txn = self._open(txn_id, role)
        async with txn.lock:
            txn = self._open(txn_id, role)
            meta = txn.meta
            new = [n for n in dict.fromkeys(names) if n not in meta.partitions]
            if not new:
                return
            if len(meta.partitions) + len(new) > self.config.max_partitions_per_txn:
                raise TxnLimitError(f"a transaction may produce to {self.config.max_partitions_per_txn} partitions")
            meta.partitions.extend(new)
            await self._save(txn, lambda: meta.partitions.__delitem__(slice(-len(new), None)))

    async def add_subscriptions(
        self, txn_id: TxnId, subscriptions: list[tuple[str, str]], role: str | None = None
    ) -> None:
        checked = [(str(TopicName.parse(t)), s) for t, s in subscriptions]
        txn = self._open(txn_id, role)
        async with txn.lock:
            txn = self._open(txn_id, role)
            await self._add_subscriptions(txn, checked)

    async def _add_subscriptions(self, txn: _Txn, subscriptions: list[tuple[str, str]]) -> None:
        meta = txn.meta
        new = [s for s in dict.fromkeys(subscriptions) if s not in meta.subscriptions]
        if not new:
            return
        if len(meta.subscriptions) + len(new) > self.config.max_subscriptions_per_txn:
            raise TxnLimitError(f"a transaction may acknowledge on {self.config.max_subscriptions_per_txn} subscriptions")
        meta.subscriptions.extend(new)
        await self._save(txn, lambda: meta.subscriptions.__delitem__(slice(-len(new), None)))

    # -- transactional SENDs -----------------------------------------------------------------

    def admit_send(self, txn_id: TxnId, topic: str, size: int) -> None:
        """Check a transactional SEND and reserve its room, before anything is written;
        raises with the reason it is refused. `stored` (or `not_stored`) must follow."""
        txn = self._open(txn_id)
        if topic not in txn.meta.partitions:
            raise NotAllowedError(f"{topic} was not added to transaction {txn_id} (ADD_PARTITION_TO_TXN)")
        if len(self.buffer.entries_of(txn_id)) + txn.writes >= self.config.max_buffered_entries_per_txn:
            raise TxnLimitError(
                f"transaction {txn_id} holds {self.config.max_buffered_entries_per_txn} messages already"
            )
        self.buffer.reserve(txn_id, size)
        txn.writes += 1
        txn.drained.clear()

    async def store_send(self, txn_id: TxnId, topic: str, data: bytes, messages: int) -> Position:
        """Store an admitted SEND in the buffer; its buffer position once durable."""
        txn = self._txns[txn_id]
        try:
            return await self.buffer.append(txn_id, topic, data, messages)
        except BaseException:
            self.buffer.unreserve(txn_id, len(data))
            raise
        finally:
            txn.writes -= 1
            if not txn.writes:
                txn.drained.set()

    # -- transactional ACKs --------------------------------------------------------------------

    async def ack(self, txn_id: TxnId, topic: str, sub: Subscription, positions: list[Position]) -> None:
        """Hold `positions` of `sub` until the transaction ends (TransactionConflict if
        another transaction holds one, or it is acknowledged already)."""
        txn = self._open(txn_id)
        async with txn.lock:
            txn = self._open(txn_id)
            meta = txn.meta
            pending = self.pending.get(topic, sub.name)
            pending.check(txn_id, positions)
            last = sub.ledger.last_confirmed
            for position in positions:
                if position > last:
                    raise NotAllowedError(f"cannot acknowledge {position}: no such entry in {topic}")
                if sub.cursor.is_acked(position):
                    raise TransactionConflictError(f"{position} of {topic} is already acknowledged")
            key = sub_key(topic, sub.name)
            held = meta.acks.get(key, [])
            new = [p for p in dict.fromkeys(positions) if p not in held]
            if meta.pending_ack_count() + len(new) > self.config.max_pending_acks_per_txn:
                raise TxnLimitError(
                    f"a transaction may hold {self.config.max_pending_acks_per_txn} acknowledgements"
                )
            await self._add_subscriptions(txn, [(topic, sub.name)])
            meta.acks[key] = held + new

            def undo() -> None:
                if held:
                    meta.acks[key] = held
                else:
                    meta.acks.pop(key, None)

            await self._save(txn, undo)
            pending.hold(txn_id, new)
            sub.hold_pending(pending)

    def attach(self, topic: PersistentTopic) -> None:
        """A topic was loaded: its subscriptions skip what open transactions hold."""
        for name, pending in self.pending.of_topic(str(topic.name)):
            sub = topic.subscriptions.get(name)
            if sub is not None:
                sub.hold_pending(pending)

    # -- ending --------------------------------------------------------------------------------

    async def end(self, txn_id: TxnId, commit: bool, role: str | None = None) -> None:
        """END_TXN: decide (durably), then apply; returns once applied."""
        txn = self._txns.get(txn_id)
        if txn is None or txn.meta.status in (TxnStatus.COMMITTED, TxnStatus.ABORTED):
            raise TransactionNotFoundError(f"transaction {txn_id} not found (never opened, or ended)")
        self._check_owner(txn, role)
        await self._decide(txn, commit)

    async def _decide(self, txn: _Txn, commit: bool) -> None:
        txn_id = txn.meta.txn
        wanted = TxnStatus.COMMITTING if commit else TxnStatus.ABORTING
        async with txn.lock:
            status = txn.meta.status
            if status in (TxnStatus.COMMITTED, TxnStatus.ABORTED):  # ended while we waited
                raise TransactionNotFoundError(f"transaction {txn_id} not found (never opened, or ended)")
            if status is TxnStatus.OPEN:
                txn.meta.status = wanted
                await self._save(txn, lambda: setattr(txn.meta, "status", TxnStatus.OPEN))
                if txn.timer is not None:
                    txn.timer.cancel()
            elif status is not wanted:
                raise InvalidTxnStatusError(f"transaction {txn_id} is {status.value}, cannot {'commit' if commit else 'abort'} it")
            if txn.ending is None:
                txn.ending = self._spawn(self._finish(txn))
            ending = txn.ending
        await asyncio.shield(ending)  # a repeated END_TXN waits for the same outcome

    async def _finish(self, txn: _Txn) -> None:
        try:
            await txn.drained.wait()  # SENDs admitted before the decision are stored first
            if txn.meta.status is TxnStatus.COMMITTING:
                await self._commit(txn)
            else:
                await self._abort(txn)
        except Exception as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("ending transaction %s failed, retrying in %ss: %s",
                            txn.meta.txn, self.config.retry_s, exc)
                asyncio.get_running_loop().call_later(self.config.retry_s, self._retry, txn)
            txn.ending = None
            raise

    def _retry(self, txn: _Txn) -> None:
        if self._txns.get(txn.meta.txn) is txn and txn.ending is None:
            txn.ending = self._spawn(self._finish(txn))

    async def _commit(self, txn: _Txn) -> None:
        meta = txn.meta
        for partition in meta.partitions:
            if partition in meta.applied:
                continue
            pending = await self.buffer.read(meta.txn, partition)
            if pending:
                topic = await self._topic(partition)
                if topic is not None:
                    await topic.append_committed([p.data for p in pending], sum(p.messages for p in pending))
            meta.applied.append(partition)
            await self.log.save(meta)
        await self._apply_acks(meta)
        meta.status = TxnStatus.COMMITTED
        await self.log.save(meta)
        await self.buffer.drop(meta.txn)
        self._forget(txn)
        self.committed += 1
        self._spawn(self._remove_later(meta.txn))

    async def _abort(self, txn: _Txn) -> None:
        meta = txn.meta
        await self.buffer.drop(meta.txn)
        await self.log.remove(meta.txn)
        meta.status = TxnStatus.ABORTED
        self._forget(txn)  # ended before anyone sees an effect of the abort
        self.aborted += 1
        for key, positions in meta.acks.items():
            topic_name, _, subscription = key.partition("\x00")
            pending = self.pending.find(topic_name, subscription)
            freed = pending.release(meta.txn, positions) if pending is not None else []
            self.pending.forget_empty(topic_name, subscription)
            sub = await self._subscription(topic_name, subscription) if freed else None
            if sub is not None:
                sub.requeue(freed)  # redelivered, as Pulsar does on abort

    async def _apply_acks(self, meta: TxnMeta) -> None:
        for key, positions in meta.acks.items():
            topic_name, _, subscription = key.partition("\x00")
            sub = await self._subscription(topic_name, subscription)
            if sub is not None:
                await sub.ack_committed(positions)
            pending = self.pending.find(topic_name, subscription)
            if pending is not None:
                pending.release(meta.txn, positions)
                self.pending.forget_empty(topic_name, subscription)

    async def _reapply_acks(self, meta: TxnMeta) -> None:
        """A COMMITTED record found at start: its acks again (idempotent), then it goes."""
        await self.buffer.drop(meta.txn)
        await self._apply_acks(meta)
        await self.log.remove(meta.txn)

    async def _remove_later(self, txn_id: TxnId) -> None:
        await asyncio.sleep(self.config.committed_linger_s)
        await self.log.remove(txn_id)

    async def _topic(self, name: str) -> PersistentTopic | None:
        try:
            return await self.topics(TopicName.parse(name))
        except TopicNotFoundError:
            log.warning("transaction target %s no longer exists: skipped", name)
            return None

    async def _subscription(self, topic_name: str, subscription: str) -> Subscription | None:
        topic = await self._topic(topic_name)
        return topic.subscriptions.get(subscription) if topic is not None else None

    # -- admin ---------------------------------------------------------------------------------

    def status(self, txn_id: TxnId) -> TxnMeta:
        txn = self._txns.get(txn_id)
        if txn is None:
            raise TransactionNotFoundError(f"transaction {txn_id} not found (never opened, or ended)")
        return txn.meta

    def open_transactions(self) -> list[TxnMeta]:
        return [txn.meta for txn in self._txns.values()]

    def stats(self) -> dict:
        return {
            "coordinators": self.config.coordinators,
            "openTransactions": len(self._txns),
            "committedCount": self.committed,
            "abortedCount": self.aborted,
            "timeoutCount": self.timed_out,
            "bufferedBytes": self.buffer.total_bytes,
        }
