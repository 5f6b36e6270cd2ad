"""Which bookies are up: each `taureau bookie` holds an ephemeral node under /bookies/available.

The node is bound to the bookie's metadata session, so a bookie that dies (or whose session
expires) leaves the list by itself; new ledgers choose their ensembles from that list.
"""

from __future__ import annotations

import json
import logging
import time

from taureau.metadata.claims import claim_ephemeral
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.remote import parse_address

log = logging.getLogger(__name__)

AVAILABLE = "/bookies/available"


async def register_bookie(
    store: MetadataStore, bookie_id: str, info: dict[str, object], *, wait_s: float = 30.0
) -> None:
    """Add `bookie_id` to the available bookies for the life of `store`'s session (waits up
    to `wait_s` for the node of this bookie's previous process to expire)."""
    body = json.dumps({**info, "registered_ms": int(time.time() * 1000)}).encode()
    await claim_ephemeral(store, f"{AVAILABLE}/{bookie_id}", body, wait_s=wait_s, what=f"bookie id {bookie_id}")


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
