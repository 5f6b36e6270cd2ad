"""The coordination store: versioned key/value tree with watches and ephemeral nodes."""

from taureau.metadata.store import MetadataStore, Stat, WatchEvent

__all__ = ["MetadataStore", "Stat", "WatchEvent"]
