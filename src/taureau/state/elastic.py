"""Controller-side block lifecycle: allocate, free, split, merge, append and extend structures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
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

DRAIN_WAIT_S = 30.0  # a drained segment waits this long for its queue's map to be free

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

    def attached(self, node: Node) -> bool:
        """Still in the namespace (not removed or expired while we awaited something)."""
        return self.ns.by_id.get(node.struct_id) is node

    async def save(self, node: Node, extra: Partition | None = None) -> None:
        """Write `node`'s record (with `extra` listed after its partitions, not yet published).
        A structure removed meanwhile is not written back: its record is gone for good."""
        if not self.attached(node):
            return
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
        """Allocate a chain of `node.replicas` blocks on distinct servers serving [lo, hi)
        (hi=None: lo + the block size). A replicated chain is configured, frozen if it is
        `importing` (a split target: its followers get the head's state after the split)."""
        r = node.replicas
        self.quotas.take(node, r)
        try:
            servers = self.alloc.pick(r)
            p = Partition(lo, lo + servers[0].block_size if hi is None else hi, [])
            try:
                for i, srv in enumerate(servers):
                    p.chain.append(await self._new_block(node, srv, p, importing, head=i == 0))
                if r > 1:
                    await self.configure(p, frozen=importing)
            except BaseException:
                for srv in servers[len(p.chain) + 1 :]:  # (_new_block gave back the one that failed)
                    self.alloc.release(srv.server_id)
                await self.free_partitions([p])
                raise
            return p
        finally:  # the blocks are in the owner index by now (or were never made)
            self.quotas.give_back(node, r)

    async def _new_block(
        self, node: Node, srv: ServerInfo, p: Partition, importing: bool, head: bool
    ) -> BlockRef:
        try:
            aid = await self.catalog.next_id("alloc")
        except BaseException:
            self.alloc.release(srv.server_id)
            raise
        watch = self.watch_ops(node) if head else []  # a chain's head notifies, nobody else
        req = {
            "alloc": aid,
            "struct": node.struct_id,
            "kind": node.kind,
            "lo": p.lo,
            "hi": p.hi,
            "importing": importing,
            "watch": watch,
        }
        try:
            await srv.peer.call(Op.NEW_BLOCK, codec.pack_json(req))
            if head:
                await self.settle_watch(node, srv, aid, watch)
        except Exception:
            self.alloc.release(srv.server_id)
            raise
        self.owner[aid] = node.struct_id
        return BlockRef(srv.server_id, aid)

    # -- replica chains (replica.py has the memory servers' side) ------------------------------

    async def configure(self, p: Partition, frozen: bool) -> None:
        """Tell each block of a chain its successor and role; `frozen`: writes at the head and
        reads at the tail answer REDO until configured again unfrozen."""
        chain = p.chain
        for i in reversed(range(len(chain))):  # tail first: a head never forwards to a stale role
            nxt = chain[i + 1] if i + 1 < len(chain) else None
            args = {
                "alloc": chain[i].alloc,
                "next": [self.alloc.servers[nxt.server_id].address, nxt.alloc] if nxt else None,
                "head": i == 0,
                "tail": i == len(chain) - 1,
                "frozen": frozen,
            }
            await self.send(chain[i], Op.CHAIN, args)

    async def resync(self, p: Partition) -> None:
        """The head's whole state to every other block of its (frozen) chain."""
        if len(p.chain) > 1:
            to = [[self.alloc.servers[r.server_id].address, r.alloc] for r in p.chain[1:]]
            await self.send(p.chain[0], Op.SYNC, {"alloc": p.chain[0].alloc, "to": to})

    async def restructure(self, p: Partition, step: Callable[[], Awaitable[Any]]) -> None:
        """Run `step` (a split, merge, seal or import at the chain's head) and carry its result
        to the followers: freeze, step, resync, unfreeze. If the resync fails the chain stays
        frozen (a follower's server is failing: the chain's repair resyncs it)."""
        if len(p.chain) == 1:
            await step()
            return
        await self.configure(p, frozen=True)
        try:
            await step()
        except BaseException:
            await self.configure(p, frozen=False)  # the head undid it: the followers still match
            raise
        await self.resync(p)
        await self.configure(p, frozen=False)

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
        for p in node.partitions:  # a chain's head notifies, nobody else
            by_server.setdefault(p.chain[0].server_id, []).append(p.chain[0].alloc)
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
        free, need = self.alloc.free_blocks(), num_blocks * node.replicas
        if need > free:  # refuse before taking any: blocks would only be taken and given back
            raise errors.OutOfMemoryError(f"{node.path} needs {need} blocks; the pool has {free} free")
        self.quotas.check(node.path, need)
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
        if node.busy or node.mending:  # a chain to mend goes first: no new split starts before it
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
            if not self.attached(node):  # removed while the target was made: nothing to split
                await self.free_partitions([newp])
                return
            tgt = self._server(newp.chain[0])
            old_hi, p.hi = p.hi, at
            node.partitions.insert(i + 1, newp)
            node.epoch += 1
            req = {"alloc": alloc, "at": at, "target": tgt.address, "target_alloc": newp.chain[0].alloc}
            try:
                await self.save(node)  # the target is listed before any key moves into it
                await self.restructure(p, lambda: src.peer.call(Op.SPLIT, codec.pack_json(req)))
                self.counters.splits += 1
            except Exception:
                p.hi = old_hi
                if newp in node.partitions:  # (a remove meanwhile took every partition)
                    node.partitions.remove(newp)
                node.epoch += 1
                await self.free_partitions([newp])
                await self._save_quietly(node)
                raise
            if len(newp.chain) > 1:  # the target's head has the keys: its followers get them
                try:
                    await self.resync(newp)
                    await self.configure(newp, frozen=False)
                except errors.StateError as e:  # a follower's server died: heal_chains mends it
                    log.warning("%s: a new chain could not be synced yet: %s", node.path, e)
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

            async def merge_into_q() -> None:
                expect = {"alloc": q.chain[0].alloc, "lo": p.lo, "hi": p.hi, "bytes": used}
                await tgt.peer.call(Op.EXPECT, codec.pack_json(expect))  # may refuse: target too full
                q.lo, q.hi = min(p.lo, q.lo), max(p.hi, q.hi)
                node.partitions.remove(p)
                node.epoch += 1
                req = {"alloc": alloc, "target": tgt.address, "target_alloc": q.chain[0].alloc}
                await src.peer.call(Op.MERGE_OUT, codec.pack_json(req))
                await self.save(node)  # only now is the source empty: until here the record lists it

            if len(p.chain) > 1:  # nobody reads the source's tail while its keys move out
                await self.configure(p, frozen=True)
            try:
                await self.restructure(q, merge_into_q)
            except BaseException:
                if p in node.partitions and len(p.chain) > 1:
                    await self.configure(p, frozen=False)
                raise
            await self.free_partitions([p])
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
            if not self.attached(node):
                await self.free_partitions([newp])
                return
            try:
                await self.save(node, extra=newp)  # a sealed tail must never be the last one listed
                await self.restructure(
                    tail, lambda: src.peer.call(Op.LINK_NEXT, codec.pack_json({"alloc": alloc}))
                )
            except Exception:
                await self.free_partitions([newp])
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
        """A sealed queue segment emptied: drop it from the map and free it (after whatever
        else changes the queue's map, such as a restart's reconciling, is done)."""
        node, i = self.locate(alloc)
        deadline = asyncio.get_running_loop().time() + DRAIN_WAIT_S
        while node.busy and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        node, i = self.locate(alloc)
        if i == len(node.partitions) - 1:
            return
        p = node.partitions.pop(i)
        node.epoch += 1
        await self.save(node)
        await self.free_partitions([p])
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
                if not self.attached(node):
                    raise errors.PathNotFoundError(f"{node.path} was removed while it grew")
            if added and persist:
                await self.save(node)
        except BaseException:
            for p in added:  # a refused grow leaves the file as it was
                if p in node.partitions:
                    node.partitions.remove(p)
            await self.free_partitions(added)
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
            tail = p.chain[-1]  # what the tail holds is on every replica
            out.extend(await self._server(tail).peer.call(Op.EXPORT, [pack_u64(tail.alloc)]))
        return out

    async def import_into(self, p: Partition, records: list[bytes]) -> None:
        srv = self._server(p.chain[0])
        await self.restructure(p, lambda: srv.peer.call(Op.IMPORT, [pack_u64(p.chain[0].alloc), *records]))

    async def seal(self, p: Partition) -> None:
        """A queue segment stops taking enqueues (on every replica)."""
        await self.restructure(p, lambda: self.send(p.chain[0], Op.LINK_NEXT, {"alloc": p.chain[0].alloc}))

    def server_lost(
        self, server_id: int, how: str = "died"
    ) -> tuple[list[Node], list[tuple[Node, Partition]]]:
        """A server is dead: a partition whose chain has live blocks left is to be mended
        (returned), one with none is lost. Returns (structures that lost data, to mend)."""
        srv = self.alloc.servers[server_id]
        hit = []
        mend: list[tuple[Node, Partition]] = []
        for node in list(self.ns.by_id.values()):
            lost = []
            for p in node.partitions:
                if any(r.server_id == server_id for r in p.chain):
                    if any(
                        r.server_id != server_id and self.alloc.servers[r.server_id].alive for r in p.chain
                    ):
                        mend.append((node, p))
                    else:
                        lost.append(p)
            if not lost:
                continue
            for p in lost:
                p.lost = True
            node.lost_reason = f"memory server {srv.address} {how} holding {len(lost)} of its blocks"
            if node.state is NodeState.ACTIVE:
                node.set_state(NodeState.LOST)
            node.epoch += 1
            hit.append(node)
        return hit, mend

    async def mend(self, node: Node, p: Partition) -> None:
        """Drop the dead blocks of a partition's chain, put new ones on other servers (a free
        block of the same size each, as far as the pool has them), give them the head's state
        and let the chain serve again. Writes the head held meanwhile are answered then."""
        live = [r for r in p.chain if self.alloc.servers[r.server_id].alive]
        for r in p.chain:
            if r not in live:
                self.owner.pop(r.alloc, None)
        p.chain = live
        node.epoch += 1
        head = self.alloc.servers[live[0].server_id]
        avoid = {r.server_id for r in live}
        while len(p.chain) < node.replicas:
            try:
                (srv,) = self.alloc.pick(1, avoid=avoid, block_size=head.block_size)
            except errors.OutOfMemoryError:
                log.warning("%s: no server for a replica; its chain stays %d long", node.path, len(p.chain))
                break
            p.chain.append(await self._new_block(node, srv, p, importing=False, head=False))
            avoid.add(srv.server_id)
        if not self.attached(node):  # removed meanwhile: the blocks just made are nobody's
            for r in p.chain[len(live) :]:
                await self.free_ref(r)
            return
        await self.configure(p, frozen=True)
        if len(p.chain) > 1:
            await self.resync(p)
        else:  # alone now: no copy to make, but the writes it held are safe on it
            await self.send(p.chain[0], Op.SYNC, {"alloc": p.chain[0].alloc, "to": []})
        await self.configure(p, frozen=False)
        node.epoch += 1
        await self.save(node)
        await self.push_watch(node)  # the head may be another block now
        self.counters.repairs += 1

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
