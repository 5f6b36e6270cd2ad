"""The coordination store: versioned key/value tree with watches and ephemeral nodes."""

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.metadata.factory import check_metadata_url, open_metadata_store
from taureau.metadata.store import MetadataStore, Stat, WatchEvent
from taureau.metadata.zk_url import InvalidMetadataStoreUrlError

__all__ = [
    "EmbeddedMetadataStore",
    "InvalidMetadataStoreUrlError",
    "MetadataStore",
    "Stat",
    "WatchEvent",
    "check_metadata_url",
    "open_metadata_store",
]
