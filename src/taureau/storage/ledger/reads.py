"""Read one stored entry from the bookies of its write set, trying each in turn."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from taureau.common.bytes_like import Bytes, Parts
from taureau.common.errors import NoSuchEntryError, NoSuchLedgerError, StorageError
from taureau.storage.ledger.api import LedgerMetadata
from taureau.storage.ledger.format import write_set

log = logging.getLogger(__name__)


class BookieClient(Protocol):
    """What the ledger client needs from a bookie (an in-process Bookie fits as it is)."""

    # An entry may come as parts (a tuple): the bookie stores their concatenation.
    async def add_entry(
        self, ledger_id: int, entry_id: int, data: Bytes | Parts, *, recovery_add: bool = False
    ) -> None: ...

    async def add_entries(
        self, ledger_id: int, first_entry_id: int, datas: Sequence[Bytes | Parts], *, recovery_add: bool = False
    ) -> None: ...

    async def read_entry(self, ledger_id: int, entry_id: int) -> bytes: ...

    async def read_entries(self, ledger_id: int, first: int, last: int) -> list[bytes]:
        """first..last as the bookie holds them; may stop early (a gap, a size limit)."""
        ...

    async def read_last_entry_id(self, ledger_id: int) -> int: ...

    async def fence(self, ledger_id: int) -> int: ...

    async def delete_ledger(self, ledger_id: int) -> None: ...


async def read_stored(
    bookies: Mapping[str, BookieClient], md: LedgerMetadata, entry_id: int
) -> tuple[bytes | None, int]:
    """(stored bytes or None, how many bookies of the write set said it is absent).

    Raises the last StorageError if no bookie answered either way.
    """
    absent = 0
    last_error: StorageError | None = None
    for bookie_id in write_set(md, entry_id):
        bookie = bookies.get(bookie_id)
        if bookie is None:
            last_error = StorageError(f"bookie {bookie_id} of ledger {md.ledger_id} is not available")
            continue
        try:
            return await bookie.read_entry(md.ledger_id, entry_id), absent
        except (NoSuchEntryError, NoSuchLedgerError):
            absent += 1
        except StorageError as exc:
            log.warning("read %d:%d from %s failed: %s", md.ledger_id, entry_id, bookie_id, exc)
            last_error = exc
    if absent == 0 and last_error is not None:
        raise last_error
    return None, absent
