"""A function's space in the ephemeral state store: `/functions/<tenant>/<namespace>/<name>`.

Parallel instances of a function share it, and a downstream function can open an upstream
one's space to pick up what it left (Jiffy's point: intermediate state in far memory instead
of a round trip through durable storage). The worker renews the space's lease for as long as
the function exists and removes it when the function is deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from taureau.common.errors import BlockLostError
from taureau.state.client import StateClient, Subscription
from taureau.state.structures import File, HashTable, Queue

ROOT = "/functions"
T = TypeVar("T")


def space_path(fqfn: str) -> str:
    return f"{ROOT}/{fqfn}"


class EphemeralState:
    """Structures under one function's space; names are relative to it.

    >>> space = context.ephemeral_state()
    >>> table = space.hash_table("partials")
    >>> table.upsert(b"k", b"v")
    """

    def __init__(self, client: StateClient, fqfn: str) -> None:
        self.client = client  # the raw client, for paths outside the space
        self.root = space_path(fqfn)

    def path(self, name: str = "") -> str:
        name = name.strip("/")
        if ".." in name.split("/"):
            raise ValueError(f"{name!r} leaves the function's space")
        return f"{self.root}/{name}" if name else self.root

    def _open(self, name: str, opener: Callable[[str], T]) -> T:
        """Open or create; a structure whose memory server died (all of it lost) is made
        afresh, since its data is gone anyway and the worker keeps its lease alive. A structure
        only partly lost opens, and raises BlockLostError on the lost part: `remove` it."""
        path = self.path(name)
        try:
            return opener(path)
        except BlockLostError:
            self.client.remove(path)
            return opener(path)

    def hash_table(self, name: str, num_blocks: int = 1) -> HashTable:
        return self._open(name, lambda p: self.client.open_or_create_hash_table(p, num_blocks))

    def queue(self, name: str) -> Queue:
        return self._open(name, self.client.open_or_create_queue)

    def file(self, name: str, num_blocks: int = 1) -> File:
        return self._open(name, lambda p: self.client.open_or_create_file(p, num_blocks))

    def listen(self, name: str = "", ops: list[str] | None = None) -> Subscription:
        return self.client.listen(self.path(name), ops)

    def exists(self, name: str) -> bool:
        return self.client.exists(self.path(name))

    def remove(self, name: str) -> None:
        self.client.remove(self.path(name))

    def ls(self, name: str = "") -> list[dict[str, Any]]:
        return self.client.ls(self.path(name))
