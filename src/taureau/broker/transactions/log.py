"""TxnLog: the coordinator's durable state, one metadata-store record per unended transaction.

Every change a client is answered for (a transaction opened, a partition or subscription added,
an acknowledgement held, a commit or abort decided) is written here before the answer, so a
restarted broker finds every transaction it promised. A record is deleted once its transaction
has ended and everything it decided has taken effect.

Transaction ids come from a counter kept in blocks: a block of ids is reserved (one write)
before any of it is handed out, so a restart never reuses an id; it may skip the rest of a block.
"""

from __future__ import annotations

import asyncio
import json

from taureau.broker.transactions.model import TxnId, TxnMeta
from taureau.common.errors import NotFoundError
from taureau.metadata.store import MetadataStore

ROOT = "/transactions"
ID_BLOCK = 1000


class TxnLog:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self._next = 0  # next id to hand out
        self._reserved = 0  # ids below this are reserved in the store
        self._reserving = asyncio.Lock()  # one block reservation at a time: no id handed out twice

    @staticmethod
    def _path(txn: TxnId) -> str:
        return f"{ROOT}/txns/{txn.most}/{txn.least}"

    async def next_id(self, tc_id: int) -> TxnId:
        async with self._reserving:
            if self._next >= self._reserved:
                found = await self.store.get(f"{ROOT}/next-id")
                start = max(self._next, int(json.loads(found[0])) if found else 1)  # ids start at 1
                await self.store.put(f"{ROOT}/next-id", json.dumps(start + ID_BLOCK).encode())
                self._next, self._reserved = start, start + ID_BLOCK
            least = self._next
            self._next += 1
        return TxnId(tc_id, least)

    async def save(self, meta: TxnMeta) -> None:
        await self.store.put(self._path(meta.txn), meta.to_json())

    async def remove(self, txn: TxnId) -> None:
        try:
            await self.store.delete(self._path(txn))
        except NotFoundError:
            pass

    async def load_all(self) -> list[TxnMeta]:
        found = []
        for most in await self.store.children(f"{ROOT}/txns"):
            for least in await self.store.children(f"{ROOT}/txns/{most}"):
                txn = TxnId(int(most), int(least))
                record = await self.store.get(self._path(txn))
                if record is not None:
                    found.append(TxnMeta.from_json(txn, record[0]))
        return found
