"""Open the metadata store a URL names: embedded (file-backed) by default, ZooKeeper later."""

from __future__ import annotations

import os

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.metadata.store import MetadataStore


class ZooKeeperNotAvailableError(NotImplementedError):
    """zk:// URLs are reserved for the ZooKeeper backend (kazoo), which is not built yet."""


async def open_metadata_store(
    url: str | None, data_dir: str | os.PathLike[str] | None, *, fsync: bool = True
) -> MetadataStore:
    """Open the store `url` names.

    None / "embedded" / "embedded://": file-backed under `data_dir`/metadata (in memory
    when data_dir is None). "memory" / "memory://": in memory only. "zk://host:port[,...]":
    ZooKeeper, not available yet (ZooKeeperNotAvailableError).

    >>> store = await open_metadata_store(None, "/var/lib/taureau")
    """
    scheme = "embedded" if url is None else url.split("://", 1)[0].strip().lower()
    if scheme == "embedded" and url in (None, "embedded", "embedded://"):
        if data_dir is None:
            return EmbeddedMetadataStore(None, fsync)
        return EmbeddedMetadataStore(os.path.join(os.fspath(data_dir), "metadata"), fsync)
    if scheme == "memory" and url in ("memory", "memory://"):
        return EmbeddedMetadataStore(None, fsync)
    if scheme == "zk":
        # Place for the ZooKeeper backend (kazoo): taureau.metadata.zookeeper.ZooKeeperMetadataStore.
        raise ZooKeeperNotAvailableError(
            f"metadata store {url!r}: the ZooKeeper backend is not implemented yet; use 'embedded'"
        )
    raise ValueError(
        f"unknown metadata store URL {url!r} (expected 'embedded', 'memory' or 'zk://host:port')"
    )
