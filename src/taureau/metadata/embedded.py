"""EmbeddedMetadataStore: the in-process MetadataStore, in memory or backed by a log directory.

Theory of operation: the tree lives in a dict of path -> node. A change is checked, applied
in memory, its record appended to the log (persistent nodes only: ephemeral nodes belong to
this process's session and never reach disk), watches are scheduled on the event loop, and
the call returns once the log says the record is durable. Concurrent changes therefore see
each other at once (compare-and-set is exact) and share one fsync. If the log ever fails to
write, the store refuses every later change: memory is then ahead of disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import count

from taureau.common.errors import (
    BadVersionError,
    InvalidMetadataPathError,
    MetadataError,
    MetadataStoreClosedError,
    NodeExistsError,
    NotEmptyError,
    NotFoundError,
)
from taureau.metadata import records
from taureau.metadata.oplog import MetadataLog
from taureau.metadata.paths import ROOT, ancestors, check_path, join, name_of, parent_of
from taureau.metadata.store import MetadataStore, Stat, WatchCallback, WatchEvent, check_put

# Every record is held in memory and written to the log (and each snapshot): bound it as
# ZooKeeper does (jute.maxbuffer, 1 MiB), which is what Pulsar's metadata lives with.
MAX_VALUE_BYTES = 1024 * 1024


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Node:
    __slots__ = ("value", "version", "created_ms", "modified_ms", "ephemeral", "children")

    def __init__(
        self, value: bytes, version: int, created_ms: int, modified_ms: int, ephemeral: bool
    ) -> None:
        self.value = value
        self.version = version
        self.created_ms = created_ms
        self.modified_ms = modified_ms
        self.ephemeral = ephemeral
        self.children: set[str] = set()  # names, not paths

    def stat(self) -> Stat:
        return Stat(self.version, self.created_ms, self.modified_ms, self.ephemeral)


class EmbeddedMetadataStore(MetadataStore):
    """A MetadataStore in this process; durable under `path` when given.

    >>> store = EmbeddedMetadataStore()            # in memory
    >>> store = EmbeddedMetadataStore("/data/md")  # log + snapshots in /data/md
    """

    def __init__(
        self,
        path: str | None = None,
        fsync: bool = True,
        *,
        snapshot_every: int = 10_000,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        now = _now_ms()
        self.max_value_bytes = max_value_bytes
        self._nodes: dict[str, _Node] = {ROOT: _Node(b"", 0, now, now, False)}  # the whole tree
        self._watches: dict[str, dict[int, WatchCallback]] = {}  # path -> watch id -> callback
        self._watch_ids = count()
        self._closed = False
        self._log: MetadataLog | None = None  # None: memory only
        if path is not None:
            self._log = MetadataLog(path, fsync=fsync, snapshot_every=snapshot_every)
            for payload in self._log.recover():
                self._replay(records.decode(payload))
            self._log.set_snapshot_source(self._snapshot_payloads)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, path: str) -> tuple[bytes, Stat] | None:
        self._check_open()
        node = self._nodes.get(check_path(path))
        return None if node is None else (node.value, node.stat())

    async def children(self, path: str) -> list[str]:
        self._check_open()
        node = self._nodes.get(check_path(path))
        return [] if node is None else sorted(node.children)

    # -- changes ----------------------------------------------------------------------------

    async def put(
        self,
        path: str,
        value: bytes,
        expected_version: int | None = None,
        *,
        ephemeral: bool = False,
    ) -> Stat:
        self._check_open()
        check_put(path, value, expected_version, self.max_value_bytes)
        node = self._nodes.get(path)
        if expected_version == -1 and node is not None:
            raise NodeExistsError(f"{path} exists already (version {node.version})")
        if expected_version is not None and expected_version >= 0:
            if node is None:
                raise NotFoundError(f"{path} does not exist (expected version {expected_version})")
            if node.version != expected_version:
                raise BadVersionError(f"{path} is at version {node.version}, not {expected_version}")
        now = _now_ms()
        if node is None:
            node = self._create(path, bytes(value), now, ephemeral)
        else:
            node.value, node.version, node.modified_ms = bytes(value), node.version + 1, now
            self._log_put(path, node)
            self._fire(path, WatchEvent.MODIFIED)
        stat = node.stat()
        await self._sync()
        return stat

    async def delete(self, path: str, expected_version: int | None = None) -> None:
        self._check_open()
        if check_path(path) == ROOT:
            raise InvalidMetadataPathError("the root node cannot be deleted")
        node = self._nodes.get(path)
        if node is None:
            raise NotFoundError(f"{path} does not exist")
        if expected_version is not None and node.version != expected_version:
            raise BadVersionError(f"{path} is at version {node.version}, not {expected_version}")
        if node.children:
            raise NotEmptyError(f"{path} has {len(node.children)} children")
        self._remove_subtree(path)
        await self._sync()

    async def delete_recursive(self, path: str) -> None:
        self._check_open()
        node = self._nodes.get(check_path(path))
        if node is None:
            return
        if path == ROOT:
            for name in sorted(node.children):
                self._remove_subtree(join(ROOT, name))
        else:
            self._remove_subtree(path)
        await self._sync()

    def watch(self, path: str, callback: WatchCallback) -> Callable[[], None]:
        check_path(path)
        if not callable(callback):
            raise TypeError("watch callback must be callable")
        watch_id = next(self._watch_ids)
        self._watches.setdefault(path, {})[watch_id] = callback

        def cancel() -> None:
            callbacks = self._watches.get(path)
            if callbacks is not None:
                callbacks.pop(watch_id, None)
                if not callbacks:
                    del self._watches[path]

        return cancel

    async def close(self) -> None:
        if self._closed:
            return
        for path in [p for p, n in self._nodes.items() if n.ephemeral]:
            if path in self._nodes:
                self._remove_subtree(path)
        self._closed = True
        if self._log is not None:
            await self._log.close()

    # -- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MetadataStoreClosedError("metadata store is closed")

    def _create(self, path: str, value: bytes, now: int, ephemeral: bool) -> _Node:
        chain = [*ancestors(path), path]
        for existing in chain:
            found = self._nodes.get(existing)
            if found is not None and found.ephemeral:
                raise MetadataError(f"cannot create {path}: {existing} is ephemeral and cannot have children")
        node: _Node | None = None
        for step in chain:
            if step in self._nodes:
                continue
            last = step == path
            node = _Node(value if last else b"", 0, now, now, ephemeral and last)
            self._nodes[step] = node
            self._nodes[parent_of(step)].children.add(name_of(step))
            if not node.ephemeral:
                self._log_put(step, node)
            self._fire(step, WatchEvent.CREATED)
            self._fire(parent_of(step), WatchEvent.CHILDREN_CHANGED)
        assert node is not None
        return node

    def _remove_subtree(self, path: str) -> None:
        """Remove `path` and its descendants (deepest first), log once, fire per node."""
        top = self._nodes[path]
        order: list[str] = []
        stack = [path]
        while stack:
            current = stack.pop()
            order.append(current)
            stack.extend(join(current, name) for name in self._nodes[current].children)
        for gone in reversed(order):
            del self._nodes[gone]
            self._fire(gone, WatchEvent.DELETED)
        self._nodes[parent_of(path)].children.discard(name_of(path))
        if not top.ephemeral and self._log is not None:
            self._log.append(records.encode_delete(path))
        self._fire(parent_of(path), WatchEvent.CHILDREN_CHANGED)

    def _log_put(self, path: str, node: _Node) -> None:
        if self._log is not None and not node.ephemeral:
            self._log.append(
                records.encode_put(path, node.value, node.version, node.created_ms, node.modified_ms)
            )

    async def _sync(self) -> None:
        if self._log is not None:
            await self._log.sync()

    def _fire(self, path: str, event: WatchEvent) -> None:
        callbacks = self._watches.get(path)
        if callbacks:
            loop = asyncio.get_running_loop()
            for callback in list(callbacks.values()):
                loop.call_soon(callback, event, path)

    def _replay(self, record: records.Record) -> None:
        """Apply one recovered record (no log, no watches: nobody is watching yet)."""
        path = check_path(record.path)
        if record.op == records.OP_DELETE:
            if path in self._nodes and path != ROOT:
                order = [path]
                for current in order:
                    order.extend(join(current, n) for n in self._nodes[current].children)
                for gone in order:
                    del self._nodes[gone]
                self._nodes[parent_of(path)].children.discard(name_of(path))
            return
        if record.op != records.OP_PUT:
            raise MetadataError(f"unexpected record op {record.op} in metadata log")
        for step in [*ancestors(path), path]:
            if step not in self._nodes:
                self._nodes[step] = _Node(b"", 0, record.created_ms, record.created_ms, False)
                self._nodes[parent_of(step)].children.add(name_of(step))
        node = self._nodes[path]
        node.value, node.version = record.value, record.version
        node.created_ms, node.modified_ms = record.created_ms, record.modified_ms

    def _snapshot_payloads(self) -> Callable[[], list[bytes]]:
        # The copy (a tuple per node: nodes change in place) is all the loop pays; sorting
        # and encoding run in the snapshot's thread.
        rows = [
            (path, n.value, n.version, n.created_ms, n.modified_ms)
            for path, n in self._nodes.items()
            if not n.ephemeral
        ]

        def encode() -> list[bytes]:
            rows.sort(key=lambda row: row[0])  # every parent before its children ("/a" < "/a/b")
            return [records.encode_put(*row) for row in rows]

        return encode
