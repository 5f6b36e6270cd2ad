"""State controller: namespace API, memory-server registry, leases, flushes and notifications."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from taureau.common import errors
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.metadata.store import MetadataStore
from taureau.state import client_auth, codec, internal_auth, kinds, metrics
from taureau.state.allocator import Allocator, ServerState
from taureau.state.catalog import Catalog, Loaded
from taureau.state.client_auth import ClientGate, StateAccess
from taureau.state.codec import EVENT, Frame, Op
from taureau.state.elastic import BlockManager
from taureau.state.limits import controller_limits
from taureau.state.membership import Membership
from taureau.state.namespace import Namespace, Node, NodeState, split_path
from taureau.state.notify import Subscriptions
from taureau.state.owned_dumps import OwnedDumps
from taureau.state.persist import Backings, decode_dump, encode_dump
from taureau.state.quotas import Quotas
from taureau.state.rpc import Peer

log = logging.getLogger(__name__)

MAX_REPLICAS = 8  # blocks per chain: a chain needs that many memory servers


def _str(a: dict[str, Any], key: str) -> str:
    v = a.get(key)
    if not isinstance(v, str):
        raise errors.StateProtocolError(f"argument {key!r} must be a string")
    return v


class Controller:
    """One per deployment. Runs on the caller's event loop.

    >>> c = Controller(lease_ms=10000, data_dir="/tmp/state", store=metadata_store)
    >>> await c.start()                      # owns and loads the durable namespace; no port yet
    >>> await c.attach(sock)                 # a memory server linked through a socketpair
    >>> await c.wait_for_servers(1, 30)      # ...registers its pool
    >>> await c.listen("127.0.0.1", 9090)    # clients can connect: the pool can serve

    The client port opens last on purpose: scripts, probes and harnesses take an accepting
    port to mean "ready", so it must not accept before a create can be served.
    The namespace lives in `store` (catalog.py), so a restarted controller (even after
    kill -9) has every structure back; without a store it lives in memory only.
    """

    def __init__(
        self,
        *,
        lease_ms: int,
        data_dir: str,
        store: MetadataStore | None = None,
        rejoin_ms: int = 30_000,
        join_wait_ms: int = 5_000,
        internal_secret: bytes | None = None,
        access: StateAccess | None = None,
    ) -> None:
        if lease_ms < 10:
            raise ValueError("lease_ms must be at least 10")
        self.lease_s = lease_ms / 1000
        # What memory servers joining over TCP prove they hold (internal_auth.py).
        self.internal_secret = internal_secret if internal_secret is not None else internal_auth.create_secret()
        self.grace_s = lease_ms / 1000  # the "lease period and grace each"
        # With authentication on: clients prove a role, paths are checked (client_auth.py).
        self.gate = ClientGate(access, self.internal_secret) if access is not None else None
        self._own_store = store is None
        self.catalog = Catalog(store if store is not None else EmbeddedMetadataStore(None))
        self.ns = Namespace()
        self.alloc = Allocator()
        self.counters = metrics.Counters()
        self.quotas = Quotas(self.ns, self.catalog, self.counters, owner={})
        self.blocks = BlockManager(
            self.ns, self.alloc, self.catalog, self._watch_ops, self.counters, self.quotas
        )
        self.members = Membership(
            self.ns,
            self.alloc,
            self.blocks,
            self.catalog,
            rejoin_s=rejoin_ms / 1000,
            join_wait_s=join_wait_ms / 1000,
        )
        self.backings = Backings(data_dir)
        self.owned_dumps = OwnedDumps(self.catalog, self.backings)
        self.subs = Subscriptions()
        self.server: asyncio.AbstractServer | None = None
        self.unix_server: asyncio.AbstractServer | None = None
        self.address = ""
        self.peers: set[Peer] = set()  # every accepted connection
        self._making: dict[int, asyncio.Future[None]] = {}  # struct id -> its create/load finishing
        self._expiry_task: asyncio.Task | None = None
        self.closing = False  # set by close(): peers dropping then is expected, not a loss
        self._handlers: dict[int, Callable[[Peer, dict], Any]] = {
            Op.HELLO: self._hello,
            Op.CREATE: self._create,
            Op.OPEN: self._open,
            Op.EXISTS_PATH: self._exists,
            Op.REMOVE_PATH: self._remove,
            Op.RENAME: self._rename,
            Op.LIST: self._list,
            Op.STATUS: self._status,
            Op.BLOCK_MAP: self._block_map,
            Op.RENEW: self._renew,
            Op.CLOSE: lambda peer, a: {},
            Op.DUMP: self._dump,
            Op.LOAD: self._load,
            Op.DROP_DUMP: self._drop_dump,
            Op.STATS: self._stats,
            Op.SUBSCRIBE: self._subscribe,
            Op.CHALLENGE: lambda peer, a: internal_auth.challenge(peer.info),
            Op.PROVE: lambda peer, a: internal_auth.prove(peer.info, self.internal_secret, a),
            Op.AUTH: self._auth,
            Op.REGISTER: self._register,
            Op.REPORT: self.members.report,
            Op.SPLIT_REQUEST: lambda peer, a: self.blocks.split(self._own_block(peer, a), a["at"]),
            Op.MERGE_REQUEST: lambda peer, a: self.blocks.merge(self._own_block(peer, a), a["used"]),
            Op.APPEND_REQUEST: lambda peer, a: self.blocks.append(self._own_block(peer, a)),
            Op.DRAINED: lambda peer, a: self.blocks.drained(self._own_block(peer, a)),
            Op.GROW: self._grow,
            Op.QUOTA: self._quota,
        }

    async def start(self) -> None:
        """Own the namespace (one controller per catalog), load it, and start lease sweeps.
        Memory servers can be attached from now on; clients only after listen()."""
        await self.catalog.claim(f"controller pid {os.getpid()}")
        try:
            loaded = await self.catalog.load()
            await self._restore(loaded)
        except BaseException:
            await self.catalog.release()
            raise
        self._expiry_task = asyncio.ensure_future(self._expiry_loop())

    async def _restore(self, loaded: Loaded) -> None:
        """Rebuild the namespace from the catalog: structures get a fresh lease (deadlines are
        not stored), known memory servers get `rejoin_ms` to come back and report."""
        moved: set[int] = set()
        for _, rename in sorted(loaded.renames.items()):  # finish renames a crash cut short
            src, dst = rename["src"], rename["dst"]
            for sid, rec in loaded.structures.items():
                if rec["path"] == src or rec["path"].startswith(src + "/"):
                    rec["path"] = dst + rec["path"][len(src) :]
                    moved.add(sid)
        until = time.monotonic() + self.lease_s
        for sid, rec in sorted(loaded.structures.items()):
            try:
                node = self.ns.restore(sid, rec, until)
            except errors.StateError as e:  # its blocks are freed when their servers report
                log.error("structure %d (%s) not restored: %s", sid, rec.get("path"), e)
                continue
            self.blocks.index(node)
            if sid in moved:
                await self.blocks.save(node)
        for n in loaded.renames:
            await self.catalog.delete_rename(n)
        self.quotas.restore(loaded.quotas)
        await self.owned_dumps.restore(loaded.dumps, set(self.ns.by_id))
        self.members.restore(loaded.servers)
        await self.members.start()
        if loaded.structures or loaded.servers:
            log.info(
                "state namespace restored: %d structure(s), %d memory server(s) to rejoin",
                len(self.ns.by_id),
                len(loaded.servers),
            )

    def _accept(self, local: bool = False) -> Peer:
        """A connection: `local` ones (our socketpair, our owner-only Unix socket) are trusted
        for internal operations as they are; TCP ones must prove the internal secret first."""
        peer = Peer(self._handle, self._peer_closed, limits=controller_limits(), flow_control=True)
        peer.info["local"] = peer.info[internal_auth.PROVEN] = local
        self.peers.add(peer)
        return peer

    def _accept_local(self) -> Peer:
        return self._accept(local=True)

    async def listen(self, host: str = "127.0.0.1", port: int = 9090) -> None:
        """Open the client port (memory servers may register through it too)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, host, port)
        self.address = f"{host}:{self.server.sockets[0].getsockname()[1]}"
        log.info("state controller on %s", self.address)

    async def listen_unix(self, path: str) -> None:
        """Take memory servers of this host on a local socket (owner-only), before the client
        port opens; the path stays the same across restarts, so they can rejoin through it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a controller that died: the data directory is locked to us
        self.unix_server = await asyncio.get_running_loop().create_unix_server(self._accept_local, path)
        os.chmod(path, 0o600)

    async def attach(self, sock: socket.socket) -> None:
        """Serve one end of a connected socket (a socketpair to a memory server this process
        starts) as if it had been accepted on the client port, which need not be open yet."""
        await asyncio.get_running_loop().connect_accepted_socket(self._accept_local, sock)

    async def wait_for_servers(self, count: int, timeout: float) -> None:
        """Return once `count` memory servers serve; StateUnavailableError after `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while sum(s.state is ServerState.SERVING for s in self.alloc.servers.values()) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise errors.StateUnavailableError(f"{count} memory server(s) did not register in time")
            self.members.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.members.changed.wait(), remaining)

    async def close(self) -> None:
        """Stop serving. Work in flight is cancelled as a crash would cut it: every step of it
        is ordered so that the next controller can finish or undo it (elastic.py)."""
        self.closing = True
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        self.members.close()
        for srv in (self.server, self.unix_server):
            if srv is not None:
                srv.close()
        for peer in list(self.peers):
            peer.close()
            peer.cancel_work()
        self.subs.close()
        await self.catalog.release()
        if self._own_store:
            await self.catalog.store.close()

    # -- dispatch ------------------------------------------------------------------------------

    def _handle(self, peer: Peer, fr: Frame) -> Any:
        if fr.op in (Op.NOTIFY, Op.USAGE):
            if "server_id" not in peer.info or fr.kind != EVENT:
                raise errors.StateProtocolError(
                    f"only a registered memory server sends {codec.op_name(fr.op)}"
                )
            if fr.op == Op.NOTIFY:
                self._fan_out(fr.fields)
            else:
                self.members.usage(peer, codec.unpack_json(fr.fields))
            return None
        fn = self._handlers.get(fr.op)
        if fn is None:
            raise errors.StateProtocolError(f"controller does not serve op {fr.op}")
        if self.gate is not None and fr.op in client_auth.CLIENT_OPS and not peer.info.get(internal_auth.PROVEN):
            return self._gated(self.gate, peer, fr.op, fn, codec.unpack_json(fr.fields))
        res = fn(peer, codec.unpack_json(fr.fields))
        if asyncio.iscoroutine(res):
            return self._json_reply(res)
        return codec.pack_json(res if res is not None else {})

    @staticmethod
    async def _gated(gate: ClientGate, peer: Peer, op: int, fn: Callable[[Peer, dict], Any], args: dict) -> list[bytes]:
        """A client's request with authentication on: its role checked against the paths it
        names before anything is done, and a ticket for the memory servers with a block map."""
        role, expires_at = gate.identity(peer.info)
        await gate.authorize(role, op, args)
        res = fn(peer, args)
        if asyncio.iscoroutine(res):
            res = await res
        if isinstance(res, dict) and "partitions" in res:
            res["ticket"] = gate.ticket(res["id"], expires_at)
        return codec.pack_json(res if res is not None else {})

    async def _auth(self, peer: Peer, a: dict) -> dict:
        if self.gate is None:
            return {"role": None}  # authentication off: credentials are not needed, nor checked
        return await self.gate.authenticate(peer.info, a)

    @staticmethod
    async def _json_reply(coro) -> list[bytes]:
        res = await coro
        return codec.pack_json(res if res is not None else {})

    def _peer_closed(self, peer: Peer) -> None:
        self.peers.discard(peer)
        if "server_id" in peer.info and not self.closing:
            self.members.link_lost(peer)
        self.subs.drop_peer(peer)

    def _map(self, node: Node) -> dict[str, Any]:
        return node.block_map(self.alloc.addresses())

    # -- namespace API ------------------------------------------------------------------------

    async def _register(self, peer: Peer, a: dict) -> dict:
        """A memory server joins: over TCP only once it proved the internal secret. A local
        one is told the secret, to prove itself to the other memory servers."""
        internal_auth.require(peer.info, "REGISTER")
        reply = await self.members.register(peer, a)
        reply["client_auth"] = self.gate is not None  # memory servers then serve ticket holders only
        if peer.info.get("local"):
            reply["secret"] = self.internal_secret.hex()
        return reply

    def _hello(self, peer: Peer, a: dict) -> dict:
        return {"lease_ms": int(self.lease_s * 1000), "version": 1}

    async def _create(self, peer: Peer, a: dict) -> dict:
        path, kind = _str(a, "path"), kinds.get(a.get("kind")).name
        if a.get("exist_ok") and self.ns.exists(path):
            return await self._open(peer, {"path": path, "kind": kind})
        num_blocks = a.get("num_blocks", 1)
        if not isinstance(num_blocks, int) or not 1 <= num_blocks <= 4096:
            raise errors.StateProtocolError("num_blocks must be an integer in [1, 4096]")
        replicas = a.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= MAX_REPLICAS:
            raise errors.StateProtocolError(f"replicas must be an integer in [1, {MAX_REPLICAS}]")
        backing = a.get("backing")
        if a.get("mapped") and not backing:
            raise errors.StateProtocolError("a mapped structure needs a backing path")
        if backing is not None:
            self.backings.resolve(backing)  # reject unknown schemes before allocating anything
        self.ns.check_new(path, kind)
        await self.members.wait_capacity(num_blocks * replicas)  # a known memory server may be joining
        struct_id = await self.catalog.next_id("struct")
        if a.get("exist_ok") and self.ns.exists(path):  # made by someone else while we waited
            return await self._open(peer, {"path": path, "kind": kind})
        node = self.ns.create(
            path,
            kind,
            time.monotonic() + self.lease_s,
            struct_id,
            replicas=replicas,
            pinned=bool(a.get("pinned")),
            mapped=bool(a.get("mapped")),
            backing=backing,
        )
        await self._fill(node, self.blocks.populate(node, num_blocks))
        return self._map(node)

    async def _fill(self, node: Node, filling: Coroutine[Any, Any, None]) -> None:
        """Give a new structure its blocks and save it, or leave nothing behind. Until then
        opens of it wait (_ready): a map without its blocks is no use to anyone."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._making[node.struct_id] = done
        try:
            await filling
            self._check_attached(node)
            await self.blocks.save(node)
            self._check_attached(node)  # removed meanwhile: its remover deleted the record
        except BaseException:
            if self.ns.by_id.get(node.struct_id) is node:
                self.ns.detach(node)
            await self.blocks.free(node)
            raise
        finally:
            del self._making[node.struct_id]
            done.set_result(None)

    def _check_attached(self, node: Node) -> None:
        if self.ns.by_id.get(node.struct_id) is not node:
            raise errors.PathNotFoundError(f"{node.path} was removed while it was being made")

    async def _ready(self, path: str, kind: str | None = None) -> Node:
        """The structure at `path`, once any create, load or reload of it has finished."""
        node = self.ns.structure(path, kind)
        while (making := self._making.get(node.struct_id)) is not None:
            await making
            node = self.ns.structure(path, kind)
        return node

    async def _open(self, peer: Peer, a: dict) -> dict:
        node = await self._ready(_str(a, "path"), a.get("kind"))
        if node.state is NodeState.FLUSHED:
            await self._reload(node, node.backing)
        node.lease_until = max(node.lease_until, time.monotonic() + self.lease_s)
        return self._map(node)

    def _exists(self, peer: Peer, a: dict) -> dict:
        return {"exists": self.ns.exists(_str(a, "path"))}

    async def _remove(self, peer: Peer, a: dict) -> dict:
        node = self.ns.lookup(_str(a, "path"))
        if node.kind == "dir" and node.children and not a.get("recursive", True):
            raise errors.StateNotEmptyError(f"{node.path} is not empty")
        await self._reclaim(node)
        return {}

    async def forget_held_by(self, links: set[str]) -> int:
        """Drop from the namespace every structure with blocks on servers linked by `links`
        (the memory server a process is about to stop with it: its data ends there, and a
        `lost` entry would only stand in the way of the next run's open_or_create). Flushed
        structures have no blocks and stay. Returns how many were dropped."""
        held = {s.server_id for s in self.alloc.servers.values() if s.link in links}
        gone = [
            n for n in list(self.ns.by_id.values())
            if any(r.server_id in held for p in n.partitions for r in p.chain)
        ]  # fmt: skip
        for n in gone:
            if self.ns.by_id.get(n.struct_id) is n:
                self.ns.detach(n)
                await self.catalog.delete_structure(n.struct_id)
        return len(gone)

    async def _reclaim(self, node: Node) -> None:
        """Unlink a subtree and free its blocks; records go first, so a crash in between
        leaves blocks no record lists (freed when their servers report), never the reverse."""
        gone = self.ns.detach(node)
        for n in gone:
            await self.catalog.delete_structure(n.struct_id)
            await self.blocks.free(n)
        await self.owned_dumps.owners_gone({n.struct_id for n in gone})

    async def _rename(self, peer: Peer, a: dict) -> dict:
        src, dst = _str(a, "src"), _str(a, "dst")
        moving = self.ns.lookup(src)
        split_path(dst)
        self.quotas.check(dst, sum(len(p.chain) for n in moving.walk() for p in n.partitions), moving)
        self.ns.rename(src, dst)
        top = self.ns.lookup(dst)
        moved = [n for n in top.walk() if n.kind != "dir"]

        async def save_moved() -> None:
            for n in moved:
                await self.blocks.save(n)

        try:
            if len(moved) > 1:
                await self.catalog.bracket_rename(src, dst, save_moved)
            else:
                await save_moved()
        except errors.StateError:
            self.ns.rename(dst, src)  # not durable: undo (a recorded rename is redone on restart)
            raise
        # Moved structures are watched for what covers their new path from the reply on.
        await self._push_watches(top)
        return {}

    def _list(self, peer: Peer, a: dict) -> dict:
        node = self.ns.lookup(_str(a, "path"))
        return {
            "children": [
                {"name": c.name, "kind": c.kind} for c in sorted(node.children.values(), key=lambda c: c.name)
            ]
        }

    def _status(self, peer: Peer, a: dict) -> dict:
        node = self.ns.lookup(_str(a, "path"))
        remaining = node.lease_until - time.monotonic()
        out = {
            "path": node.path,
            "kind": node.kind,
            "lease_remaining_ms": int(remaining * 1000) if math.isfinite(remaining) else None,  # root: never
        }
        if node.kind != "dir":
            out.update(
                state=node.state.value,
                pinned=node.pinned,
                mapped=node.mapped,
                backing=node.backing,
                blocks=len(node.partitions),
                replicas=node.replicas,
                epoch=node.epoch,
                lost_reason=node.lost_reason,
            )
        else:
            out["children"] = len(node.children)
        return out

    async def _block_map(self, peer: Peer, a: dict) -> dict:
        return self._map(await self._ready(_str(a, "path")))

    def _renew(self, peer: Peer, a: dict) -> dict:
        paths = a.get("paths")
        if not isinstance(paths, list):
            raise errors.StateProtocolError("renew takes a list of paths")
        until = time.monotonic() + self.lease_s
        missing = []
        for p in paths:
            try:
                self.ns.renew(p, until)
            except errors.PathNotFoundError:
                missing.append(p)
        return {"missing": missing, "lease_ms": int(self.lease_s * 1000)}

    def stats(self) -> dict[str, Any]:
        st = metrics.stats(self.alloc, self.ns, self.counters)
        st["quotas"] = self.quotas.report()
        st["subscriptions"] = len(self.subs)
        st["servers_joining"] = sum(
            s.state in (ServerState.JOINING, ServerState.REPORTING) for s in self.alloc.servers.values()
        )
        st["unsettled"] = len(self.members.unsettled)  # structures waiting for a restart's reports
        return st

    def _stats(self, peer: Peer, a: dict) -> dict:
        return self.stats()

    def prometheus_lines(self) -> list[str]:
        """The state layer's metrics, for a /metrics page (standalone's admin app)."""
        st = self.stats()
        return metrics.prometheus_lines(st, st["quotas"])

    async def _quota(self, peer: Peer, a: dict) -> dict:
        """Set (`blocks`: n, or null to drop) and/or read the block quota of a directory."""
        path = _str(a, "path")
        if "blocks" in a:
            await self.quotas.set(path, a["blocks"])
        q = self.quotas.by_path.get(path)
        return {"path": path, "blocks": q.blocks if q else None, "used": self.quotas.used(path)}

    async def _grow(self, peer: Peer, a: dict) -> dict:
        node = self.ns.structure(_str(a, "path"))
        if not kinds.get(node.kind).layout.extends:
            raise errors.WrongTypeError(f"{node.path} is a {node.kind}; only files grow by offset")
        until = a.get("until")
        if not isinstance(until, int) or until < 0:
            raise errors.StateProtocolError("grow takes a non-negative integer 'until'")
        await self.blocks.extend_file(node, until)
        return self._map(node)

    # -- memory servers -------------------------------------------------------------------------

    def _own_block(self, peer: Peer, a: dict) -> int:
        """The alloc id of a block-lifecycle request, which only the memory server holding that
        block may send (a client must not split, drain or free another's blocks)."""
        alloc = a.get("alloc")
        sid = peer.info.get("server_id")
        if sid is None:
            raise errors.StateProtocolError("only a registered memory server asks for block changes")
        if not isinstance(alloc, int) or self.blocks.server_of(alloc) != sid:
            raise errors.StateProtocolError(f"block {alloc!r} is not on this memory server")
        return alloc

    # -- dump / load / leases ------------------------------------------------------------------

    async def _dump(self, peer: Peer, a: dict) -> dict:
        """Write a structure's copy to `dest`; with `owner` (a structure's path) the dump is
        deleted when that structure leaves the namespace (removed, or its lease expired)."""
        node = self.ns.structure(_str(a, "path"))
        dest = _str(a, "dest")
        owner = self.ns.structure(_str(a, "owner")) if a.get("owner") is not None else None
        self.backings.resolve(dest)
        records = await self.blocks.export(node)
        data = encode_dump(node.kind, records)
        await asyncio.to_thread(self.backings.write, dest, data)
        if owner is not None and self.ns.by_id.get(owner.struct_id) is owner:
            await self.owned_dumps.add(dest, owner.struct_id)
        else:
            await self.owned_dumps.forget(dest)
            if owner is not None:  # removed while the dump was written: it goes with it
                await asyncio.to_thread(self.backings.delete, dest)
                raise errors.PathNotFoundError(f"{owner.path} was removed while the dump was written")
        return {"bytes": len(data), "records": len(records)}

    async def _load(self, peer: Peer, a: dict) -> dict:
        path, src = _str(a, "path"), _str(a, "src")
        if self.ns.exists(path):
            node = self.ns.structure(path)
            if node.state is not NodeState.FLUSHED:
                raise errors.PathExistsError(f"{path} exists and is loaded; remove it first")
            await self._reload(node, src)
            return self._map(node)
        kind, records = decode_dump(await asyncio.to_thread(self.backings.read, src))
        self.ns.check_new(path, kind)
        struct_id = await self.catalog.next_id("struct")
        node = self.ns.create(path, kind, time.monotonic() + self.lease_s, struct_id)
        await self._fill(node, self.blocks.load_records(node, records))
        return self._map(node)

    async def _drop_dump(self, peer: Peer, a: dict) -> dict:
        """Delete a dump a client wrote (a spill whose job is over). A dump that is the backing
        of a flushed structure stays: it is that structure's only copy."""
        src = _str(a, "src")
        for node in self.ns.by_id.values():
            if node.backing == src and node.state is NodeState.FLUSHED:
                raise errors.BackingStoreError(f"{src} holds flushed {node.path}; remove the structure instead")
        await asyncio.to_thread(self.backings.delete, src)
        await self.owned_dumps.forget(src)
        return {}

    async def _reload(self, node: Node, src: str | None) -> None:
        """Load a flushed structure back into blocks; opens meanwhile wait for it (_ready)."""
        if not src:
            raise errors.BackingStoreError(f"{node.path} has no backing path to load from")
        self.blocks.claim(node)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._making[node.struct_id] = done
        try:
            kind, records = decode_dump(await asyncio.to_thread(self.backings.read, src))
            if kind != node.kind:
                raise errors.WrongTypeError(f"{src} holds a {kind}, {node.path} is a {node.kind}")
            await self.blocks.load_records(node, records)
            node.set_state(NodeState.ACTIVE)
            try:
                await self.blocks.save(node)
            except BaseException:
                node.set_state(NodeState.FLUSHED)
                await self.blocks.free(node)
                raise
            node.lease_until = time.monotonic() + self.lease_s
        finally:
            node.busy = False
            del self._making[node.struct_id]
            done.set_result(None)

    async def _expiry_loop(self) -> None:
        tick = max(0.01, min(self.lease_s / 4, 1.0))
        while True:
            await asyncio.sleep(tick)
            try:
                await self.expire_now()
                await self.members.heal_chains()
            except Exception:  # noqa: BLE001 - one bad sweep must not stop lease expiry
                log.exception("lease expiry sweep or chain healing failed")

    async def expire_now(self) -> None:
        """One lease sweep: flush mapped structures, free the rest, drop empty directories."""
        for node in self.ns.expired(time.monotonic(), self.grace_s):
            if node.parent is None or node.busy:
                continue
            if node.kind != "dir" and node.mapped and node.state is NodeState.ACTIVE:
                await self._flush(node)
                continue
            self.counters.lease_expiries += sum(n.kind != "dir" for n in node.walk())
            await self._reclaim(node)
            log.info("lease expired: %s reclaimed", node.path)

    async def _flush(self, node: Node) -> None:
        assert node.backing is not None  # only mapped structures are flushed; they have one
        try:
            records = await self.blocks.export(node)
            data = encode_dump(node.kind, records)
            await asyncio.to_thread(self.backings.write, node.backing, data)
        except errors.StateError as e:
            log.error("flush of %s to %s failed, data kept in memory: %s", node.path, node.backing, e)
            return
        parts, node.partitions = node.partitions, []
        node.set_state(NodeState.FLUSHED)
        try:
            await self.blocks.save(node)  # flushed with no blocks, before they are freed
        except errors.StateError as e:
            node.partitions = parts
            node.set_state(NodeState.ACTIVE)
            log.error("flush of %s not recorded, data kept in memory: %s", node.path, e)
            return
        await self.blocks.free_partitions(parts)
        node.epoch += 1
        self.counters.flushes += 1
        self.counters.lease_expiries += 1
        log.info("lease expired: %s flushed to %s", node.path, node.backing)

    # -- notifications -------------------------------------------------------------------------

    async def _subscribe(self, peer: Peer, a: dict) -> dict:
        sub = self.subs.add(peer, a.get("path"), a.get("ops"))
        # Structures already there are watched before the reply: an op after it is notified.
        # Structures created, moved in or grown later get the watch with their new blocks.
        if self.ns.exists(sub.prefix):
            await self._push_watches(self.ns.lookup(sub.prefix))
        return {}

    def _watch_ops(self, node: Node) -> list[str]:
        return self.subs.ops_for(node.path)

    async def _push_watches(self, top: Node) -> None:
        await asyncio.gather(*(self.blocks.push_watch(n) for n in top.walk() if n.kind != "dir"))

    def _fan_out(self, fields: list[bytes]) -> None:
        if len(fields) != 3:
            return
        node = self.ns.by_id.get(codec.unpack_u64(fields[0]))
        if node is not None:
            self.subs.fan_out(node.path, fields[1], fields[2])
