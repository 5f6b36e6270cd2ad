"""Block quotas on directories: a job (or tenant) at its quota gets OutOfMemoryError while the
rest of the pool keeps serving everyone else."""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass
from typing import Any

from taureau.common import errors
from taureau.state.catalog import Catalog
from taureau.state.metrics import Counters
from taureau.state.namespace import Namespace, Node, split_path

# A quota names a path, not a node: it can be set before the job's directory exists and
# stays when the directory is removed (a job that runs again gets the same share). It limits
# the blocks (every block of every chain) held by structures at or under that path; nested
# quotas all apply. Usage is counted when asked, never cached, so no split, merge, remove or
# rename can leave it wrong: the blocks the block manager has allocated to those structures
# (its alloc -> structure index) plus the ones being allocated right now (taken, not yet in
# the index: a NEW_BLOCK is awaited in between, and concurrent creates must not all pass).
# Checked before any block is taken: create, split, queue append, file grow, load, and a
# rename into a directory with a quota.

MAX_QUOTAS = 10_000  # quota records the controller keeps (each a little memory and a record)


@dataclass
class Quota:
    quota_id: int  # its catalog record
    blocks: int


def _covers(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class Quotas:
    """Owns the quotas; the controller and the block manager ask it before allocating."""

    def __init__(self, ns: Namespace, catalog: Catalog, counters: Counters, owner: dict[int, int]) -> None:
        self.ns = ns
        self.catalog = catalog
        self.counters = counters
        self.owner = owner  # alloc id -> struct id; the block manager's, read here
        self.pending: Tally[int] = Tally()  # struct id -> blocks being allocated for it
        self.by_path: dict[str, Quota] = {}

    def restore(self, records: dict[int, dict[str, Any]]) -> None:
        for qid, rec in records.items():
            self.by_path[rec["path"]] = Quota(qid, rec["blocks"])

    async def set(self, path: Any, blocks: Any) -> None:
        """Set (blocks >= 0) or drop (None) the quota of `path`."""
        if not isinstance(path, str):
            raise errors.StateProtocolError("argument 'path' must be a string")
        split_path(path)
        if blocks is not None and (not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0):
            raise errors.StateProtocolError("a quota is a number of blocks >= 0, or null to drop it")
        old = self.by_path.get(path)
        if blocks is None:
            if old is not None:
                await self.catalog.delete_quota(old.quota_id)
                del self.by_path[path]
            return
        if old is None and len(self.by_path) >= MAX_QUOTAS:
            raise errors.StateProtocolError(f"at most {MAX_QUOTAS} quotas")
        qid = await self.catalog.save_quota(old.quota_id if old else None, {"path": path, "blocks": blocks})
        self.by_path[path] = Quota(qid, blocks)

    def used(self, path: str) -> int:
        """Blocks held (or being allocated) by structures at or under `path`."""
        try:
            top = self.ns.lookup(path)
        except errors.PathNotFoundError:
            return 0
        ids = {n.struct_id for n in top.walk() if n.kind != "dir"}
        return sum(sid in ids for sid in self.owner.values()) + sum(self.pending[i] for i in ids)

    def take(self, node: Node, blocks: int) -> None:
        """Check, then count `blocks` as being allocated for `node` until give_back()."""
        self.check(node.path, blocks)
        self.pending[node.struct_id] += blocks

    def give_back(self, node: Node, blocks: int) -> None:
        self.pending[node.struct_id] -= blocks
        if self.pending[node.struct_id] <= 0:
            del self.pending[node.struct_id]

    def check(self, path: str, blocks: int, moving: Node | None = None) -> None:
        """OutOfMemoryError if `blocks` more blocks for a structure at `path` would take any
        quota covering it past its limit. `moving`: a subtree being moved to `path` (quotas
        that already count it are not charged twice)."""
        for qpath, q in self.by_path.items():
            if not _covers(qpath, path) or (moving is not None and _covers(qpath, moving.path)):
                continue
            used = self.used(qpath)
            if used + blocks > q.blocks:
                self.counters.quota_refusals += 1
                raise errors.OutOfMemoryError(
                    f"quota of {qpath}: {q.blocks} block(s), {used} in use, {blocks} more asked"
                )

    def report(self) -> dict[str, dict[str, int]]:
        return {p: {"blocks": q.blocks, "used": self.used(p)} for p, q in sorted(self.by_path.items())}
