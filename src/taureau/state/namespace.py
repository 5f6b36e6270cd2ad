"""The controller's hierarchical namespace: directories, structures, block maps and leases (pure)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from taureau.common import errors

# Theory of operation.
# The namespace is a tree of directories whose leaves are structures (hash table, queue,
# file). A structure owns a list of partitions; a partition is a key range (hash slots, file
# offsets, or a queue segment's place in line) served by a chain of blocks, the first being
# the head of a replica chain and the last its tail (`replicas` long; replica.py).
#
# Every node carries a lease deadline. Renewing a path pushes the deadline of the node, all
# its ancestors and all its descendants; a job's directory is thus kept alive by any task
# renewing anything inside it. A node expires at deadline + grace. Structure lifecycle:
#
#   ACTIVE --server lost--> LOST       (a block's memory server died; data is gone)
#   ACTIVE --expiry of a mapped structure--> FLUSHED  (data on its backing path, no blocks)
#   FLUSHED --open/load--> ACTIVE
#
# This module does no I/O: the controller asks it what to do, then does it.

MAX_PATH = 1024


class NodeState(Enum):
    ACTIVE = "active"
    FLUSHED = "flushed"
    LOST = "lost"


_ALLOWED = {
    NodeState.ACTIVE: {NodeState.LOST, NodeState.FLUSHED},
    NodeState.FLUSHED: {NodeState.ACTIVE},
    NodeState.LOST: set(),
}


@dataclass
class BlockRef:
    server_id: int
    alloc: int


@dataclass
class Partition:
    lo: int
    hi: int
    chain: list[BlockRef]
    lost: bool = False


def partition_record(p: Partition) -> dict[str, Any]:
    return {"lo": p.lo, "hi": p.hi, "lost": p.lost, "chain": [[r.server_id, r.alloc] for r in p.chain]}


@dataclass(eq=False)
class Node:
    name: str
    parent: Node | None
    kind: str  # "dir" or a structure kind's name (taureau.state.kinds)
    lease_until: float  # monotonic seconds; expiry happens at lease_until + grace
    children: dict[str, Node] = field(default_factory=dict)
    struct_id: int = 0
    partitions: list[Partition] = field(default_factory=list)
    replicas: int = 1  # blocks per partition chain (chain replication)
    pinned: bool = False  # never expires
    mapped: bool = False  # flushed to `backing` on expiry instead of being freed
    backing: str | None = None
    state: NodeState = NodeState.ACTIVE
    epoch: int = 0  # bumped on every block-map change, so clients can tell maps apart
    busy: bool = False  # a split/merge/append/flush is in progress (one at a time)
    mending: int = 0  # chain repairs waiting for `busy` to clear (no new split may start)
    lost_reason: str = ""

    def set_state(self, new: NodeState) -> None:
        if new not in _ALLOWED[self.state]:
            raise errors.StateError(f"{self.path}: illegal transition {self.state.value} -> {new.value}")
        self.state = new

    @property
    def path(self) -> str:
        parts = []
        n: Node | None = self
        while n is not None and n.parent is not None:
            parts.append(n.name)
            n = n.parent
        return "/" + "/".join(reversed(parts))

    def walk(self) -> Iterator[Node]:
        yield self
        for c in list(self.children.values()):
            yield from c.walk()

    def record(self) -> dict[str, Any]:
        """What the catalog keeps of a structure (no lease deadline, no busy flag)."""
        return {
            "path": self.path,
            "kind": self.kind,
            "replicas": self.replicas,
            "pinned": self.pinned,
            "mapped": self.mapped,
            "backing": self.backing,
            "state": self.state.value,
            "lost_reason": self.lost_reason,
            "epoch": self.epoch,
            "partitions": [partition_record(p) for p in self.partitions],
        }

    def block_map(self, servers: dict[int, tuple[str, int]]) -> dict[str, Any]:
        """The map clients cache; `servers` maps server id -> (address, block size)."""
        return {
            "path": self.path,
            "id": self.struct_id,
            "kind": self.kind,
            "epoch": self.epoch,
            "state": self.state.value,
            "lost_reason": self.lost_reason,
            "partitions": [
                {
                    "lo": p.lo,
                    "hi": p.hi,
                    "lost": p.lost,
                    "chain": [
                        {"addr": servers[b.server_id][0], "alloc": b.alloc, "cap": servers[b.server_id][1]}
                        for b in p.chain
                    ],
                }
                for p in self.partitions
            ],
        }


def split_path(path: str) -> list[str]:
    """Validate an absolute path and return its components ([] for the root)."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH:
        raise errors.InvalidPathError(f"not an absolute path of at most {MAX_PATH} characters: {path!r}")
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if p in (".", "..") or not p.isprintable():
            raise errors.InvalidPathError(f"bad path component {p!r} in {path!r}")
    if path != "/" and ("//" in path or path.endswith("/")):
        raise errors.InvalidPathError(f"empty path component in {path!r}")
    return parts


