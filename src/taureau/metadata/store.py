"""The MetadataStore interface: what every coordination backend (embedded, ZooKeeper) offers.

Paths are ZooKeeper-style (`/admin/tenants/public`). Values are bytes. Every node has a
version that starts at 0 on create and grows by one on each put; compare-and-set passes the
version it read. An ephemeral node belongs to the store's session and vanishes when that
session ends (process exit for the embedded store, session expiry for ZooKeeper).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from taureau.common.bytes_like import BYTES_LIKE
from taureau.common.errors import MetadataValueTooLargeError
from taureau.metadata.paths import check_path


@dataclass(frozen=True, slots=True)
class Stat:
    version: int  # 0 after create, +1 per put
    created_ms: int
    modified_ms: int
    ephemeral: bool = False


class WatchEvent(Enum):
    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"
    CHILDREN_CHANGED = "children_changed"
    # The store's session ended (ZooKeeper session expiry): this watch is gone, so are the
    # session's ephemeral nodes, and every later call raises SessionExpiredError.
    SESSION_EXPIRED = "session_expired"


def check_put(path: str, value: object, expected_version: int | None, max_value_bytes: int) -> None:
    """What every store refuses before it changes anything: a bad path, a value that is not
    bytes or is over the record limit, an expected_version that is not None, -1 or >= 0."""
    check_path(path)
    if not isinstance(value, BYTES_LIKE):
        raise TypeError(f"metadata value must be bytes, not {type(value).__name__}")
    if len(value) > max_value_bytes:
        raise MetadataValueTooLargeError(
            f"{path}: a value of {len(value)} bytes exceeds the {max_value_bytes} a record may hold"
        )
    if expected_version is not None and (type(expected_version) is not int or expected_version < -1):
        raise ValueError(f"expected_version must be None, -1 or >= 0, not {expected_version!r}")


# A watch callback gets (event, path). It runs on the store's event loop and must not block.
WatchCallback = Callable[[WatchEvent, str], None]


class MetadataStore(abc.ABC):
    """Versioned get / put / compare-and-set / delete / children / watch."""

    @abc.abstractmethod
    async def get(self, path: str) -> tuple[bytes, Stat] | None:
        """Return (value, stat), or None if the path does not exist."""

    @abc.abstractmethod
    async def put(
        self,
        path: str,
        value: bytes,
        expected_version: int | None = None,
        *,
        ephemeral: bool = False,
    ) -> Stat:
        """Create or update `path`; missing parents are created (empty, persistent).

        expected_version None: unconditional. -1: the node must not exist (else
        NodeExistsError). N >= 0: the node must exist at version N (else BadVersionError,
        or NotFoundError if absent). A value larger than the store holds (1 MiB for the
        embedded store, as ZooKeeper) raises MetadataValueTooLargeError.
        """

    @abc.abstractmethod
    async def delete(self, path: str, expected_version: int | None = None) -> None:
        """Delete `path` (NotFoundError if absent, BadVersionError on mismatch,
        NotEmptyError if it has children)."""

    @abc.abstractmethod
    async def delete_recursive(self, path: str) -> None:
        """Delete `path` and everything under it; no error if absent."""

    @abc.abstractmethod
    async def children(self, path: str) -> list[str]:
        """Sorted names (not full paths) of the children of `path`; [] if absent."""

    async def exists(self, path: str) -> Stat | None:
        found = await self.get(path)
        return found[1] if found else None

    @abc.abstractmethod
    def watch(self, path: str, callback: WatchCallback) -> Callable[[], None]:
        """Call `callback` on every change of `path` or of its set of children until the
        returned function is called. Persistent (unlike ZooKeeper's one-shot watches)."""

    def on_session_expired(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the loop, once) if this store's session expires. The embedded
        store's session is the process, so it never expires and never calls it."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and release; ephemeral nodes of this session are removed."""
