"""LocalLedgerClient: a BookKeeperClient that owns N in-process bookies (what standalone runs)."""

from __future__ import annotations

import os

from taureau.metadata.store import MetadataStore
from taureau.storage.bookie import Bookie
from taureau.storage.ledger.client import BookKeeperClient


class LocalLedgerClient(BookKeeperClient):
    """Closing it closes its ledgers, then its bookies."""

    def __init__(self, metadata: MetadataStore, bookies: dict[str, Bookie]) -> None:
        super().__init__(metadata, bookies)
        self.local_bookies = bookies  # bookie id -> Bookie, owned: started and closed here

    def prometheus_lines(self) -> list[str]:
        """Each bookie's journal: fsync rounds; adds from hand-over to delivered durable, and
        two legs of that (the wait for the journal's thread, the wait for the loop)."""
        lines: list[str] = []
        for series, of in (
            ("taureau_journal_sync_seconds", lambda b: b.journal_sync_seconds),
            ("taureau_journal_add_seconds", lambda b: b.journal_add_seconds),
            ("taureau_journal_inbox_seconds", lambda b: b.journal_inbox_seconds),
            ("taureau_journal_hand_back_seconds", lambda b: b.journal_hand_back_seconds),
        ):
            lines.append(f"# TYPE {series} histogram")
            for bookie_id, bookie in self.local_bookies.items():
                lines += of(bookie).lines(series, f'bookie="{bookie_id}"')
        return lines

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            for bookie in self.local_bookies.values():
                await bookie.close()


async def open_local_ledger_client(
    data_dir: str | os.PathLike[str],
    metadata: MetadataStore,
    *,
    num_bookies: int = 1,
    journal_fsync: bool = True,
) -> LocalLedgerClient:
    """Start `num_bookies` bookies under data_dir/bookie-<i> and a client over them.

    >>> client = await open_local_ledger_client("/var/lib/taureau", store)
    """
    if type(num_bookies) is not int or num_bookies < 1:
        raise ValueError(f"num_bookies must be an int >= 1, not {num_bookies!r}")
    bookies: dict[str, Bookie] = {}
    try:
        for i in range(num_bookies):
            bookie = Bookie(os.path.join(os.fspath(data_dir), f"bookie-{i}"), journal_fsync=journal_fsync)
            await bookie.start()
            bookies[f"bookie-{i}"] = bookie
    except BaseException:
        for bookie in bookies.values():
            await bookie.close()
        raise
    return LocalLedgerClient(metadata, bookies)
