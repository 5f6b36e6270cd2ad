"""Controller-side block lifecycle: allocate, free, split, merge, append and extend structures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from taureau.common import errors
from taureau.state import codec, kinds
from taureau.state.allocator import Allocator, ServerInfo, ServerState
from taureau.state.blocks import NUM_SLOTS
from taureau.state.catalog import Catalog
from taureau.state.codec import Op, pack_u64
from taureau.state.metrics import Counters
from taureau.state.namespace import BlockRef, Namespace, Node, NodeState, Partition, partition_record
from taureau.state.quotas import Quotas

log = logging.getLogger(__name__)

# Order of steps, chosen so that no client ever sees a key vanish, and so that the catalog
# (persisted) never lacks a block that holds data a client was told is stored:
#   split:  NEW_BLOCK(importing) -> publish map -> save -> SPLIT at source (moves keys, source
#           now STALE for them, target REDO until IMPORT lands) -> done.
#   merge:  EXPECT at target (widens its range, REDO for the incoming part) -> publish map ->
#           MERGE_OUT at source (source FORWARDED, i.e. STALE) -> save -> FREE_BLOCK source.
#   append: NEW_BLOCK -> save (the new tail listed) -> LINK_NEXT seals the old tail (enqueues
#           there now STALE) -> publish map.
#   drain:  unpublish -> save -> FREE_BLOCK.
# A crash between two steps leaves blocks whose reports recovery.py reconciles.
# One elastic operation per structure at a time (Node.busy); a refused request is retried by
# the memory server later.


class BlockManager:
    """Owns the alloc-id -> structure index and every NEW/FREE/SPLIT/MERGE command sent."""

    def __init__(
        self,
        ns: Namespace,
        allocator: Allocator,
        catalog: Catalog,
        watch_ops: Callable[[Node], list[str]],
        counters: Counters,
        quotas: Quotas,
    ) -> None:
        self.ns = ns
        self.alloc = allocator
        self.catalog = catalog
        self.watch_ops = watch_ops
        self.counters = counters
        self.quotas = quotas
        self.owner = quotas.owner  # alloc id -> struct id (ours to write; quotas count it)

    async def save(self, node: Node, extra: Partition | None = None) -> None:
        """Write `node`'s record (with `extra` listed after its partitions, not yet published)."""
        rec = node.record()
        if extra is not None:
            rec["partitions"].append(partition_record(extra))
        await self.catalog.save_structure(node.struct_id, rec)

    def _server(self, ref: BlockRef) -> ServerInfo:
        s = self.alloc.servers[ref.server_id]
        if s.state is ServerState.JOINING:
            raise errors.StateUnavailableError(
                f"memory server {s.address} is rejoining after a controller restart"
            )
        if not s.alive:
            raise errors.BlockLostError(f"memory server {s.address} is gone")
        return s

    async def new_partition(self, node: Node, lo: int, hi: int | None, importing: bool = False) -> Partition:
        """Allocate one block for `node` serving [lo, hi) (hi=None: lo + that server's block size)."""
        self.quotas.take(node, 1)
        try:
            return await self._new_partition(node, lo, hi, importing)
        finally:  # the block is in the owner index by now (or was never made)
            self.quotas.give_back(node, 1)

    async def _new_partition(self, node: Node, lo: int, hi: int | None, importing: bool) -> Partition:
        (srv,) = self.alloc.pick()
        try:
            aid = await self.catalog.next_id("alloc")
        except BaseException:
            self.alloc.release(srv.server_id)
            raise
        hi = lo + srv.block_size if hi is None else hi
        watch = self.watch_ops(node)
        req = {
            "alloc": aid,
            "struct": node.struct_id,
            "kind": node.kind,
            "lo": lo,
            "hi": hi,
            "importing": importing,
            "watch": watch,
        }
        try:
            await srv.peer.call(Op.NEW_BLOCK, codec.pack_json(req))
            await self.settle_watch(node, srv, aid, watch)
        except Exception:
            self.alloc.release(srv.server_id)
            raise
        self.owner[aid] = node.struct_id
        return Partition(lo, hi, [BlockRef(srv.server_id, aid)])

    async def settle_watch(self, node: Node, srv: ServerInfo, alloc: int, sent: list[str] | None) -> None:
        """Bring a block that is in no map yet up to date with the subscriptions: one that came
        while the block was being set up could not see it. Callers publish the block right
        after this returns, with no await in between."""
        while (ops := self.watch_ops(node)) != sent:
            await srv.peer.call(Op.WATCH, codec.pack_json({"allocs": [alloc], "ops": ops}))
            sent = ops

    async def push_watch(self, node: Node) -> None:
        """Tell every memory server holding `node`'s blocks which ops are watched now."""
        ops = self.watch_ops(node)
        by_server: dict[int, list[int]] = {}
        for p in node.partitions:
            for r in p.chain:
                by_server.setdefault(r.server_id, []).append(r.alloc)
        calls = []
        for sid, allocs in by_server.items():
            srv = self.alloc.servers[sid]
            if srv.alive:
                calls.append(srv.peer.call(Op.WATCH, codec.pack_json({"allocs": allocs, "ops": ops})))
        for res in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(res, Exception):  # that server is going away; its blocks go with it
                log.warning("watch update for %s failed: %s", node.path, res)

    async def populate(self, node: Node, num_blocks: int) -> None:
        """Give a new structure its first blocks, laid out as its kind says (layouts.py)."""
        num_blocks = max(1, min(num_blocks, NUM_SLOTS))
        free = self.alloc.free_blocks()
        if num_blocks > free:  # refuse before taking any: blocks would only be taken and given back
            raise errors.OutOfMemoryError(f"{node.path} needs {num_blocks} blocks; the pool has {free} free")
        self.quotas.check(node.path, num_blocks)
        try:
            await kinds.get(node.kind).layout.populate(self, node, num_blocks)
        except Exception:
            await self.free(node)
            raise

    async def free(self, node: Node) -> None:
        """Return every block of `node` to the pool (best effort on dead servers)."""
        parts, node.partitions = node.partitions, []
        await self.free_partitions(parts)
        node.epoch += 1

    async def free_partitions(self, parts: list[Partition]) -> None:
        for p in parts:
            for ref in p.chain:
                await self.free_ref(ref)

    async def free_ref(self, ref: BlockRef) -> None:
        self.owner.pop(ref.alloc, None)
        srv = self.alloc.servers.get(ref.server_id)
        if srv is not None and srv.alive:  # a joining server's blocks are freed when it reports
            await self.free_block(srv, ref.alloc)

    async def free_block(self, srv: ServerInfo, alloc: int) -> None:
        self.alloc.release(srv.server_id)
        try:
            await srv.peer.call(Op.FREE_BLOCK, codec.pack_json({"alloc": alloc}))
        except errors.StateError as e:
            log.warning("freeing block %d on %s failed: %s", alloc, srv.address, e)

    async def send(self, ref: BlockRef, op: int, args: dict[str, Any]) -> None:
        """One command to the memory server holding `ref`; its error is raised."""
        await self._server(ref).peer.call(op, codec.pack_json(args))

    async def command(self, ref: BlockRef, op: int, args: dict[str, Any]) -> None:
        """One block command, logged if it fails (recovery's repairs: the block stays usable)."""
        try:
            await self.send(ref, op, args)
        except errors.StateError as e:
            log.warning("%s of block %d failed: %s", codec.op_name(op), ref.alloc, e)

    def index(self, node: Node) -> None:
        """Record who owns `node`'s blocks (a structure restored from the catalog)."""
        for p in node.partitions:
            for r in p.chain:
                self.owner[r.alloc] = node.struct_id

    def locate(self, alloc: int) -> tuple[Node, int]:
        node = self.ns.by_id.get(self.owner.get(alloc, -1))
        if node is None or node.state is not NodeState.ACTIVE:
            raise errors.PathNotFoundError(f"block {alloc} belongs to no live structure")
        for i, p in enumerate(node.partitions):
            if p.chain[0].alloc == alloc:
                return node, i
        raise errors.PathNotFoundError(f"block {alloc} is not in {node.path}'s map")

    def server_of(self, alloc: int) -> int | None:
        """The id of the memory server holding block `alloc` (None if no live structure has it)."""
        try:
            node, i = self.locate(alloc)
        except errors.PathNotFoundError:
            return None
        return node.partitions[i].chain[0].server_id

    def claim(self, node: Node) -> None:
        if node.busy:
            raise errors.StateUnavailableError(f"{node.path} is already being repartitioned")
        node.busy = True

    async def split(self, alloc: int, at: int) -> None:
        node, i = self.locate(alloc)
        self.claim(node)
        try:
            p = node.partitions[i]
            if not p.lo < at < p.hi:
                raise errors.StateProtocolError(f"split point {at} outside ({p.lo}, {p.hi})")
            src = self._server(p.chain[0])
            newp = await self.new_partition(node, at, p.hi, importing=True)
            tgt = self._server(newp.chain[0])
            old_hi, p.hi = p.hi, at
            node.partitions.insert(i + 1, newp)
            node.epoch += 1
            req = {"alloc": alloc, "at": at, "target": tgt.address, "target_alloc": newp.chain[0].alloc}
            try:
                await self.save(node)  # the target is listed before any key moves into it
                await src.peer.call(Op.SPLIT, codec.pack_json(req))
                self.counters.splits += 1
            except Exception:
                p.hi = old_hi
                node.partitions.remove(newp)
                node.epoch += 1
                await self.free_ref(newp.chain[0])
                await self._save_quietly(node)
                raise
        finally:
            node.busy = False

    async def merge(self, alloc: int, used: int) -> None:
        node, i = self.locate(alloc)
        if not kinds.get(node.kind).layout.merges or len(node.partitions) < 2:
            raise errors.StateProtocolError("nothing to merge with")
        self.claim(node)
        try:
            j = i - 1 if i > 0 else i + 1  # the neighbour whose slot range touches ours
            p, q = node.partitions[i], node.partitions[j]
            src, tgt = self._server(p.chain[0]), self._server(q.chain[0])
            expect = {"alloc": q.chain[0].alloc, "lo": p.lo, "hi": p.hi, "bytes": used}
            await tgt.peer.call(Op.EXPECT, codec.pack_json(expect))  # may refuse: target too full
            q.lo, q.hi = min(p.lo, q.lo), max(p.hi, q.hi)
            node.partitions.remove(p)
            node.epoch += 1
            req = {"alloc": alloc, "target": tgt.address, "target_alloc": q.chain[0].alloc}
            await src.peer.call(Op.MERGE_OUT, codec.pack_json(req))
            await self.save(node)  # only now is the source empty: until here the record lists it
            await self.free_ref(p.chain[0])
            self.counters.merges += 1
        finally:
            node.busy = False

    async def append(self, alloc: int) -> None:
        """Give a queue a new tail segment after `alloc` (a no-op if it is not the tail any more)."""
        node, i = self.locate(alloc)
        if i != len(node.partitions) - 1:
            return
        self.claim(node)
        try:
            tail = node.partitions[i]
            src = self._server(tail.chain[0])
            newp = await self.new_partition(node, 0, 0)
            try:
                await self.save(node, extra=newp)  # a sealed tail must never be the last one listed
                await src.peer.call(Op.LINK_NEXT, codec.pack_json({"alloc": alloc}))
            except Exception:
                await self.free_ref(newp.chain[0])
                await self._save_quietly(node)
                raise
            ref = newp.chain[0]
            try:  # LINK_NEXT was awaited: a subscription may have come meanwhile
                await self.settle_watch(node, self.alloc.servers[ref.server_id], ref.alloc, None)
            except errors.StateError as e:  # the tail is sealed: the new block must go in the map
                log.warning("watch update for %s failed: %s", node.path, e)
            node.partitions.append(newp)
            node.epoch += 1
            self.counters.appends += 1
        finally:
            node.busy = False

    async def drained(self, alloc: int) -> None:
        """A sealed queue segment emptied: drop it from the map and free it."""
        node, i = self.locate(alloc)
        if i == len(node.partitions) - 1:
            return
        p = node.partitions.pop(i)
        node.epoch += 1
        await self.save(node)
        await self.free_ref(p.chain[0])
        self.counters.drains += 1

    async def _save_quietly(self, node: Node) -> None:
        """Write a rolled-back map; if the store fails again, recovery reconciles instead."""
        try:
            await self.save(node)
        except errors.StateError as e:
            log.warning("saving %s after a rollback failed: %s", node.path, e)

    async def extend_file(self, node: Node, until: int, persist: bool = True) -> None:
        """Allocate extents until the file's blocks cover byte offset `until - 1`: all of them
        or none (a grow the pool cannot serve is refused before taking any block)."""
        self.claim(node)
        added: list[Partition] = []
        try:
            end = node.partitions[-1].hi if node.partitions else 0
            free = self.alloc.free_bytes()
            if until - end > free:
                raise errors.OutOfMemoryError(
                    f"{node.path}: growing to {until} bytes needs {until - end} more; the pool has {free} free"
                )
            while not node.partitions or node.partitions[-1].hi < until:
                lo = node.partitions[-1].hi if node.partitions else 0
                p = await self.new_partition(node, lo, None)
                node.partitions.append(p)
                added.append(p)
            if added and persist:
                await self.save(node)
        except BaseException:
            for p in added:  # a refused grow leaves the file as it was
                node.partitions.remove(p)
                await self.free_ref(p.chain[0])
            raise
        finally:
            if added:
                node.epoch += 1
            node.busy = False

    async def export(self, node: Node) -> list[bytes]:
        """Every record of a structure, in order (hash: k, v, ...; queue: FIFO items; file: extents)."""
        out: list[bytes] = []
        for p in node.partitions:
            if p.lost:
                raise errors.BlockLostError(f"{node.path}: {node.lost_reason or 'a block is lost'}")
            srv = self._server(p.chain[0])
            out.extend(await srv.peer.call(Op.EXPORT, [pack_u64(p.chain[0].alloc)]))
        return out

    async def import_into(self, p: Partition, records: list[bytes]) -> None:
        srv = self._server(p.chain[0])
        await srv.peer.call(Op.IMPORT, [pack_u64(p.chain[0].alloc), *records])

    def server_lost(self, server_id: int, how: str = "died") -> list[Node]:
        """Mark every partition on a dead server lost; return the structures hit."""
        srv = self.alloc.servers[server_id]
        hit = []
        for node in list(self.ns.by_id.values()):
            lost = [p for p in node.partitions if any(r.server_id == server_id for r in p.chain)]
            if not lost:
                continue
            for p in lost:
                p.lost = True
            node.lost_reason = f"memory server {srv.address} {how} holding {len(lost)} of its blocks"
            if node.state is NodeState.ACTIVE:
                node.set_state(NodeState.LOST)
            node.epoch += 1
            hit.append(node)
        return hit

    async def load_records(self, node: Node, records: list[bytes]) -> None:
        """Build a structure's blocks from dumped records, filling blocks to half capacity so
        the loaded structure has room to grow before its first split."""
        block = min((s.block_size for s in self.alloc.servers.values() if s.alive), default=0)
        if not block:
            raise errors.OutOfMemoryError("no memory server registered")
        try:
            await kinds.get(node.kind).layout.load(self, node, records, block // 2)
        except Exception:
            await self.free(node)
            raise
        node.epoch += 1
