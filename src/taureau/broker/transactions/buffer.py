"""TxnBuffer: where transactional SENDs wait for their transaction to end.

Design (docs/transactions.md): a transactional message is not written to its topic until the
transaction commits. Its SEND is appended, framed with the transaction id, the topic and its
message count, to one broker-wide managed ledger (`__transactions/buffer`) and receipted once
that add is durable. A commit copies the transaction's entries, in send order, into each topic;
a commit or an abort then acknowledges them on the buffer's one durable cursor, so retention
deletes ledgers whose entries all ended. Consumers therefore never see an uncommitted or an
aborted message, and the topics' own logs and dispatchers know nothing of transactions.

After a restart `recover` reads everything the cursor has not acknowledged and gives each
transaction the log still knows its entries back; entries of any other transaction (ended
before the restart, its acknowledgement not saved yet) are acknowledged again.

Bounds: bytes buffered per transaction and in total; `reserve` refuses past them before anything
is written, so a refused SEND leaves nothing behind.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from taureau.broker.transactions.model import TxnId, TxnLimitError
from taureau.storage.managed_ledger.api import InitialPosition, ManagedCursor, ManagedLedger
from taureau.storage.position import Position

LEDGER_NAME = "__transactions/buffer"
CURSOR = "coordinator"
_MAGIC = b"TXB1"
_HEADER = struct.Struct(">4sQQIH")  # magic, txn most, txn least, messages, topic length
_READ_BATCH = 256


class Buffered(NamedTuple):
    topic: str
    position: Position
    size: int
    messages: int


class Pending(NamedTuple):
    """One buffered SEND read back for a commit."""

    data: bytes
    messages: int


def encode(txn: TxnId, topic: str, data: bytes, messages: int) -> bytes:
    name = topic.encode()
    return _HEADER.pack(_MAGIC, txn.most, txn.least, messages, len(name)) + name + data


def decode(entry: bytes) -> tuple[TxnId, str, bytes, int] | None:
    """(txn, topic, payload, messages); None for bytes this module did not write."""
    if len(entry) < _HEADER.size or entry[:4] != _MAGIC:
        return None
    _, most, least, messages, length = _HEADER.unpack_from(entry)
    start = _HEADER.size
    topic = entry[start : start + length].decode()
    return TxnId(most, least), topic, entry[start + length :], messages


class TxnBuffer:
    def __init__(
        self, ledger: ManagedLedger, cursor: ManagedCursor, max_bytes_per_txn: int, max_bytes_total: int
    ) -> None:
        self.ledger = ledger
        self.cursor = cursor
        self.max_bytes_per_txn = max_bytes_per_txn
        self.max_bytes_total = max_bytes_total
        self._entries: dict[TxnId, list[Buffered]] = {}  # stored, in send order
        self._bytes: dict[TxnId, int] = {}  # reserved or stored, per transaction
        self.total_bytes = 0

    @classmethod
    async def open(cls, ledger: ManagedLedger, max_bytes_per_txn: int, max_bytes_total: int) -> TxnBuffer:
        cursor = await ledger.open_cursor(CURSOR, InitialPosition.EARLIEST)
        return cls(ledger, cursor, max_bytes_per_txn, max_bytes_total)

    def reserve(self, txn: TxnId, size: int) -> None:
        """Count `size` bytes against the bounds before the add starts; raises past them."""
        held = self._bytes.get(txn, 0)
        if held + size > self.max_bytes_per_txn:
            raise TxnLimitError(
                f"transaction {txn} would buffer {held + size} bytes, more than {self.max_bytes_per_txn}"
            )
        if self.total_bytes + size > self.max_bytes_total:
            raise TxnLimitError(f"the transaction buffer is full ({self.max_bytes_total} bytes)")
        self._bytes[txn] = held + size
        self.total_bytes += size

    def unreserve(self, txn: TxnId, size: int) -> None:
        self._bytes[txn] = self._bytes.get(txn, 0) - size
        self.total_bytes -= size

    async def append(self, txn: TxnId, topic: str, data: bytes, messages: int) -> Position:
        """Store one SEND reserved before; its buffer position once durable."""
        position = await self.ledger.add_entry(encode(txn, topic, data, messages))
        self._entries.setdefault(txn, []).append(Buffered(topic, position, len(data), messages))
        return position

    def bytes_of(self, txn: TxnId) -> int:
        return self._bytes.get(txn, 0)

    def entries_of(self, txn: TxnId) -> list[Buffered]:
        return list(self._entries.get(txn, ()))

    async def read(self, txn: TxnId, topic: str) -> list[Pending]:
        """The transaction's SENDs to `topic`, in the order they were stored."""
        out = []
        for ref in self._entries.get(txn, ()):
            if ref.topic == topic:
                decoded = decode((await self.ledger.read_entry(ref.position)).data)
                assert decoded is not None, f"buffer entry {ref.position} is not a transaction entry"
                out.append(Pending(decoded[2], ref.messages))
        return out

    async def drop(self, txn: TxnId) -> None:
        """The transaction ended: its entries are no longer needed."""
        refs = self._entries.pop(txn, [])
        self.total_bytes -= self._bytes.pop(txn, 0)
        if refs:
            await self.cursor.delete([ref.position for ref in refs])

    async def recover(self, known: Iterable[TxnId]) -> None:
        """Rebuild the per-transaction index from the ledger (at start, before any SEND)."""
        wanted = set(known)
        orphans: list[Position] = []
        while True:
            entries = await self.cursor.read_entries(_READ_BATCH)
            if not entries:
                break
            for entry in entries:
                decoded = decode(entry.data)
                if decoded is None or decoded[0] not in wanted:
                    orphans.append(entry.position)
                    continue
                txn, topic, payload, messages = decoded
                self._entries.setdefault(txn, []).append(Buffered(topic, entry.position, len(payload), messages))
                self._bytes[txn] = self._bytes.get(txn, 0) + len(payload)
                self.total_bytes += len(payload)
        if orphans:
            await self.cursor.delete(orphans)
