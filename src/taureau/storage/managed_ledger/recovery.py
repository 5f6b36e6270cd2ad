"""Recovery of a managed ledger's chain on open: read (or create) its record, seal the last ledger."""

from __future__ import annotations

import logging
import time

from taureau.common.errors import ManagedLedgerFencedError, NodeExistsError, NoSuchLedgerError, StorageError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.api import LedgerClient
from taureau.storage.managed_ledger import meta

log = logging.getLogger(__name__)


async def load_chain(
    store: MetadataStore, client: LedgerClient, name: str
) -> tuple[list[meta.LedgerInfo], int]:
    """The ledger chain of `name` and the version of its record, ready for a new current ledger.

    The last ledger, left OPEN by an owner that crashed (or still runs), is opened with
    recovery: fenced, so the old owner can add nothing more, and sealed at its last
    durable entry, whose count is read back from the ledger (the record only had a hint).
    An empty last ledger is dropped and deleted.
    """
    path = meta.ledger_path(name)
    found = await store.get(path)
    if found is None:
        try:
            stat = await store.put(path, meta.encode_ledger_info([]), -1)
        except NodeExistsError:
            raise ManagedLedgerFencedError(f"managed ledger {name} was created concurrently") from None
        return [], stat.version
    infos, version = meta.decode_ledger_info(found[0]), found[1].version
    if infos:
        last = infos[-1]
        try:
            handle = await client.open_ledger(last.ledger_id, recovery=True)
        except NoSuchLedgerError:
            last.entries = 0  # listed but gone: nothing acknowledged can be in it
        else:
            last.entries = handle.last_add_confirmed + 1
            last.size = handle.length
            await handle.close()
        last.timestamp_ms = int(time.time() * 1000)
        if last.entries == 0:
            infos.pop()
            await delete_ledger_quietly(client, last.ledger_id, name)
    return infos, version


async def delete_ledger_quietly(client: LedgerClient, ledger_id: int, name: str) -> None:
    """Delete a ledger; a failure only leaks it (logged), it never fails the caller."""
    try:
        await client.delete_ledger(ledger_id)
    except NoSuchLedgerError:
        pass
    except StorageError as exc:
        log.warning("managed ledger %s: could not delete ledger %d: %r", name, ledger_id, exc)
