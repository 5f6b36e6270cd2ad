"""Real bookies (on CrashFiles, so a test can fill a disk) and a real metadata store."""

from __future__ import annotations

import pytest

from taureau.metadata import EmbeddedMetadataStore
from taureau.storage.bookie import Bookie
from taureau.storage.ledger import BookKeeperClient
from taureau.testing.crash_files import CrashFiles


class Cluster:
    def __init__(self, n: int, ids: list[str] | None = None) -> None:
        self.store = EmbeddedMetadataStore()
        self.files = {bookie_id: CrashFiles(seed=i) for i, bookie_id in enumerate(ids or [f"bookie-{i}" for i in range(n)])}
        self.bookies: dict[str, Bookie] = {}

    async def start(self) -> Cluster:
        for bookie_id, files in self.files.items():
            bookie = Bookie(f"/data/{bookie_id}", files=files, checkpoint_interval_s=None)
            await bookie.start()
            self.bookies[bookie_id] = bookie
        return self

    def client(self) -> BookKeeperClient:
        return BookKeeperClient(self.store, self.bookies)


@pytest.fixture
def cluster_of():
    async def make(n: int) -> Cluster:
        return await Cluster(n).start()

    return make
