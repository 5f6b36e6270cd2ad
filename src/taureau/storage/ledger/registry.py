"""Which bookies are up: each `taureau bookie` holds an ephemeral node under /bookies/available.

The node is bound to the bookie's metadata session, so a bookie that dies (or whose session
expires) leaves the list by itself; new ledgers choose their ensembles from that list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from taureau.common.errors import NodeExistsError, StorageError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.remote import parse_address

log = logging.getLogger(__name__)

AVAILABLE = "/bookies/available"


async def register_bookie(
    store: MetadataStore, bookie_id: str, info: dict[str, object], *, wait_s: float = 30.0
) -> None:
    """Add `bookie_id` to the available bookies for the life of `store`'s session.

    A node left by this bookie's previous process stays until that session expires; wait
    for it up to `wait_s` (StorageError after: another live process uses this id).
    """
    path = f"{AVAILABLE}/{bookie_id}"
    body = json.dumps({**info, "registered_ms": int(time.time() * 1000)}).encode()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await store.put(path, body, -1, ephemeral=True)
            return
        except NodeExistsError:
            if time.monotonic() >= deadline:
                raise StorageError(
                    f"bookie {bookie_id} is registered by another live process (its node {path} "
                    f"did not go away within {wait_s:g}s)"
                ) from None
            await asyncio.sleep(0.5)


async def available_bookies(store: MetadataStore) -> list[str]:
    """The registered bookie ids that are addresses (anything else under the path is skipped)."""
    found = []
    for name in await store.children(AVAILABLE):
        try:
            parse_address(name)
        except ValueError:
            log.warning("ignoring %s/%s: not a bookie address", AVAILABLE, name)
            continue
        found.append(name)
    return found