class Namespace:
    """Owns the tree and the struct-id index. The controller is its only caller."""

    def __init__(self) -> None:
        self.root = Node("", None, "dir", float("inf"))
        self.by_id: dict[int, Node] = {}  # struct_id -> structure node

    def lookup(self, path: str) -> Node:
        node = self.root
        for p in split_path(path):
            nxt = node.children.get(p)
            if nxt is None:
                raise errors.PathNotFoundError(f"path not found: {path}")
            node = nxt
        return node

    def structure(self, path: str, kind: str | None = None) -> Node:
        node = self.lookup(path)
        if node.kind == "dir":
            raise errors.WrongTypeError(f"{path} is a directory")
        if kind is not None and node.kind != kind:
            raise errors.WrongTypeError(f"{path} is a {node.kind}, not a {kind}")
        return node

    def exists(self, path: str) -> bool:
        try:
            self.lookup(path)
        except errors.PathNotFoundError:
            return False
        return True

    def check_new(self, path: str, kind: str) -> None:
        """Raise what create() would, without changing anything (it may be awaited after).
        `kind` is the caller's to check (the registry of kinds is above this module)."""
        parts = split_path(path)
        if not parts:
            raise errors.InvalidPathError("the root cannot be a structure")
        node = self.root
        for p in parts[:-1]:
            nxt = node.children.get(p)
            if nxt is None:
                return
            if nxt.kind != "dir":
                raise errors.WrongTypeError(f"{nxt.path} is a {nxt.kind}, not a directory")
            node = nxt
        if parts[-1] in node.children:
            raise errors.PathExistsError(f"path exists: {path}")

    def create(self, path: str, kind: str, lease_until: float, struct_id: int, **flags: Any) -> Node:
        """Create a structure (and missing parent directories). No blocks yet."""
        self.check_new(path, kind)
        parts = split_path(path)
        parent = self._make_dirs(parts[:-1], lease_until)
        node = Node(parts[-1], parent, kind, lease_until, struct_id=struct_id, **flags)
        parent.children[node.name] = node
        self.by_id[node.struct_id] = node
        return node

    def restore(self, struct_id: int, rec: dict[str, Any], lease_until: float) -> Node:
        """Put back a structure from its catalog record (a controller restart)."""
        node = self.create(
            rec["path"],
            rec["kind"],
            lease_until,
            struct_id,
            replicas=rec.get("replicas", 1),
            pinned=rec["pinned"],
            mapped=rec["mapped"],
            backing=rec["backing"],
            state=NodeState(rec["state"]),
            lost_reason=rec["lost_reason"],
            epoch=rec["epoch"],
        )
        node.partitions = [
            Partition(p["lo"], p["hi"], [BlockRef(sid, alloc) for sid, alloc in p["chain"]], p["lost"])
            for p in rec["partitions"]
        ]
        return node

    def _make_dirs(self, parts: list[str], lease_until: float) -> Node:
        node = self.root
        for p in parts:
            nxt = node.children.get(p)
            if nxt is None:
                nxt = node.children[p] = Node(p, node, "dir", lease_until)
            elif nxt.kind != "dir":
                raise errors.WrongTypeError(f"{nxt.path} is a {nxt.kind}, not a directory")
            node = nxt
        return node

    def detach(self, node: Node) -> list[Node]:
        """Unlink a subtree; return the structures in it (their blocks are the caller's to free)."""
        if node.parent is None:
            raise errors.InvalidPathError("cannot remove the root")
        del node.parent.children[node.name]
        gone = [n for n in node.walk() if n.kind != "dir"]
        for n in gone:
            self.by_id.pop(n.struct_id, None)
        return gone

    def rename(self, src: str, dst: str) -> None:
        node = self.lookup(src)
        parts = split_path(dst)
        if node.parent is None or not parts:
            raise errors.InvalidPathError("cannot rename the root")
        if dst == src or dst.startswith(src.rstrip("/") + "/"):
            raise errors.InvalidPathError(f"cannot move {src} into itself")
        parent = self._make_dirs(parts[:-1], node.lease_until)
        if parts[-1] in parent.children:
            raise errors.PathExistsError(f"path exists: {dst}")
        del node.parent.children[node.name]
        node.name, node.parent = parts[-1], parent
        parent.children[node.name] = node

    def renew(self, path: str, until: float) -> None:
        """Extend the lease of `path`, its ancestors and its descendants."""
        node = self.lookup(path)
        for n in node.walk():
            n.lease_until = max(n.lease_until, until)
        a = node.parent
        while a is not None:
            a.lease_until = max(a.lease_until, until)
            a = a.parent

    def expired(self, now: float, grace: float) -> list[Node]:
        """Unpinned nodes whose lease + grace passed, deepest first; directories only once empty
        of anything still alive (so a live child keeps its directory)."""
        out: list[Node] = []

        def visit(n: Node) -> bool:  # True if n will be gone after this sweep
            kids_gone = all([visit(c) for c in list(n.children.values())])
            dead = (
                n.parent is not None
                and not n.pinned
                and n.state is not NodeState.FLUSHED  # flushed data stays until removed
                and n.lease_until + grace < now
            )
            if dead and (n.kind != "dir" or kids_gone):
                out.append(n)
                return n.kind == "dir" or not n.mapped
            return False

        visit(self.root)
        return out
