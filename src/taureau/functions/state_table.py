"""StateTable: one function's durable key/value table (counters and put/get state).

Pulsar keeps function state in BookKeeper's table service; Taureau keeps it in its own
storage: a managed ledger per function is the table's log, and the worker, the table's only
writer, holds it in memory. An operation is answered once its record is durable (journal
fsync), so a `kill -9` loses nothing that was answered.

Byte grammar of one entry (version 1; big-endian):

    record     := kind:u8 body
    PUT   (1)  := key_len:u16 key value_len:u32 value
    DELETE(2)  := key_len:u16 key
    INCR  (3)  := key_len:u16 key amount:i64
    BEGIN (4)  := snapshot_id:u64                    -- a snapshot starts
    CHUNK (5)  := snapshot_id:u64 count:u32 (type:u8 version:u64 key_len:u16 key value_len:u32 value)*count
                  type: 0 a value (put), 1 a counter (incr); version: writes to the key so far
    END   (6)  := snapshot_id:u64 keys:u64           -- the snapshot is complete

Every SNAPSHOT_EVERY records the table writes a snapshot (BEGIN, CHUNKs, END as one batch,
so nothing interleaves) and acknowledges, on its cursor, everything before BEGIN, so older
ledgers are trimmed. Recovery reads what is retained: it starts from the last complete
snapshot (an incomplete one, cut by a crash, is ignored) and replays the records after it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import NamedTuple

from taureau.functions.errors import FunctionStateError, StateKeyNotFoundError
from taureau.functions.state_ops import check_key, check_value, decode_counter, encode_counter
from taureau.storage.managed_ledger.api import (
    InitialPosition,
    ManagedCursor,
    ManagedLedger,
    ManagedLedgerFactoryBase,
)
from taureau.storage.position import EARLIEST, Position

PUT, DELETE, INCR, BEGIN, CHUNK, END = 1, 2, 3, 4, 5, 6
SNAPSHOT_EVERY = 10_000  # records between snapshots
CHUNK_BYTES = 1024 * 1024
DEFAULT_MAX_TABLE_BYTES = 64 * 1024 * 1024
_U8, _U16, _U32 = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I")
_I64, _U64 = struct.Struct(">q"), struct.Struct(">Q")


class Cell(NamedTuple):
    value: bytes
    counter: bool  # written by incr (querystate shows it as a number)
    version: int  # writes to the key so far, starting at 0


DELETED = Cell(b"", False, -1)  # a pending delete in the overlay


def ledger_name(fqfn: str) -> str:
    tenant, namespace, name = fqfn.split("/")
    return f"{tenant}/{namespace}/function-state/{name}"


def _key(key: str) -> bytes:
    encoded = key.encode()
    return _U16.pack(len(encoded)) + encoded


def _read_key(data: bytes, at: int) -> tuple[str, int]:
    (klen,) = _U16.unpack_from(data, at)
    return data[at + 2 : at + 2 + klen].decode(), at + 2 + klen


def _cell_bytes(key: str, cell: Cell) -> bytes:
    return (_U8.pack(int(cell.counter)) + _U64.pack(cell.version) + _key(key)
            + _U32.pack(len(cell.value)) + cell.value)


def _read_cell(data: bytes, at: int) -> tuple[str, Cell, int]:
    counter, version = data[at], _U64.unpack_from(data, at + 1)[0]
    key, at = _read_key(data, at + 9)
    (vlen,) = _U32.unpack_from(data, at)
    return key, Cell(data[at + 4 : at + 4 + vlen], bool(counter), version), at + 4 + vlen


def _size(key: str, cell: Cell | None) -> int:
    return 0 if cell is None else len(key.encode()) + len(cell.value)


class StateTable:
    """Owned by the worker; every method runs on its event loop."""

    def __init__(self, ledger: ManagedLedger, cursor: ManagedCursor, max_bytes: int) -> None:
        self._ledger = ledger
        self._cursor = cursor  # its mark-delete position trails the last complete snapshot
        self._max_bytes = max_bytes
        self._table: dict[str, Cell] = {}  # what is durable
        self._overlay: dict[str, tuple[Cell, int]] = {}  # key -> (latest cell, adds in flight)
        self._bytes = 0  # size of keys + values in _table
        self._since_snapshot = 0
        self._snapshot_id = 0
        self._broken: Exception | None = None  # a failed add: the table must be reopened

    @classmethod
    async def open(cls, factory: ManagedLedgerFactoryBase, fqfn: str,
                   max_bytes: int = DEFAULT_MAX_TABLE_BYTES) -> StateTable:
        ledger = await factory.open(ledger_name(fqfn))
        cursor = await ledger.open_cursor("snapshot", InitialPosition.EARLIEST)
        table = cls(ledger, cursor, max_bytes)
        await table._recover()
        return table

    async def close(self) -> None:
        await self._ledger.close()

    # -- reads (what is durable) ------------------------------------------------------------

    def cell(self, key: str) -> Cell | None:
        return self._table.get(check_key(key))

    def get(self, key: str) -> bytes | None:
        cell = self._table.get(check_key(key))
        return cell.value if cell is not None else None

    def get_counter(self, key: str) -> int:
        cell = self._table.get(check_key(key))
        return decode_counter(key, cell.value) if cell is not None else 0

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._table if k.startswith(prefix))

    def __len__(self) -> int:
        return len(self._table)

    # -- writes ------------------------------------------------------------------------------

    async def put(self, key: str, value: bytes) -> None:
        key, value = check_key(key), check_value(value)
        await self._append(key, Cell(value, False, self._next_version(key)), bytes([PUT]) + _key(key)
                           + _U32.pack(len(value)) + value)

    async def set_counter(self, key: str, value: int) -> None:
        """putstate with a numberValue: the counter becomes `value` (an incr by the difference)."""
        current = self._latest(check_key(key))
        old = decode_counter(key, current.value) if current is not None and current.counter else 0
        await self.incr(key, int(value) - old)

    async def delete(self, key: str) -> None:
        key = check_key(key)
        if self._latest(key) is None:
            raise StateKeyNotFoundError(f"no state for key {key!r}")
        await self._append(key, DELETED, bytes([DELETE]) + _key(key))

    async def incr(self, key: str, amount: int) -> int:
        key = check_key(key)
        old = self._latest(key)
        value = (decode_counter(key, old.value) if old is not None else 0) + int(amount)
        if not -(2**63) <= value < 2**63:
            raise FunctionStateError(f"counter {key!r} would overflow a signed 64-bit integer")
        cell = Cell(encode_counter(value), True, self._next_version(key))
        await self._append(key, cell, bytes([INCR]) + _key(key) + _I64.pack(int(amount)))
        return value

    def _latest(self, key: str) -> Cell | None:
        pending = self._overlay.get(key)
        if pending is not None:
            return None if pending[0] is DELETED else pending[0]
        return self._table.get(key)

    def _next_version(self, key: str) -> int:
        latest = self._latest(key)
        return latest.version + 1 if latest is not None else 0

    async def _append(self, key: str, cell: Cell, record: bytes) -> None:
        if self._broken is not None:
            raise FunctionStateError(f"state store failed earlier and must be reopened: {self._broken}")
        if cell is not DELETED and self._bytes + _size(key, cell) - _size(key, self._table.get(key)) > self._max_bytes:
            raise FunctionStateError(f"function state is over its budget of {self._max_bytes} bytes")
        # The overlay makes the next op on this key (an incr) see this one before it is durable.
        _, in_flight = self._overlay.get(key, (None, 0))
        self._overlay[key] = (cell, in_flight + 1)
        try:
            await self._ledger.add_entry(record)
        except Exception as exc:
            self._broken = exc
            raise FunctionStateError(f"cannot store function state: {exc}") from None
        latest, in_flight = self._overlay[key]
        if in_flight == 1:
            del self._overlay[key]
        else:
            self._overlay[key] = (latest, in_flight - 1)
        self._apply(key, cell)
        self._since_snapshot += 1
        if self._since_snapshot >= SNAPSHOT_EVERY:
            self._since_snapshot = 0
            asyncio.ensure_future(self._snapshot())

    def _apply(self, key: str, cell: Cell) -> None:
        self._bytes -= _size(key, self._table.pop(key, None))
        if cell is not DELETED:
            self._table[key] = cell
            self._bytes += _size(key, cell)

    # -- snapshots and recovery ---------------------------------------------------------------

    async def _snapshot(self) -> None:
        self._snapshot_id += 1
        sid = self._snapshot_id
        entries = [bytes([BEGIN]) + _U64.pack(sid)]
        chunk: list[bytes] = []
        size = count = 0
        for key in self._table.keys() | self._overlay.keys():  # no await here: one consistent view
            cell = self._latest(key)
            if cell is None:
                continue
            chunk.append(_cell_bytes(key, cell))
            size += len(chunk[-1])
            count += 1
            if size >= CHUNK_BYTES:
                entries.append(bytes([CHUNK]) + _U64.pack(sid) + _U32.pack(len(chunk)) + b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            entries.append(bytes([CHUNK]) + _U64.pack(sid) + _U32.pack(len(chunk)) + b"".join(chunk))
        entries.append(bytes([END]) + _U64.pack(sid) + _U64.pack(count))
        try:
            positions = await self._ledger.add_entries(entries)
            begin = positions[0]
            await self._cursor.mark_delete(Position(begin.ledger_id, begin.entry_id - 1))
        except Exception as exc:  # nothing is lost (the log is whole); adds will fail and say so
            self._broken = self._broken or exc

    async def _recover(self) -> None:
        table: dict[str, Cell] = {}
        staging: dict[str, Cell] | None = None
        staging_id = -1
        start = EARLIEST
        last = self._ledger.last_confirmed
        records = 0
        while True:
            batch = await self._ledger.read_entries(start, 1000)
            if not batch:
                break
            for entry in batch:
                data = entry.data
                kind = data[0]
                if kind == BEGIN:
                    staging, staging_id = {}, _U64.unpack_from(data, 1)[0]
                elif kind == CHUNK and staging is not None and _U64.unpack_from(data, 1)[0] == staging_id:
                    (count,) = _U32.unpack_from(data, 9)
                    at = 13
                    for _ in range(count):
                        key, cell, at = _read_cell(data, at)
                        staging[key] = cell
                elif kind == END and staging is not None and _U64.unpack_from(data, 1)[0] == staging_id:
                    table, staging, records = staging, None, 0
                    self._snapshot_id = max(self._snapshot_id, staging_id)
                elif kind in (PUT, DELETE, INCR):
                    _replay(table, data)
                    records += 1
            if batch[-1].position >= last:
                break
            start = batch[-1].position.next()
        self._table = table
        self._bytes = sum(_size(k, c) for k, c in table.items())
        self._since_snapshot = records


def _replay(table: dict[str, Cell], data: bytes) -> None:
    kind = data[0]
    key, at = _read_key(data, 1)
    old = table.get(key)
    version = old.version + 1 if old is not None else 0
    if kind == PUT:
        (vlen,) = _U32.unpack_from(data, at)
        table[key] = Cell(data[at + 4 : at + 4 + vlen], False, version)
    elif kind == DELETE:
        table.pop(key, None)
    else:
        (amount,) = _I64.unpack_from(data, at)
        value = (decode_counter(key, old.value) if old is not None else 0) + amount
        table[key] = Cell(encode_counter(value), True, version)
