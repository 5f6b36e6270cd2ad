"""Where a topic's publish-time validation starts: entries before it get checked at dispatch.

Every SEND is validated before it is stored (protocol.validate), so dispatch only reads the
metadata of an entry. Entries stored before this broker validated anything (an older
version, or a tool writing below the broker) were never checked, and one bad batch among
them crashes every consumer's client. The first time a broker loads a topic it records the
topic's last entry in the metadata store; dispatch runs the full check on entries at or
before that mark only, so the cost falls on the old backlog alone.
"""

from __future__ import annotations

import json

from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import ManagedLedger
from taureau.storage.position import EARLIEST, Position

ROOT = "/validated"


def _path(ledger: ManagedLedger) -> str:
    return f"{ROOT}/{ledger.name}"


async def load_unchecked_until(store: MetadataStore, ledger: ManagedLedger) -> Position:
    """The last position stored without validation (EARLIEST when there is none)."""
    found = await store.get(_path(ledger))
    if found is not None:
        return Position(*json.loads(found[0])["until"])
    last = ledger.last_confirmed if ledger.entries_count else EARLIEST
    await store.put(_path(ledger), json.dumps({"until": list(last)}).encode())
    return last


async def forget(store: MetadataStore, ledger: ManagedLedger) -> None:
    await store.delete_recursive(_path(ledger))
