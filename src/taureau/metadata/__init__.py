"""The coordination store: versioned key/value tree with watches and ephemeral nodes."""

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.metadata.factory import ZooKeeperNotAvailableError, open_metadata_store
from taureau.metadata.store import MetadataStore, Stat, WatchEvent

__all__ = [
    "EmbeddedMetadataStore",
    "MetadataStore",
    "Stat",
    "WatchEvent",
    "ZooKeeperNotAvailableError",
    "open_metadata_store",
]
