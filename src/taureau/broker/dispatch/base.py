"""The read loop shared by every dispatcher: permits, the replay set and redelivery counts.

Theory of operation:
- One dispatcher per subscription; an asyncio task runs `_run` only while there is work.
  `wake()` starts it (or marks a running one to go round again) on: a FLOW (permits), a
  new consumer, a redelivery request, an ack (Key_Shared ordering may unblock), or the topic
  announcing new entries. A round that delivers nothing and saw no wake ends the task, so an
  idle subscription holds no task (5,000 subscriptions were 5,000 parked tasks).
- Each round first re-sends positions in the replay set (negative acks, ack timeouts,
  consumers that left), oldest first, then reads fresh entries from the cursor. Fresh reads
  are sized from the permits and the average messages per entry, so batched entries do
  not overshoot a consumer's receiver queue by much; entries no consumer could take go back
  (a cursor seek for a contiguous tail, the replay set otherwise).
- A rewind (Exclusive/Failover redelivery) bumps `_epoch`; a read that was in flight across
  a rewind is discarded, because the cursor will hand the same entries out again.
- New entries and permits (`notify_new_entries`, `flow`) schedule one plain callback for the
  next loop turn, however many arrive in this one (a burst of reads, each its own publish,
  then costs one round, not one each). When no task is running, nothing waits in the replay
  or delayed sets and the entries the cursor would read are all in the entry cache, that
  callback runs the round itself, synchronously: a consumer keeping up with its producers
  costs no task per message. Anything else (a cache miss, a replay, a compacted read) goes
  to the task. Not inline, in the publish itself: a MESSAGE could then leave before the
  SEND_RECEIPT of the same entry on a connection that both produces and consumes, and the
  official C++ client crashed at close in a dead-letter test when it did (2 runs of 8).
- Subclasses implement `_assign(entries) -> held` only: a pure decision of which consumer
  takes each entry, calling `consumer.deliver`, and returning what nobody could take.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Container
from typing import NamedTuple

from taureau.broker.compaction.reader import CompactedReader
from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.delayed import DelayedDeliveries, now_ms
from taureau.broker.dispatch.rate import DispatchThrottle
from taureau.broker.entries import EntryInfo
from taureau.common.errors import TaureauError
from taureau.storage.managed_ledger.api import ManagedCursor, ManagedLedger
from taureau.storage.position import Entry, Position

log = logging.getLogger(__name__)

# What dispatch reads from a stored entry (messages, key, deliver_at); see broker.entries.
EntryInfoFn = Callable[[Entry], EntryInfo]

MAX_ENTRIES_PER_READ = 256


class DispatchLimits(NamedTuple):
    """Unacknowledged messages at which dispatch pauses, until acks bring them to half
    (Pulsar's maxUnackedMessagesPerConsumer / PerSubscription; 0: no limit). They apply to
    Shared and Key_Shared only, as in Pulsar: Exclusive and Failover consumers (readers among
    them) acknowledge cumulatively, or not at all."""

    per_consumer: int = 0
    per_subscription: int = 0


class DispatchItem:
    """An entry on its way to a consumer, with what the dispatcher parsed from it."""

    __slots__ = ("entry", "messages", "key")

    def __init__(self, entry: Entry, messages: int, key: bytes | None) -> None:
        self.entry = entry
        self.messages = messages
        self.key = key


class Dispatcher:
    """Base dispatcher; owns the consumer list, the replay set and redelivery counts."""

    tracks_unacked = False  # whether DispatchLimits apply (Shared, Key_Shared)
    compacted: CompactedReader | None = None  # a read_compacted subscription reads through it
    delays_delivery = False  # whether deliver_at_time holds entries back (Shared, Key_Shared)
    # Positions acknowledged in open transactions (Subscription.hold_pending): not dispatched.
    pending_acks: Container[Position] = frozenset()

    def __init__(
        self,
        ledger: ManagedLedger,
        cursor: ManagedCursor,
        entry_info: EntryInfoFn,
        limits: DispatchLimits = DispatchLimits(),
    ) -> None:
        self.ledger = ledger
        self.limits = limits
        self.blocked = False  # the subscription hit limits.per_subscription; cleared at half
        self.cursor = cursor
        self.entry_info = entry_info
        self.consumers: list[Consumer] = []  # attach order; owned here
        self.replay: set[Position] = set()  # positions to send again before fresh entries
        self.redelivery_counts: dict[Position, int] = {}  # position -> times redelivered
        self._woken = False  # wake() was called since the current round began
        self._loop: asyncio.AbstractEventLoop | None = None  # looked up once (a getpid call each)
        self._epoch = 0  # bumped by every rewind; see theory of operation
        self._avg_messages = 1.0  # running average of messages per entry, sizes reads
        self._task: asyncio.Task | None = None
        self._round_soon = False  # a callback for the next loop turn is scheduled (_wake_soon)
        self._closed = False
        self._paused = False  # set while the cursor is being reset under the dispatcher
        self._idle = asyncio.Event()  # set whenever no dispatch round is in progress
        self._idle.set()
        self.delayed = DelayedDeliveries(self.wake)  # entries read before their delivery time
        self.throttle = DispatchThrottle()  # dispatch rate limits; the subscription sets its limiters

    # -- consumer lifecycle (called by the subscription) ---------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        consumer.max_unacked = self.limits.per_consumer if self.tracks_unacked else 0
        self.consumers.append(consumer)
        self._loop = asyncio.get_running_loop()
        self.wake()

    def remove_consumer(self, consumer: Consumer) -> None:
        """Detach; its unacked entries go to the remaining consumers."""
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        self._redeliver_pending(consumer, consumer.settle_all())
        if not self.consumers:
            # Nobody left: forget what was in flight and let the cursor hand out every
            # unacknowledged entry again (acked ones are skipped), as Pulsar rewinds an idle
            # subscription. The replay set must not outlive this dispatcher: the next
            # consumer may come with another subscription type, hence another dispatcher.
            self._epoch += 1
            self.replay.clear()
            self.delayed.clear()
            try:
                self.cursor.rewind()
            except TaureauError:
                pass  # the cursor was closed or deleted with its subscription: nothing to rewind
        self.wake()

    def flow(self, consumer: Consumer, permits: int) -> None:
        consumer.permits += permits
        # A caught-up consumer's FLOW (one per message with 1,000 topics) schedules no round:
        # the add that brings the next entry wakes us.
        if self._has_work():
            self._wake_soon()

    def redeliver(self, consumer: Consumer, positions: list[Position] | None) -> None:
        """Send `positions` (all of the consumer's unacked entries when None) again."""
        pending = consumer.settle_all() if positions is None else [p for p in positions if consumer.settle(p)]
        self._redeliver_pending(consumer, pending)
        self.wake()

    def _redeliver_pending(self, consumer: Consumer | None, positions: list[Position]) -> None:
        for position in positions:
            self.redelivery_counts[position] = self.redelivery_counts.get(position, 0) + 1
            self.replay.add(position)

    def adopt_redelivery_counts(self, previous: Dispatcher) -> None:
        """Take over the counts of the dispatcher this one replaces (the subscription type
        changed), so a message's redelivery count keeps growing across the change."""
        self.redelivery_counts = previous.release_redelivery_counts()

    def release_redelivery_counts(self) -> dict[Position, int]:
        """Hand the counts to a successor (this dispatcher is closed) and forget them."""
        counts, self.redelivery_counts = self.redelivery_counts, {}
        return counts

    def acked(self, consumer: Consumer | None, positions: list[Position]) -> None:
        """Individual acks (by `consumer`, or by a transaction: None): forget the positions everywhere."""
        for position in positions:
            if consumer is None or not consumer.settle(position):
                for other in self.consumers:
                    if other.settle(position):
                        break
            self.replay.discard(position)
            self.redelivery_counts.pop(position, None)
        self._wake_after_ack()

    def requeue(self, positions: list[Position]) -> None:
        """Positions an aborted transaction had acknowledged: whoever holds them lets go, and
        they are sent again (those the cursor has not handed out yet come with the next read)."""
        read = self.cursor.read_position
        for position in positions:
            for consumer in self.consumers:
                if consumer.settle(position):
                    break
        self._redeliver_pending(None, [p for p in positions if p < read])
        self.wake()

    def acked_cumulative(self, consumer: Consumer, position: Position) -> None:
        consumer.settle_up_to(position)
        if self.replay:
            self.replay = {p for p in self.replay if p > position}
        if self.redelivery_counts:
            self.redelivery_counts = {p: n for p, n in self.redelivery_counts.items() if p > position}
        self._wake_after_ack()

    def _wake_after_ack(self) -> None:
        """An ack can only give a dispatcher work when unacked bounds apply (a consumer or the
        subscription blocked on them; Key_Shared's order waits for acks too): Shared and
        Key_Shared. For Exclusive and Failover it only takes work away (replay positions), and
        with 1,000 topics the wake's `_has_work` per ack showed in every message's cost."""
        if self.tracks_unacked:
            self.wake()

    def reset(self) -> None:
        """The cursor was reset (seek): forget everything in flight."""
        self._epoch += 1
        self.replay.clear()
        self.delayed.clear()
        self.redelivery_counts.clear()
        for consumer in self.consumers:
            consumer.settle_all()
        self.wake()

    def wake(self) -> None:
        self._woken = True
        if (
            self._task is None
            and self._loop is not None
            and not self._closed
            and self._has_work()
            and self._available_permits() > 0  # else a round ends at once; a FLOW wakes us
        ):
            self._task = self._loop.create_task(self._run(), name="dispatcher")

    def _has_work(self) -> bool:
        """Would a round find anything to send? The early exits of `_dispatch_once`, without a
        task: with many topics every ack and FLOW wakes a dispatcher whose cursor is caught up,
        and a task per wake was a third of the dispatch cost (hot_path_cost.py, 1,000 topics)."""
        if self.replay or len(self.delayed) or self.blocked:
            return True  # blocked: a round re-evaluates the unacked bound (and its stats flag)
        try:
            compacted = self.compacted
            return compacted.has_more(self.cursor) if compacted is not None else self.cursor.has_more_entries()
        except TaureauError:
            return True  # let the round meet it (it logs and retries)

    async def pause(self) -> None:
        """Stop dispatching and wait for a round in progress (a cursor read) to finish, so
        the cursor can be moved without a stale read landing on top of it."""
        self._paused = True
        await self._idle.wait()

    def resume(self) -> None:
        self._paused = False
        self.wake()

    def notify_new_entries(self) -> None:
        self._wake_soon()

    def _wake_soon(self) -> None:
        """wake() at the next loop turn, as a round without a task if the cache can serve it
        (see the theory of operation)."""
        if not self._round_soon and self._loop is not None and not self._closed:
            self._round_soon = True
            self._loop.call_soon(self._wake_now)

    def _wake_now(self) -> None:
        self._round_soon = False
        if (
            self._task is None
            and not self._closed
            and not self._paused
            and self.compacted is None
            and not self.replay
            and not len(self.delayed)
        ):
            try:
                self._round_cached()
            except Exception:
                # Whatever failed here, the task's round meets too, and logs and retries it.
                log.debug("dispatch on %s failed; the task takes over", self.cursor.name, exc_info=True)
        self.wake()

    def _round_cached(self) -> None:
        """One round of fresh entries from the cache, without awaiting (`_dispatch_once`'s
        fresh-read half; any cache miss leaves everything to the task)."""
        # Entries first: it is the cheaper question, and a FLOW's wake usually finds none.
        if not self.cursor.has_more_entries():
            return
        available = self._permits_for_round()
        if available <= 0:
            return
        self._begin_round()
        entries = self.cursor.read_cached_entries(self._entries_for(available))
        if entries:
            self._hand_out(entries)

    async def close(self) -> None:
        self._closed = True
        self.delayed.clear()
        self.throttle.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    # -- subclass hooks ----------------------------------------------------------------------

    def _available_permits(self) -> int:
        return sum(c.permits for c in self.consumers if c.ready)

    def _assign(self, items: list[DispatchItem]) -> list[DispatchItem]:
        """Deliver items to consumers; return the ones nobody could take, in order."""
        raise NotImplementedError

    def _delivery_count(self, position: Position) -> int:
        return self.redelivery_counts.get(position, 0)

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        try:
            while not self._closed:
                self._woken = False
                self._idle.clear()
                try:
                    progressed = False if self._paused else await self._dispatch_once()
                    backoff = 0.05
                except asyncio.CancelledError:
                    raise
                except TaureauError as exc:
                    log.warning("dispatch on %s failed, retrying: %s", self.cursor.name, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                except Exception:
                    log.exception("dispatch on %s failed, retrying", self.cursor.name)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                finally:
                    self._idle.set()
                if not self._woken and not (progressed and self._has_work()):
                    return  # nothing to do: the next wake() starts a task again
        finally:
            # wake() starts a task only while none is set, and close() cancels this one: the
            # task set is this one, or None already.
            self._task = None

    def _permits_for_round(self) -> int:
        """Messages this round may send: the consumers' permits within the unacked bound and
        the dispatch rate (0: no round)."""
        available = self._available_permits()
        if available <= 0 or not self.consumers or self._over_unacked_limit():
            return 0
        # A spent dispatch rate ends the round; the throttle wakes us when its period ends.
        return min(available, self.throttle.budget(self._loop, self.wake))

    def _entries_for(self, available: int) -> int:
        """Entries to read for `available` messages: sized by the average messages per entry,
        so batched entries do not overshoot a consumer's receiver queue by much."""
        room = self._unacked_room()
        return max(1, min(MAX_ENTRIES_PER_READ, int(min(available, room) / self._avg_messages)))

    async def _dispatch_once(self) -> bool:
        available = self._permits_for_round()
        if available <= 0:
            return False
        if len(self.delayed):
            self.replay.update(self.delayed.pop_due(now_ms()))
        self._begin_round()
        if self.replay:
            delivered, examined_all = await self._dispatch_replay(available)
            if delivered:
                return True
            if not examined_all:
                # Older entries wait beyond what this round looked at: reading fresh ones now
                # could overtake them (Key_Shared order), so wait for acks or permits.
                return False
        compacted = self.compacted
        has_more = compacted.has_more(self.cursor) if compacted is not None else self.cursor.has_more_entries()
        if not has_more or self._available_permits() <= 0 or self.delayed.full:
            return False
        count = self._entries_for(available)
        epoch = self._epoch
        if compacted is not None:
            entries = await compacted.read(self.cursor, count)
        else:
            entries = await self.cursor.read_entries(count)
        if epoch != self._epoch or not entries:
            return bool(entries)
        return self._hand_out(entries)

    def _hand_out(self, entries: list[Entry]) -> bool:
        """Give freshly read entries to the consumers; un-read what nobody could take. True
        if anything went out (or every entry was skipped: read on)."""
        try:
            items = self._dispatchable(entries)
            if not items:
                return True  # every entry read was skipped: read on
            held = self._assign(items)
        except Exception:
            # The read moved the cursor past these entries: un-read them, so the round that
            # retries hands them out again (at least once) instead of skipping them.
            self.cursor.seek(entries[0].position)
            raise
        if held:
            if held == items[len(items) - len(held) :]:
                # A contiguous tail: un-read it so the cursor hands it out next time.
                self.cursor.seek(held[0].entry.position)
            else:
                self.replay.update(item.entry.position for item in held)
        return len(held) < len(items)

    async def _dispatch_replay(self, available: int) -> tuple[bool, bool]:
        """Re-send replay positions, oldest first. Returns (anything delivered, every
        replay position was looked at)."""
        replay = sorted(self.replay)
        positions = replay[: max(MAX_ENTRIES_PER_READ, available)]
        examined_all = len(positions) == len(replay)
        epoch = self._epoch
        entries: list[Entry] = []
        for position in positions:
            self.replay.discard(position)
            if self.cursor.is_acked(position):
                self.redelivery_counts.pop(position, None)
                continue
            if position in self.pending_acks:
                continue  # held by a transaction: requeued if it aborts
            try:
                entries.append(await self.ledger.read_entry(position))
            except TaureauError:
                # Trimmed by retention or deleted: nothing left to deliver.
                self.redelivery_counts.pop(position, None)
        items = self._dispatchable(entries)
        if epoch != self._epoch:
            return True, False
        held = self._assign(items)
        self.replay.update(item.entry.position for item in held)
        return len(held) < len(items) or len(items) < len(entries), examined_all

    def _over_unacked_limit(self) -> bool:
        """Subscription-wide unacked bound, with hysteresis: acks wake the dispatcher."""
        limit = self.limits.per_subscription
        if not limit or not self.tracks_unacked:
            return False
        unacked = sum(c.unacked_messages for c in self.consumers)
        self.blocked = unacked > limit // 2 if self.blocked else unacked >= limit
        return self.blocked

    def _unacked_room(self) -> float:
        """Messages the subscription may still send before its unacked bound (reads are sized
        by it, so a round overshoots by one entry at most)."""
        limit = self.limits.per_subscription
        if not limit or not self.tracks_unacked:
            return float("inf")
        return max(limit - sum(c.unacked_messages for c in self.consumers), 1)

    def _begin_round(self) -> None:
        """Hook run before each dispatch round (Key_Shared resets its blocked set)."""

    def _dispatchable(self, entries: list[Entry]) -> list[DispatchItem]:
        """The entries as dispatch items; an entry no consumer could read (entry_info says 0
        messages) is logged and acknowledged instead, so it never blocks the subscription."""
        items = []
        skipped = []
        total = 0
        now = now_ms() if self.delays_delivery else 0
        pending_acks = self.pending_acks or None  # empty (falsy) nearly always: no lookup per entry
        for entry in entries:
            if pending_acks is not None and entry.position in pending_acks:
                continue  # acknowledged in an open transaction: requeued if it aborts
            messages, key, deliver_at = self.entry_info(entry)
            if messages == 0:
                skipped.append(entry.position)
                continue
            if deliver_at > now and self.delays_delivery:
                self.delayed.add(entry.position, deliver_at)
                continue
            total += messages
            items.append(DispatchItem(entry, messages, key))
        if items:
            self._avg_messages = 0.8 * self._avg_messages + 0.2 * (total / len(items))
        if skipped:
            log.warning(
                "subscription %s skips %d unreadable stored entr%s (%s): acknowledged, not dispatched",
                self.cursor.name,
                len(skipped),
                "y" if len(skipped) == 1 else "ies",
                ", ".join(map(str, skipped[:10])),
            )
            for position in skipped:
                self.redelivery_counts.pop(position, None)
            self.cursor.delete_now(skipped)
        return items

    def _deliver(self, consumer: Consumer, item: DispatchItem) -> None:
        position = item.entry.position
        self.throttle.consume(item.messages, len(item.entry.data))
        consumer.deliver(
            position,
            item.entry.data,
            item.messages,
            self._delivery_count(position),
            self.cursor.batch_unacked(position) or (),
        )
