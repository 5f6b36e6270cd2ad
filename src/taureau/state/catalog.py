"""The controller's durable records in the metadata store: structures, memory servers, ids."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from taureau.common import errors
from taureau.metadata.store import MetadataStore

log = logging.getLogger(__name__)

T = TypeVar("T")

# Layout under the catalog's root (default /state), every value a JSON object:
#
#   <root>/controller        ephemeral: the address of the controller that owns this namespace
#   <root>/ids               {"struct": n, "alloc": n, "server": n}: ids below these may have
#                            been handed out; a restarted controller starts there (never reuses)
#   <root>/servers/<id>      {"address", "block_size", "num_blocks", "link"}
#   <root>/structures/<id>   namespace.Node.record(): path, kind, flags, state, block map
#   <root>/quotas/<n>        {"path", "blocks"}: a block quota on a directory
#   <root>/renames/<n>       {"src", "dst"}: a rename of several structures in progress
#   <root>/dumps/<n>         {"dest", "owner"}: a dump deleted when structure `owner` (an id) goes
#
# What is written when, so that a crash at any point loses nothing acknowledged:
# - a structure's record is written before its create is answered and before any command
#   that moves data out of a block the record does not list yet (a split target is listed
#   before SPLIT, a queue's new tail before LINK_NEXT); it is deleted before its blocks are
#   freed. A block that no record lists when its memory server reports is freed.
# - lease deadlines are not written: a restarted controller gives every node a full lease,
#   so a restart never makes state expire early, and abandoned state still expires later.
# Structures are keyed by id, not path: a rename rewrites one record per structure moved;
# a rename of several is bracketed by a renames/ record and finished on recovery.

ID_CHUNK = 1024  # ids reserved per write of <root>/ids


@dataclass
class Loaded:
    """Everything a controller restarts from."""

    ids: dict[str, int] = field(default_factory=dict)
    servers: dict[int, dict[str, Any]] = field(default_factory=dict)
    structures: dict[int, dict[str, Any]] = field(default_factory=dict)
    quotas: dict[int, dict[str, Any]] = field(default_factory=dict)
    renames: dict[int, dict[str, Any]] = field(default_factory=dict)
    dumps: dict[int, dict[str, Any]] = field(default_factory=dict)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class Catalog:
    """Owns the controller's records in `store` under `root`; the controller's only door to it.

    Metadata errors come out as StateUnavailableError: to a state client the catalog is part
    of the controller, and a store that cannot write means the controller cannot serve."""

    def __init__(self, store: MetadataStore, root: str = "/state") -> None:
        self.store = store
        self.root = root
        self._next: dict[str, int] = {}  # next id to hand out, per kind
        self._limit: dict[str, int] = {}  # first id not reserved in <root>/ids yet
        self._id_lock = asyncio.Lock()
        self._seq = 0  # names of quota and rename records

    async def _call(self, what: str, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except errors.MetadataError as e:
            raise errors.StateUnavailableError(f"metadata store: {what} failed: {e}") from None

    # -- ownership and recovery ---------------------------------------------------------------

    async def claim(self, address: str) -> None:
        """Become the one controller of this namespace (an ephemeral node: it goes with our
        metadata session). StateUnavailableError if another controller holds it."""
        try:
            await self.store.put(f"{self.root}/controller", address.encode(), -1, ephemeral=True)
        except errors.NodeExistsError:
            found = await self.store.get(f"{self.root}/controller")
            holder = found[0].decode(errors="replace") if found else "another controller"
            raise errors.StateUnavailableError(f"this state namespace is owned by {holder}") from None
        except errors.MetadataError as e:
            raise errors.StateUnavailableError(
                f"metadata store: claiming the namespace failed: {e}"
            ) from None

    async def release(self) -> None:
        """Give up ownership (a clean stop; a crash releases it with the metadata session)."""
        try:
            await self.store.delete(f"{self.root}/controller")
        except errors.MetadataError:
            pass

    async def load(self) -> Loaded:
        out = Loaded()
        found = await self._call("reading ids", self.store.get(f"{self.root}/ids"))
        if found is not None:
            out.ids = json.loads(found[0])
        for kind in ("struct", "alloc", "server"):
            self._next[kind] = self._limit[kind] = int(out.ids.get(kind, 1))
        for name, target in (
            ("servers", out.servers),
            ("structures", out.structures),
            ("quotas", out.quotas),
            ("renames", out.renames),
            ("dumps", out.dumps),
        ):
            for child in await self._call(f"listing {name}", self.store.children(f"{self.root}/{name}")):
                rec = await self._call(f"reading {name}", self.store.get(f"{self.root}/{name}/{child}"))
                if rec is not None and child.isdigit():
                    target[int(child)] = json.loads(rec[0])
        self._seq = max([0, *out.quotas, *out.renames, *out.dumps]) + 1
        return out

    # -- ids ----------------------------------------------------------------------------------

    async def next_id(self, kind: str) -> int:
        """A fresh struct/alloc/server id, never handed out before (even before a crash)."""
        if self._next[kind] >= self._limit[kind]:
            async with self._id_lock:
                if self._next[kind] >= self._limit[kind]:
                    limits = dict(self._limit)
                    limits[kind] = self._next[kind] + ID_CHUNK
                    await self._call("reserving ids", self.store.put(f"{self.root}/ids", _dump(limits)))
                    self._limit = limits
        n = self._next[kind]
        self._next[kind] = n + 1
        return n

    # -- records ------------------------------------------------------------------------------

    async def save_structure(self, struct_id: int, record: dict[str, Any]) -> None:
        path = f"{self.root}/structures/{struct_id}"
        await self._call(f"saving structure {record.get('path')}", self.store.put(path, _dump(record)))

    async def delete_structure(self, struct_id: int) -> None:
        await self._delete(f"{self.root}/structures/{struct_id}")

    async def save_server(self, server_id: int, record: dict[str, Any]) -> None:
        await self._call(
            "saving a memory server", self.store.put(f"{self.root}/servers/{server_id}", _dump(record))
        )

    async def delete_server(self, server_id: int) -> None:
        await self._delete(f"{self.root}/servers/{server_id}")

    async def save_quota(self, quota_id: int | None, record: dict[str, Any]) -> int:
        if quota_id is None:
            quota_id, self._seq = self._seq, self._seq + 1
        await self._call("saving a quota", self.store.put(f"{self.root}/quotas/{quota_id}", _dump(record)))
        return quota_id

    async def delete_quota(self, quota_id: int) -> None:
        await self._delete(f"{self.root}/quotas/{quota_id}")

    async def save_dump_owner(self, dest: str, owner: int) -> int:
        n, self._seq = self._seq, self._seq + 1
        await self._call("recording a dump's owner",
                         self.store.put(f"{self.root}/dumps/{n}", _dump({"dest": dest, "owner": owner})))  # fmt: skip
        return n

    async def delete_dump_owner(self, n: int) -> None:
        await self._delete(f"{self.root}/dumps/{n}")

    async def bracket_rename(self, src: str, dst: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body` (rewriting the moved structures' records) with a record of the rename
        around it, so a crash halfway is finished by the next controller."""
        n, self._seq = self._seq, self._seq + 1
        path = f"{self.root}/renames/{n}"
        await self._call("recording a rename", self.store.put(path, _dump({"src": src, "dst": dst})))
        await body()
        await self._delete(path)

    async def delete_rename(self, n: int) -> None:
        await self._delete(f"{self.root}/renames/{n}")

    async def _delete(self, path: str) -> None:
        try:
            await self.store.delete(path)
        except errors.NotFoundError:
            pass
        except errors.MetadataError as e:
            raise errors.StateUnavailableError(f"metadata store: deleting {path} failed: {e}") from None
