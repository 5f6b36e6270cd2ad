"""Open the metadata store a URL names: embedded (file-backed) by default, or ZooKeeper."""

from __future__ import annotations

import os

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.metadata.store import MetadataStore
from taureau.metadata.zk_url import InvalidMetadataStoreUrlError, parse_zk_url


def check_metadata_url(url: str | None) -> str | None:
    """Return `url` if it names a store this build opens (InvalidMetadataStoreUrlError if
    not): the CLI checks it before anything connects."""
    if url is None or url in ("embedded", "embedded://", "memory", "memory://"):
        return url
    if url.split("://", 1)[0].strip().lower() == "zk":
        parse_zk_url(url)
        return url
    raise InvalidMetadataStoreUrlError(
        f"unknown metadata store URL {url!r} (expected 'embedded', 'memory' or 'zk://host:port[/chroot]')"
    )


async def open_metadata_store(
    url: str | None,
    data_dir: str | os.PathLike[str] | None,
    *,
    fsync: bool = True,
    session_timeout_s: float = 10.0,
) -> MetadataStore:
    """Open the store `url` names.

    None / "embedded" / "embedded://": file-backed under `data_dir`/metadata (in memory
    when data_dir is None). "memory" / "memory://": in memory only.
    "zk://host:port[,host:port...][/chroot]": a ZooKeeper ensemble (MetadataConnectionError
    if none of its servers answers), with a session of session_timeout_s.

    >>> store = await open_metadata_store(None, "/var/lib/taureau")
    """
    check_metadata_url(url)
    if url is None or url.startswith("embedded"):
        if data_dir is None:
            return EmbeddedMetadataStore(None, fsync)
        return EmbeddedMetadataStore(os.path.join(os.fspath(data_dir), "metadata"), fsync)
    if url.startswith("memory"):
        return EmbeddedMetadataStore(None, fsync)
    from taureau.metadata.zookeeper import ZooKeeperMetadataStore  # kazoo only when asked for

    return await ZooKeeperMetadataStore.open(url, session_timeout_s=session_timeout_s)
