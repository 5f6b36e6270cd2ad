"""Claim an ephemeral node: a registration or an exclusive role held for a session's life."""

from __future__ import annotations

import asyncio
import time

from taureau.common.errors import MetadataError, NodeExistsError
from taureau.metadata.store import MetadataStore


class ClaimTakenError(MetadataError):
    """Another live session holds the node (its holder is named in the message)."""


async def claim_ephemeral(
    store: MetadataStore, path: str, value: bytes, *, wait_s: float = 30.0, what: str = "it"
) -> None:
    """Create `path` as an ephemeral node of `store`'s session.

    A node left by a process that died stays until its session expires, so a restart waits
    up to `wait_s` for it to go; ClaimTakenError after that (a live process holds it).
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await store.put(path, value, -1, ephemeral=True)
            return
        except NodeExistsError:
            if time.monotonic() >= deadline:
                found = await store.get(path)
                holder = found[0].decode(errors="replace")[:200] if found else "a process now gone"
                raise ClaimTakenError(
                    f"{what} is held by another live process ({path}: {holder}); it did not go away "
                    f"within {wait_s:g}s"
                ) from None
            await asyncio.sleep(0.5)
