"""Subscriptions by path prefix: which ops of which paths are watched, and the fan-out of events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taureau.common import errors
from taureau.state import kinds
from taureau.state.codec import Op
from taureau.state.namespace import split_path
from taureau.state.rpc import Peer

# A subscription names a path prefix, not a node: it is valid before anything exists under
# the prefix, and it keeps matching whatever is created, moved in or re-created there later
# (Jiffy's main use of notifications: a consumer waits for a producer's output to appear).
# Matching is by a structure's *current* path, so renames move structures in and out of it.

NOTIFY_OPS = kinds.notify_ops()  # every op some structure kind notifies about
MAX_PER_CONNECTION = 64  # subscriptions one connection may hold (each is a little controller memory)


@dataclass(eq=False)
class Subscription:
    peer: Peer  # the subscriber's connection; events go out on it
    prefix: str
    ops: frozenset[str]

    def covers(self, path: str) -> bool:
        p = self.prefix
        return p == "/" or path == p or path.startswith(p + "/")


class Subscriptions:
    """Owns every live subscription. The controller is its only caller."""

    def __init__(self) -> None:
        self.subs: list[Subscription] = []

    def add(self, peer: Peer, prefix: Any, ops: Any) -> Subscription:
        """Validate and register; InvalidPathError / StateProtocolError on bad input."""
        if not isinstance(prefix, str):
            raise errors.StateProtocolError("argument 'path' must be a string")
        split_path(prefix)  # syntax only: the path need not exist (yet)
        ops = ops or sorted(NOTIFY_OPS)
        if (
            not isinstance(ops, list)
            or not all(isinstance(o, str) for o in ops)
            or not set(ops) <= NOTIFY_OPS
        ):
            raise errors.StateProtocolError(f"ops must be a list drawn from {sorted(NOTIFY_OPS)}")
        if sum(s.peer is peer for s in self.subs) >= MAX_PER_CONNECTION:
            raise errors.StateProtocolError(
                f"a connection may hold at most {MAX_PER_CONNECTION} subscriptions"
            )
        sub = Subscription(peer, prefix, frozenset(ops))
        self.subs.append(sub)
        return sub

    def drop_peer(self, peer: Peer) -> None:
        self.subs = [s for s in self.subs if s.peer is not peer]

    def ops_for(self, path: str) -> list[str]:
        """The ops some subscription wants to hear about for a structure at `path`."""
        return sorted({op for s in self.subs if s.covers(path) for op in s.ops})

    def fan_out(self, path: str, op: bytes, data: bytes) -> None:
        name = op.decode(errors="replace")
        for s in self.subs:
            if name in s.ops and s.covers(path):
                s.peer.send_event(Op.NOTIFY, [op, path.encode(), data])

    def close(self) -> None:
        for s in self.subs:
            s.peer.close()

    def __len__(self) -> int:
        return len(self.subs)
