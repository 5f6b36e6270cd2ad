"""BookKeeperClient: the LedgerClient over a metadata store and a set of bookies."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping

from taureau.common.errors import (
    BadVersionError,
    NodeExistsError,
    NoSuchLedgerError,
    NotEnoughBookiesError,
    StorageError,
)
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger.api import (
    LedgerClient,
    LedgerHandle,
    LedgerMetadata,
    LedgerState,
    check_create_args,
)
from taureau.storage.ledger.handle import ReadHandle, WriteHandle
from taureau.storage.ledger.reads import BookieClient, read_stored
from taureau.storage.ledger.recovery import piggybacked_lac, recover_ledger

log = logging.getLogger(__name__)

_CAS_RETRIES = 20


class BookKeeperClient(LedgerClient):
    """Ledgers over `bookies` (bookie id -> BookieClient), metadata in `metadata`.

    >>> client = BookKeeperClient(store, {"bookie-0": bookie})
    >>> ledger = await client.create_ledger()
    >>> await ledger.add_entry(b"hello")
    0
    """

    def __init__(self, metadata: MetadataStore, bookies: Mapping[str, BookieClient]) -> None:
        self._store = metadata
        self.bookies: dict[str, BookieClient] = dict(bookies)  # bookie id -> bookie; shared with handles
        self._next_ensemble_start = 0  # rotates ensembles over the bookies
        self._writers: weakref.WeakSet[WriteHandle] = weakref.WeakSet()  # handles to close with the client
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("ledger client is closed")

    async def _next_ledger_id(self) -> int:
        for _ in range(_CAS_RETRIES):
            found = await self._store.get(fmt.LEDGER_ID_COUNTER_PATH)
            try:
                if found is None:
                    await self._store.put(fmt.LEDGER_ID_COUNTER_PATH, b"1", -1)
                    return 0
                value = int(found[0])
                await self._store.put(fmt.LEDGER_ID_COUNTER_PATH, str(value + 1).encode(), found[1].version)
                return value
            except (BadVersionError, NodeExistsError):
                continue  # another client took an id at the same time
        raise StorageError("could not allocate a ledger id: the counter kept changing")

    def _candidates(self) -> list[str]:
        """The bookies a new ledger's ensemble may use, in a stable order."""
        return sorted(self.bookies)

    async def available_bookies(self) -> int:
        return len(self._candidates())

    def _spare(self, exclude: set[str]) -> str | None:
        """A bookie that can replace a failed one: a candidate not in `exclude`."""
        return next((b for b in self._candidates() if b not in exclude), None)

    def _choose_ensemble(self, size: int) -> list[str]:
        ids = self._candidates()
        if size > len(ids):
            raise NotEnoughBookiesError(
                f"ensemble of {size} needs more bookies than the {len(ids)} available"
            )
        start = self._next_ensemble_start % len(ids)
        self._next_ensemble_start += 1
        return [ids[(start + i) % len(ids)] for i in range(size)]

    async def create_ledger(
        self,
        ensemble_size: int = 1,
        write_quorum: int = 1,
        ack_quorum: int = 1,
        custom: dict[str, str] | None = None,
    ) -> LedgerHandle:
        self._check_open()
        check_create_args(ensemble_size, write_quorum, ack_quorum, custom)
        ensemble = self._choose_ensemble(ensemble_size)
        ledger_id = await self._next_ledger_id()
        md = LedgerMetadata(
            ledger_id,
            ensemble,
            write_quorum,
            ack_quorum,
            created_ms=int(time.time() * 1000),
            custom=dict(custom or {}),
        )
        stat = await self._store.put(fmt.ledger_path(ledger_id), fmt.encode_metadata(md), -1)
        handle = WriteHandle(self.bookies, md, self._store, stat.version, spare=self._spare)
        self._writers.add(handle)
        return handle

    async def _read_metadata(self, ledger_id: int) -> tuple[LedgerMetadata, int]:
        if type(ledger_id) is not int or ledger_id < 0:
            raise ValueError(f"ledger id must be an int >= 0, not {ledger_id!r}")
        found = await self._store.get(fmt.ledger_path(ledger_id))
        if found is None:
            raise NoSuchLedgerError(f"ledger {ledger_id} does not exist")
        md = fmt.decode_metadata(found[0])
        self._reach(md.all_bookies())
        return md, found[1].version

    def _reach(self, bookie_ids: list[str]) -> None:
        """Make sure the bookies of a ledger can be talked to (a client of fixed, local
        bookies has them all already)."""

    async def get_metadata(self, ledger_id: int) -> LedgerMetadata:
        self._check_open()
        return (await self._read_metadata(ledger_id))[0]

    async def open_ledger(self, ledger_id: int, recovery: bool = True) -> LedgerHandle:
        """Open read-only. With recovery an OPEN ledger is fenced, recovered and closed;
        without, an OPEN ledger is read up to the LAC its writer last piggybacked."""
        self._check_open()
        for _ in range(_CAS_RETRIES):
            md, version = await self._read_metadata(ledger_id)
            if md.state is LedgerState.CLOSED:
                return ReadHandle(self.bookies, md, md.last_entry_id, md.length)
            if not recovery:
                return await self._open_no_recovery(md)
            try:
                md = await recover_ledger(self._store, self.bookies, md, version, spare=self._spare)
            except BadVersionError:
                continue  # the metadata moved under us: look again
            return ReadHandle(self.bookies, md, md.last_entry_id, md.length)
        raise StorageError(f"ledger {ledger_id}: metadata kept changing during recovery")

    async def _open_no_recovery(self, md: LedgerMetadata) -> ReadHandle:
        last_ids = {}
        for bookie_id in dict.fromkeys(md.ensemble):
            bookie = self.bookies.get(bookie_id)
            if bookie is not None:
                try:
                    last_ids[bookie_id] = await bookie.read_last_entry_id(md.ledger_id)
                except StorageError as exc:
                    log.warning("ledger %d: %s did not say its last entry: %s", md.ledger_id, bookie_id, exc)
        lac = await piggybacked_lac(self.bookies, md, last_ids)
        length = 0
        if lac >= 0:
            stored, _ = await read_stored(self.bookies, md, lac)
            length = 0 if stored is None else fmt.decode_entry(stored)[1]
        return ReadHandle(self.bookies, md, lac, length)

    async def delete_ledger(self, ledger_id: int) -> None:
        """Remove the metadata, then the entries on every bookie of the ensemble."""
        self._check_open()
        md, version = await self._read_metadata(ledger_id)
        await self._store.delete(fmt.ledger_path(ledger_id), version)
        for bookie_id in md.all_bookies():
            bookie = self.bookies.get(bookie_id)
            if bookie is None:
                continue
            try:
                await bookie.delete_ledger(ledger_id)
            except StorageError as exc:
                # The metadata is gone, so the ledger is; the space on that bookie leaks.
                log.warning("ledger %d: delete on %s failed: %s", ledger_id, bookie_id, exc)

    def prometheus_lines(self) -> list[str]:
        """Metrics of the bookies this client runs in its own process; none for remote ones."""
        return []

    async def close(self) -> None:
        """Close the ledgers this client is writing (each is sealed at its LAC)."""
        if self._closed:
            return
        for handle in list(self._writers):
            if not handle.is_closed:
                try:
                    await handle.close()
                except StorageError as exc:
                    log.warning("closing ledger %d failed: %s", handle.ledger_id, exc)
        self._writers.clear()
        self._closed = True


__all__ = ["BookKeeperClient", "BookieClient"]
