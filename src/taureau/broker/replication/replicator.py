"""One replicator: a durable cursor `pulsar.repl.<remote>` on a local topic, whose entries are
published to the same topic on the remote cluster, acknowledged on the cursor only once the
remote broker has stored them.

Nothing is lost: the cursor moves past an entry only after the remote receipt, and a durable
cursor outlives restarts, so after a crash, an outage of the remote or a reconnect the
replicator resends from the cursor's mark-delete position. Resends are the only source of
duplicates; the entries keep their producer name and sequence ids, so a remote namespace with
de-duplication on drops them (the remote keys a replicator's entries on their original
producer, broker/topic.py).

No loops: every replicated entry carries `replicated_from` = the local cluster, and a
replicator skips entries that carry one (they came from another cluster) as well as entries
whose `replicate_to` list leaves its remote out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from taureau.broker.producer import REPLICATOR_PREFIX
from taureau.broker.replication.remote import OutgoingEntry, RemoteError, RemoteProducer
from taureau.common.errors import StorageError
from taureau.protocol import ProtocolError, encode_entry, has_checksum, parse_metadata
from taureau.storage.managed_ledger.api import ManagedCursor
from taureau.storage.position import Entry, Position

log = logging.getLogger(__name__)

PREFIX = REPLICATOR_PREFIX  # Pulsar's replicatorPrefix: cursors and producer names of replication
MAX_BATCH_ENTRIES = 500  # entries of one read
MAX_BATCH_BYTES = 8 * 1024 * 1024  # about this many bytes per read (one entry if it is larger)
MAX_BATCHES_IN_FLIGHT = 2  # reads sent and not yet acknowledged by the remote
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0  # Pulsar's replicator backs off to a minute; a short cap heals faster
SEND_TIMEOUT_S = 30.0
LOG_EVERY_S = 30.0  # a remote that stays down is logged this often, not at every retry


class _Batch(NamedTuple):
    """One read on its way to the remote."""

    last: Position  # the read's last entry: the cursor moves here once `sent` is done
    sent: asyncio.Future[None]
    messages: int
    size: int


def cursor_name(remote: str) -> str:
    return PREFIX + remote


def is_replication_cursor(name: str) -> bool:
    return name.startswith(PREFIX)


class Replicator:
    def __init__(
        self,
        topic: str,
        local: str,
        remote: str,
        cursor: ManagedCursor,
        remote_url: Callable[[], Awaitable[str]],
    ) -> None:
        self.topic = topic
        self.local = local
        self.remote = remote
        self.cursor = cursor  # owned here while running
        self._remote_url = remote_url  # read at every (re)connect: an updated record applies
        self._producer: RemoteProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._avg_entry = 1024  # bytes, to size reads to MAX_BATCH_BYTES
        self.msg_out = 0
        self.bytes_out = 0
        self.connected_since: float | None = None
        self.last_error = ""
        self._last_logged = 0.0
        self._window = (time.monotonic(), 0, 0)  # start, messages, bytes: for the rates
        self._rates = (0.0, 0.0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"replicator {self.topic} -> {self.remote}")

    async def stop(self) -> None:
        """Stop sending; entries not acknowledged by the remote stay in the cursor's backlog."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._disconnect()

    @property
    def backlog(self) -> int:
        return self.cursor.backlog

    async def _disconnect(self) -> None:
        producer, self._producer = self._producer, None
        self.connected_since = None
        if producer is not None:
            await producer.close()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                if self._producer is None or not self._producer.connected:
                    await self._disconnect()
                    url = await self._remote_url()
                    self._producer = await RemoteProducer.open(url, self.topic, PREFIX + self.local)
                    self.connected_since = time.time()
                    backoff = BACKOFF_MIN_S
                    log.info("replicator %s -> %s connected to %s", self.topic, self.remote, url)
                await self._pump(self._producer)
            except Exception as exc:  # RemoteError, StorageError, or a bug: never give up the topic
                self.last_error = str(exc) or type(exc).__name__
                now = time.monotonic()
                if now - self._last_logged >= LOG_EVERY_S:
                    self._last_logged = now
                    unexpected = not isinstance(exc, (RemoteError, StorageError))
                    log.warning("replicator %s -> %s: %s; retrying", self.topic, self.remote, exc,
                                exc_info=unexpected)
                await self._disconnect()
                try:
                    self.cursor.rewind()  # resend everything not acknowledged by the remote
                except StorageError:
                    return  # the cursor was closed under us: the topic is going away
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _pump(self, producer: RemoteProducer) -> None:
        """Read, send and acknowledge until something fails. Up to MAX_BATCHES_IN_FLIGHT reads
        are on their way at once (the next one is sent while the remote stores the previous);
        the cursor moves over a read only once its receipts and those of every earlier read
        came, so it never passes an entry the remote has not stored."""
        inflight: deque[_Batch] = deque()
        try:
            while True:
                while inflight and inflight[0].sent.done():
                    batch = inflight.popleft()
                    batch.sent.result()  # RemoteError when the remote did not store it
                    await self.cursor.mark_delete(batch.last)
                    self._count(batch.messages, batch.size)
                if len(inflight) >= MAX_BATCHES_IN_FLIGHT:
                    await asyncio.wait([inflight[0].sent])
                    continue
                count = max(1, min(MAX_BATCH_ENTRIES, MAX_BATCH_BYTES // max(self._avg_entry, 1)))
                if inflight:  # do not sit in a wait for new entries while receipts are due
                    entries = await self.cursor.read_entries(count)
                    if not entries:
                        await asyncio.wait([inflight[0].sent])
                        continue
                else:
                    entries = await self.cursor.read_entries_or_wait(count)
                inflight.append(self._send(producer, entries))
        finally:
            for batch in inflight:
                if batch.sent.done() and not batch.sent.cancelled():
                    batch.sent.exception()  # seen: the failure that matters was raised above
                batch.sent.cancel()

    def _send(self, producer: RemoteProducer, entries: list[Entry]) -> _Batch:
        outgoing = [out for entry in entries if (out := self._outgoing(entry)) is not None]
        self._avg_entry = max(1, sum(len(e.data) for e in entries) // len(entries))
        sent: asyncio.Future[None]
        if outgoing:
            # Tasks start in creation order, so the SENDs of successive reads leave in order.
            sent = asyncio.get_running_loop().create_task(producer.send(outgoing, SEND_TIMEOUT_S))
        else:  # nothing of this read goes to the remote: done once the reads before it are
            sent = asyncio.get_running_loop().create_future()
            sent.set_result(None)
        return _Batch(entries[-1].position, sent, sum(o.messages for o in outgoing),
                      sum(len(o.payload) for o in outgoing))

    def _outgoing(self, entry: Entry) -> OutgoingEntry | None:
        """The SEND that replicates `entry`, or None for an entry not to send."""
        try:
            meta, end = parse_metadata(entry.data)
        except ProtocolError as exc:
            # Stored before validation existed, or corrupt: no broker would take it either.
            log.warning("replicator %s -> %s skips unreadable entry %s: %s", self.topic, self.remote, entry.position, exc)
            return None
        if meta.replicated_from or (meta.replicate_to and self.remote not in meta.replicate_to):
            return None
        if meta.HasField("marker_type"):  # the broker's own markers stay local
            return None
        messages = meta.num_messages_in_batch if meta.HasField("num_messages_in_batch") else 1
        highest = meta.highest_sequence_id
        if highest <= meta.sequence_id:
            highest = meta.sequence_id + max(messages - 1, 0)
        meta.replicated_from = self.local
        data = encode_entry(meta, entry.data[end:], checksum=has_checksum(entry.data))
        return OutgoingEntry(data, meta.sequence_id, highest, messages)

    def _count(self, messages: int, size: int) -> None:
        self.msg_out += messages
        self.bytes_out += size
        start, window_msgs, window_bytes = self._window
        now = time.monotonic()
        window_msgs, window_bytes = window_msgs + messages, window_bytes + size
        if now - start >= 1.0:
            self._rates = (window_msgs / (now - start), window_bytes / (now - start))
            self._window = (now, 0, 0)
        else:
            self._window = (start, window_msgs, window_bytes)

    def stats(self) -> dict:
        """Pulsar's ReplicatorStats fields this replicator has."""
        start, window_msgs, window_bytes = self._window
        elapsed = time.monotonic() - start
        rate, throughput = self._rates
        if elapsed >= 2.0:  # nothing sent for a while: the rate decays to what the window saw
            rate, throughput = window_msgs / elapsed, window_bytes / elapsed
        return {
            "msgRateOut": rate,
            "msgThroughputOut": throughput,
            "msgOutCounter": self.msg_out,
            "bytesOutCounter": self.bytes_out,
            "replicationBacklog": self.backlog,
            "connected": self._producer is not None and self._producer.connected,
            "outboundConnection": self._producer.url if self._producer is not None else "",
            "outboundConnectedSince": (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.connected_since))
                if self.connected_since is not None else ""
            ),
            "lastError": self.last_error,
        }
