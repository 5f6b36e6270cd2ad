"""Dumps that belong to a structure: written with DUMP's `owner`, deleted when that structure
leaves the namespace (removed, or reclaimed when its lease expires), so a client that dies
leaves no dump behind once its lease is over (an analytics driver's spills).

Each owned dump has a catalog record (dest, owner's struct id), written after the file and
deleted after it: a crash in between leaves a record whose file is gone (harmless) or a file
with its record (deleted on restart if its owner is gone by then)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from taureau.common import errors
from taureau.state.catalog import Catalog
from taureau.state.persist import Backings

log = logging.getLogger(__name__)


class OwnedDumps:
    def __init__(self, catalog: Catalog, backings: Backings) -> None:
        self.catalog = catalog
        self.backings = backings
        self._by_owner: dict[int, set[str]] = {}
        self._record: dict[str, tuple[int, int]] = {}  # dest -> (record number, owner id)

    async def restore(self, records: dict[int, dict[str, Any]], live: set[int]) -> None:
        """Index the catalog's records; dumps whose owner did not survive go now."""
        for n, rec in sorted(records.items()):
            dest, owner = rec.get("dest"), rec.get("owner")
            if not isinstance(dest, str) or not isinstance(owner, int):
                await self.catalog.delete_dump_owner(n)
                continue
            self._index(dest, n, owner)
        await self.owners_gone(set(self._by_owner) - live)

    async def add(self, dest: str, owner: int) -> None:
        """`dest` (just written) goes with structure `owner` from now on."""
        await self.forget(dest)  # written again: the newest owner counts
        n = await self.catalog.save_dump_owner(dest, owner)
        self._index(dest, n, owner)

    async def forget(self, dest: str) -> None:
        """`dest` is no longer owned (deleted by its client, or rewritten without an owner)."""
        found = self._record.pop(dest, None)
        if found is None:
            return
        n, owner = found
        dests = self._by_owner.get(owner)
        if dests is not None:
            dests.discard(dest)
            if not dests:
                del self._by_owner[owner]
        await self.catalog.delete_dump_owner(n)

    async def owners_gone(self, owners: set[int]) -> int:
        """Delete the dumps of structures that left the namespace; returns how many."""
        deleted = 0
        for owner in owners & set(self._by_owner):
            for dest in sorted(self._by_owner[owner]):
                try:
                    await asyncio.to_thread(self.backings.delete, dest)
                    deleted += 1
                    log.info("deleted %s: its owner structure %d is gone", dest, owner)
                except errors.BackingStoreError as e:  # gone already, or replaced by a non-dump
                    log.warning("owned dump %s not deleted: %s", dest, e)
                await self.forget(dest)
        return deleted

    def _index(self, dest: str, n: int, owner: int) -> None:
        self._record[dest] = (n, owner)
        self._by_owner.setdefault(owner, set()).add(dest)
