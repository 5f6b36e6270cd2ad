"""Memory servers as the controller sees them: registration, block reports, rejoining after a
controller restart, loss; and holding creates while a known server is still joining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from taureau.common import errors
from taureau.state import codec, kinds
from taureau.state.allocator import Allocator, ServerInfo, ServerState
from taureau.state.catalog import Catalog
from taureau.state.codec import Op
from taureau.state.elastic import BlockManager
from taureau.state.limits import registered_server_limits
from taureau.state.namespace import Namespace, Node, NodeState, Partition
from taureau.state.recovery import BlockReport, reconcile
from taureau.state.rpc import Peer

log = logging.getLogger(__name__)

LINKS = ("tcp", "unix", "pair")
MEND_WAIT_S = 30.0  # how long a chain's mending waits for its structure's split or merge

# After a restart every server in the catalog is JOINING and every structure with blocks is
# *unsettled* (busy: no split, merge or expiry) until each server holding its blocks has
# reported or been declared dead; then its map is reconciled with fresh reports (DESCRIBE)
# and saved. Clients meanwhile keep using the maps they have (memory servers serve them
# without the controller) and get the catalog's maps from the restarted controller.


class Membership:
    """Owns server state transitions; the controller forwards REGISTER/REPORT and link losses."""

    def __init__(
        self,
        ns: Namespace,
        alloc: Allocator,
        blocks: BlockManager,
        catalog: Catalog,
        *,
        rejoin_s: float,
        join_wait_s: float,
    ) -> None:
        self.ns = ns
        self.alloc = alloc
        self.blocks = blocks
        self.catalog = catalog
        self.rejoin_s = rejoin_s  # how long a restarted controller waits for known servers
        self.join_wait_s = join_wait_s  # how long a create waits for a joining server's blocks
        self.reports: dict[int, dict[int, BlockReport]] = {}  # server id -> blocks reported so far
        self.unsettled: set[int] = set()  # structures waiting for their servers to report
        self.changed = asyncio.Event()  # set whenever the pool may have grown
        self._rejoin_until = 0.0  # loop time until which a server that drops mid-report may retry
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- restart ------------------------------------------------------------------------------

    def restore(self, servers: dict[int, dict[str, Any]]) -> None:
        """Known servers from the catalog, JOINING; structures with blocks, unsettled."""
        for sid, rec in servers.items():
            info = ServerInfo(sid, rec["address"], rec["block_size"], rec["num_blocks"])
            info.state, info.link = ServerState.JOINING, str(rec.get("link", "tcp"))
            self.alloc.add_server(info)
        for node in self.ns.by_id.values():
            if node.partitions:
                self.unsettled.add(node.struct_id)
                node.busy = True

    async def start(self) -> None:
        """Declare dead what cannot rejoin (servers linked by a socketpair), settle what can
        be, and give the rest `rejoin_s`."""
        for srv in list(self.alloc.servers.values()):
            if srv.state is ServerState.JOINING and not srv.can_rejoin:
                await self._dead(srv, "was linked to the previous controller's process")
        await self._settle_ready()
        if any(s.state is ServerState.JOINING for s in self.alloc.servers.values()):
            self._rejoin_until = asyncio.get_running_loop().time() + self.rejoin_s
            self._spawn(self._rejoin_deadline())

    async def _rejoin_deadline(self) -> None:
        await asyncio.sleep(self.rejoin_s)
        for srv in list(self.alloc.servers.values()):
            if srv.state is ServerState.JOINING:
                await self._dead(srv, f"did not rejoin within {self.rejoin_s:g}s of a controller restart")

    async def forget(self, link: str, how: str) -> None:
        """Declare dead every known server linked by `link` that has not come back (the
        process that started it knows it is gone: no need to wait for the rejoin window)."""
        for srv in list(self.alloc.servers.values()):
            if srv.state is ServerState.JOINING and srv.link == link:
                await self._dead(srv, how)

    # -- registration ---------------------------------------------------------------------------

    async def register(self, peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
        if "server_id" in peer.info:
            raise errors.StateProtocolError("this connection already registered a memory server")
        address, block_size, num_blocks = a.get("address"), a.get("block_size"), a.get("num_blocks")
        if not isinstance(address, str):
            raise errors.StateProtocolError("argument 'address' must be a string")
        Allocator.check_shape(block_size, num_blocks)
        assert isinstance(block_size, int) and isinstance(num_blocks, int)
        sid = a.get("server_id")
        known = self.alloc.servers.get(sid) if isinstance(sid, int) else None
        if known is not None and known.state is ServerState.JOINING:
            if known.block_size != block_size:
                raise errors.StateProtocolError(
                    f"memory server {sid} had {known.block_size}-byte blocks, not {block_size}"
                )
            info = known
            info.address, info.num_blocks, info.used = address, num_blocks, 0
        elif known is not None and known.alive:
            raise errors.StateProtocolError(f"memory server {sid} is registered already")
        else:  # new, or declared dead meanwhile: whatever it holds is nobody's now
            info = ServerInfo(await self.catalog.next_id("server"), address, block_size, num_blocks)
            info.state = ServerState.JOINING
            self.alloc.add_server(info)
        link = a.get("link", "tcp")
        info.link = link if link in LINKS else "tcp"
        info.set_state(ServerState.REPORTING)
        info.peer = peer
        peer.info["server_id"] = info.server_id
        self.reports[info.server_id] = {}
        # From now on this link also carries block data (EXPORT replies, notifications).
        peer.decoder.set_limits(registered_server_limits(block_size))
        await self.catalog.save_server(info.server_id, info.record())
        log.info("memory server %s registered as %d (%d blocks)", address, info.server_id, num_blocks)
        return {"server_id": info.server_id}

    async def report(self, peer: Peer, a: dict[str, Any]) -> dict[str, Any]:
        srv = self.alloc.servers.get(peer.info.get("server_id", -1))
        if srv is None or srv.peer is not peer or srv.state is not ServerState.REPORTING:
            raise errors.StateProtocolError("only a memory server that is registering reports blocks")
        blocks = a.get("blocks")
        if not isinstance(blocks, list):
            raise errors.StateProtocolError("report takes a list of blocks")
        have = self.reports[srv.server_id]
        if len(have) + len(blocks) > srv.num_blocks:
            raise errors.StateProtocolError(f"memory server {srv.address} reports more blocks than it has")
        for d in blocks:
            r = BlockReport.parse(d)
            have[r.alloc] = r
        if a.get("done"):
            await self._reported(srv)
        return {}

    async def _reported(self, srv: ServerInfo) -> None:
        have = self.reports.pop(srv.server_id, {})
        listed = {
            r.alloc
            for n in self.ns.by_id.values()
            for p in n.partitions
            for r in p.chain
            if r.server_id == srv.server_id
        }
        srv.used = len(have)
        srv.set_state(ServerState.SERVING)
        for alloc in have:
            if alloc not in listed:  # made for a map that was never saved, or of a removed structure
                await self.blocks.free_block(srv, alloc)
        log.info("memory server %s serving: %d block(s) kept", srv.address, srv.used)
        self.changed.set()
        await self._settle_ready()

    def usage(self, peer: Peer, a: dict[str, Any]) -> None:
        """A memory server says how much memory its blocks take (every second)."""
        srv = self.alloc.servers.get(peer.info.get("server_id", -1))
        used, budget = a.get("used_bytes"), a.get("budget_bytes")
        if srv is not None and srv.peer is peer and isinstance(used, int) and isinstance(budget, int):
            srv.used_bytes, srv.budget_bytes = used, budget

    # -- losing servers -----------------------------------------------------------------------

    def link_lost(self, peer: Peer) -> None:
        """A registration link dropped (a synchronous callback: the writes happen in a task)."""
        srv = self.alloc.servers.get(peer.info.get("server_id", -1))
        if srv is None or srv.peer is not peer:
            return
        rejoining = asyncio.get_running_loop().time() < self._rejoin_until
        if srv.state is ServerState.REPORTING and srv.can_rejoin and rejoining:
            self.reports.pop(srv.server_id, None)
            srv.set_state(ServerState.JOINING)  # it may try again until the rejoin deadline
            return
        if srv.alive:
            self._spawn(self._dead(srv, "died"))

    async def _dead(self, srv: ServerInfo, how: str) -> None:
        srv.set_state(ServerState.DEAD)
        self.blocks.counters.servers_lost += 1
        self.reports.pop(srv.server_id, None)
        hit, mend = self.blocks.server_lost(srv.server_id, how)
        log.warning(
            "memory server %s %s; %d structure(s) lost blocks, %d chain(s) to mend",
            srv.address, how, len(hit), len(mend),
        )  # fmt: skip
        for node in hit:
            if node.struct_id not in self.unsettled:
                await self._save_quietly(node)
        with contextlib.suppress(errors.StateError):
            await self.catalog.delete_server(srv.server_id)
        self.changed.set()  # a create waiting for it stops waiting
        by_node: dict[int, tuple[Node, list[Partition]]] = {}
        for node, p in mend:
            if node.struct_id not in self.unsettled:  # (an unsettled one is mended once reconciled)
                by_node.setdefault(node.struct_id, (node, []))[1].append(p)
        for node, parts in by_node.values():
            await self._mend(node, parts)
        await self._settle_ready()

    async def _mend(self, node: Node, parts: list[Partition]) -> None:
        """Mend chains of one structure once the split or merge running on it ends (they fail
        fast when a server died); none starts meanwhile (`mending`), so the wait is short."""
        node.mending += 1
        try:
            deadline = asyncio.get_running_loop().time() + MEND_WAIT_S
            while node.busy and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            node.mending -= 1
        if self.ns.by_id.get(node.struct_id) is not node:
            return  # removed meanwhile
        if node.busy:
            log.error("%s: chains not mended, the structure stayed busy", node.path)
            return
        node.busy = True
        try:
            for p in parts:
                if p in node.partitions:  # (not undone by the split that was running)
                    await self.blocks.mend(node, p)
        except errors.StateError as e:
            log.error("mending a chain of %s failed: %s", node.path, e)
        finally:
            node.busy = False

    async def heal_chains(self) -> None:
        """Mend every replicated chain that names a dead server or is shorter than it should be
        while a server could take a block (the controller runs this every lease tick). A chain
        made while a server died (a split's target) is missed by that death's mending; a chain
        left short gets refilled once a server joins."""
        for node in list(self.ns.by_id.values()):
            if node.replicas == 1 or node.busy or node.mending or node.state is not NodeState.ACTIVE:
                continue
            if node.struct_id in self.unsettled:
                continue
            broken = [p for p in node.partitions if not p.lost and self._needs_mending(node, p)]
            if broken:
                await self._mend(node, broken)

    def _needs_mending(self, node: Node, p: Partition) -> bool:
        servers = self.alloc.servers
        if not any(servers[r.server_id].alive for r in p.chain):
            return False  # nothing to mend from (lost when its server's death was handled)
        if any(not servers[r.server_id].alive for r in p.chain):
            return True
        if len(p.chain) >= node.replicas:
            return False
        size = servers[p.chain[0].server_id].block_size
        members = {r.server_id for r in p.chain}
        return any(
            s.free > 0 and s.block_size == size and s.server_id not in members for s in servers.values()
        )

    async def _save_quietly(self, node: Node) -> None:
        try:
            await self.blocks.save(node)
        except errors.StateError as e:
            log.error("saving %s failed: %s", node.path, e)

    # -- settling structures after a restart -------------------------------------------------

    async def _settle_ready(self) -> None:
        for sid in list(self.unsettled):
            node = self.ns.by_id.get(sid)
            if node is None:
                self.unsettled.discard(sid)
                continue
            servers = {r.server_id for p in node.partitions for r in p.chain}
            if all(self.alloc.servers[s].state in (ServerState.SERVING, ServerState.DEAD) for s in servers):
                self.unsettled.discard(sid)
                await self._repair(node)

    async def _repair(self, node: Node) -> None:
        try:
            reports = await self._describe(node)
            for p in node.partitions:  # a chain goes on with the blocks that came back
                live = [r for r in p.chain if r.alloc in reports]
                if live and len(live) < len(p.chain):
                    for r in p.chain:
                        if r not in live:
                            self.blocks.owner.pop(r.alloc, None)
                    p.chain = live
            rep = reconcile(node, reports, kinds.get(node.kind).layout)
            for ref in rep.free:
                await self.blocks.free_ref(ref)
            for ref in rep.seal:
                await self.blocks.command(ref, Op.LINK_NEXT, {"alloc": ref.alloc})
            for ref, lo, hi in rep.narrow:
                await self.blocks.command(ref, Op.RESET_RANGE, {"alloc": ref.alloc, "lo": lo, "hi": hi})
            node.partitions = rep.partitions
            if rep.lost:
                node.lost_reason = (
                    node.lost_reason or f"{rep.lost} block(s) did not come back after a restart"
                )
                if node.state is NodeState.ACTIVE:
                    node.set_state(NodeState.LOST)
            if rep.needs_tail and node.state is NodeState.ACTIVE:
                node.partitions.append(await self.blocks.new_partition(node, 0, 0))
            node.epoch += 1
            await self.blocks.save(node)
            if node.replicas > 1 and node.state is NodeState.ACTIVE:
                for p in list(node.partitions):  # followers get the head's state, lost ones replaced
                    await self.blocks.mend(node, p)
            log.info("%s reconciled after a restart (%d lost)", node.path, rep.lost)
        except errors.StateError as e:
            log.error("reconciling %s failed: %s", node.path, e)
        finally:
            node.busy = False

    async def _describe(self, node: Node) -> dict[int, BlockReport]:
        by_server: dict[int, list[int]] = {}
        for p in node.partitions:
            for r in p.chain:
                by_server.setdefault(r.server_id, []).append(r.alloc)
        out: dict[int, BlockReport] = {}
        for sid, allocs in by_server.items():
            srv = self.alloc.servers[sid]
            if srv.state is not ServerState.SERVING:
                continue
            try:
                reply = codec.unpack_json(
                    await srv.peer.call(Op.DESCRIBE, codec.pack_json({"allocs": allocs}))
                )
            except errors.StateError as e:  # it died meanwhile: its blocks count as lost
                log.warning("describing %s's blocks on %s failed: %s", node.path, srv.address, e)
                continue
            for d in reply.get("blocks", []):
                rep = BlockReport.parse(d)
                out[rep.alloc] = rep
        return out

    # -- waiting for the pool ------------------------------------------------------------------

    async def wait_capacity(self, blocks: int) -> None:
        """Hold a create (at most join_wait_s) while the pool is short and a known memory
        server is joining, rather than refuse what it will be able to serve."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.join_wait_s
        while self.alloc.free_blocks() < blocks and self.alloc.joining():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
