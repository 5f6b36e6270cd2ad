"""Function packages shared by the workers of a cluster: each stored once, by content hash, as
a ledger on the bookies (as Pulsar keeps packages in BookKeeper), its ledger id in the
metadata node `/functions/packages/<sha>`. The worker that receives a create or update stores
it; a worker assigned the function fetches it into its own local store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

from taureau.common.errors import NodeExistsError, NotFoundError, TaureauError
from taureau.functions.cluster.paths import PACKAGES
from taureau.functions.errors import FunctionCodeError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger.api import LedgerClient

log = logging.getLogger("taureau.functions.cluster.packages")

CHUNK_BYTES = 1024 * 1024
READ_CHUNKS = 4  # entries per read: 4 MiB, under the bookie's 8 MiB answer


class SharedPackages:
    def __init__(self, store: MetadataStore, ledgers: LedgerClient, quorum: tuple[int, int, int]) -> None:
        self._store = store
        self._ledgers = ledgers
        self._quorum = quorum

    async def publish(self, sha: str, data: bytes) -> None:
        """Store `data` (whose sha256 is `sha`) unless it is stored already."""
        path = f"{PACKAGES}/{sha}"
        if await self._store.exists(path) is not None:
            return
        e, w, a = self._quorum
        handle = await self._ledgers.create_ledger(e, w, a, custom={"application": "function-package"})
        chunks = [data[i:i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
        try:
            for i in range(0, len(chunks), READ_CHUNKS):
                await handle.add_entries(chunks[i:i + READ_CHUNKS])
            await handle.close()
            record = {"ledgerId": handle.ledger_id, "size": len(data), "chunks": len(chunks)}
            await self._store.put(path, json.dumps(record).encode(), -1)
        except NodeExistsError:  # another worker stored the same package meanwhile
            await self._ledgers.delete_ledger(handle.ledger_id)
        except BaseException:
            await self._ledgers.delete_ledger(handle.ledger_id)
            raise

    async def fetch(self, sha: str) -> bytes:
        found = await self._store.get(f"{PACKAGES}/{sha}")
        if found is None:
            raise FunctionCodeError(f"package {sha[:12]} is not in the cluster's package store")
        try:
            record = json.loads(found[0])
            ledger_id, size, count = int(record["ledgerId"]), int(record["size"]), int(record["chunks"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FunctionCodeError(f"package {sha[:12]}: unreadable record ({exc})") from None
        parts: list[bytes] = []
        try:
            handle = await self._ledgers.open_ledger(ledger_id, recovery=False)
            try:
                for first in range(0, count, READ_CHUNKS):
                    parts += await handle.read_entries(first, min(first + READ_CHUNKS, count) - 1)
            finally:
                await handle.close()
        except TaureauError as exc:
            raise FunctionCodeError(f"package {sha[:12]}: cannot read ledger {ledger_id}: {exc}") from None
        data = b"".join(parts)
        # Hashing up to 256 MiB takes a while: not on the event loop.
        if len(data) != size or (await asyncio.to_thread(hashlib.sha256, data)).hexdigest() != sha:
            raise FunctionCodeError(f"package {sha[:12]}: the stored copy does not match its hash")
        return data

    async def remove(self, sha: str) -> None:
        path = f"{PACKAGES}/{sha}"
        found = await self._store.get(path)
        if found is None:
            return
        try:
            await self._store.delete(path, found[1].version)
            ledger_id = int(json.loads(found[0])["ledgerId"])
        except (NotFoundError, ValueError, KeyError, TypeError):
            return
        try:
            await self._ledgers.delete_ledger(ledger_id)
        except Exception as exc:  # the node is gone: at worst a ledger is left on the bookies
            log.warning("package %s: cannot delete ledger %d: %s", sha[:12], ledger_id, exc)
