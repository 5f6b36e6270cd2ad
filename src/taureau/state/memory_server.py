"""Memory server: a pool of fixed-size blocks serving data-structure operators over the state wire."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from taureau.common import errors
from taureau.state import client_auth, codec, internal_auth, kinds
from taureau.state.blocks import Block, BlockState, KeyedBlock, Pool
from taureau.state.codec import STALE, Frame, Op, Redirect, pack_u64
from taureau.state.ctl_link import ControllerLink
from taureau.state.limits import CONTROL_MAX, MAX_BLOCK_SIZE, memory_server_limits
from taureau.state.replica import Replication
from taureau.state.rpc import Peer, connect, split_address

log = logging.getLogger(__name__)

MERGE_RETRY_S = 1.0  # after a refused merge, a block waits this long before asking again
USAGE_PERIOD_S = 1.0  # how often the memory use is sent to the controller
REJOIN_S = 60.0  # how long a memory server linked by address waits for its controller to return
IMPORT_TIMEOUT_S = 30.0  # a split or merge's IMPORT to another memory server
_FIRST_MGMT_OP = Op.NEW_BLOCK
_FROM_PEERS = (Op.IMPORT, Op.CHAIN_WRITE, Op.INSTALL)


class MemoryServer:
    """Serves clients on its own port and takes block commands from the controller.

    >>> ms = MemoryServer(controller="127.0.0.1:9090", block_size=32 << 20, num_blocks=64)
    >>> await ms.start()   # listens, registers its pool with the controller
    """

    def __init__(
        self,
        *,
        controller: str | None = None,
        controller_sock: socket.socket | None = None,
        block_size: int,
        num_blocks: int,
        host: str = "127.0.0.1",
        port: int = 0,
        exit_on_controller_loss: bool = True,
        advertised_host: str | None = None,
        rejoin_s: float | None = REJOIN_S,
        memory_budget: int | None = None,
        internal_secret: bytes | None = None,
    ) -> None:
        if not 1024 <= block_size <= MAX_BLOCK_SIZE or num_blocks < 1:
            raise ValueError(
                f"a memory server needs 1024 <= block_size <= {MAX_BLOCK_SIZE} and num_blocks >= 1"
            )
        if memory_budget is not None and memory_budget < block_size:
            raise ValueError("a memory server's budget must hold at least one block")
        # The memory its blocks' data may take; by default every block full. A smaller budget
        # lets more blocks be handed out than could all be full at once (they rarely are).
        # Proves us to a controller over TCP and to other memory servers; one linked locally
        # is told it by its controller when it registers.
        self.internal_secret = internal_secret
        # Set by the controller when we register: clients then need a ticket per structure.
        self.client_auth = False
        self.pool = Pool(memory_budget if memory_budget is not None else block_size * num_blocks)
        self.link = ControllerLink(self, controller, controller_sock, rejoin_s)
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.host, self.port = host, port
        # What clients are told to dial: the listen address is useless when it is 0.0.0.0.
        self.advertised_host = advertised_host or host
        self.exit_on_controller_loss = exit_on_controller_loss
        self.blocks: dict[bytes, Block] = {}  # packed u64 alloc id -> block (packed: no unpack per op)
        self.peers: dict[str, Peer] = {}  # links to other memory servers, for split/merge imports
        self.clients: set[Peer] = set()  # accepted connections (closed with the server)
        self.server: asyncio.AbstractServer | None = None
        self.stopped = asyncio.Event()
        self._merge_refused_at: dict[int, float] = {}
        self._limits = memory_server_limits(block_size)
        self._tasks: set[asyncio.Task] = set()
        self._mgmt: dict[int, Callable[[list[bytes]], Any]] = {
            Op.NEW_BLOCK: self._new_block,
            Op.FREE_BLOCK: self._free_block,
            Op.SPLIT: self._split,
            Op.MERGE_OUT: self._merge_out,
            Op.EXPECT: self._expect,
            Op.IMPORT: self._import,
            Op.EXPORT: self._export,
            Op.LINK_NEXT: self._link_next,
            Op.WATCH: self._watch,
            Op.RESET_RANGE: self._reset_range,
            Op.DESCRIBE: self._describe,
            Op.CHAIN: self._chain,
            Op.SYNC: self._sync,
        }
        self.replication = Replication(self.blocks, self._open_peer)

    def _accept(self) -> Peer:
        peer = Peer(self._handle, self.clients.discard, limits=self._limits, flow_control=True)
        self.clients.add(peer)
        return peer

    @property
    def address(self) -> str:
        return f"{self.advertised_host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._accept, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        try:
            await self.link.join()
        except BaseException:
            self.server.close()
            raise
        self._spawn(self._report_usage())
        log.info("memory server %s: %d x %d-byte blocks", self.address, self.num_blocks, self.block_size)

    async def _report_usage(self) -> None:
        """Tell the controller what the blocks take, every period (for stats and metrics)."""
        while True:
            self.link.send_event(Op.USAGE, codec.pack_json(self.usage()))
            await asyncio.sleep(USAGE_PERIOD_S)

    def usage(self) -> dict[str, int]:
        return {"used_bytes": self.pool.used, "budget_bytes": self.pool.budget, "blocks": len(self.blocks)}

    async def close(self) -> None:
        self.link.close()
        if self.server is not None:
            self.server.close()
        for p in [*self.peers.values(), *self.clients]:
            p.close()
        self.blocks.clear()
        for t in list(self._tasks):
            t.cancel()
        self.stopped.set()

    def controller_gone(self) -> None:
        """No controller any more (and none will come back in time)."""
        if self.exit_on_controller_loss and not self.stopped.is_set():
            log.warning("memory server %s: stopping without a controller", self.address)
            self._spawn(self.close())

    def block_reports(self) -> list[dict[str, Any]]:
        return [b.report() for b in self.blocks.values()]

    def _spawn(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- the hot path ------------------------------------------------------------------------

    def _handle(self, peer: Peer, fr: Frame) -> Any:
        """Clients and peer memory servers: data ops, and IMPORT into a block expecting one."""
        op = fr.op
        if op < _FIRST_MGMT_OP:
            blk = self.blocks.get(fr.fields[0]) if fr.fields else None
            if blk is None:
                raise Redirect(STALE, "no such block here (freed or moved)")
            if self.client_auth and not peer.info.get(internal_auth.PROVEN):
                client_auth.check_ticket(peer.info, blk.struct_id)
            fn = blk.ops.get(op)
            if fn is None:
                raise errors.WrongTypeError(f"op {codec.op_name(op)} does not apply to a {blk.kind}")
            if blk.chain is None:  # unreplicated: the hot path, no more to it
                return fn(fr.fields)
            return self.replication.serve(blk, op, fn, fr.fields)
        if op in _FROM_PEERS:
            # Another memory server moving data in: only over a connection that proved the secret.
            internal_auth.require(peer.info, codec.op_name(op))
            if op == Op.IMPORT:
                return self._import_expected(fr.fields)
            if op == Op.CHAIN_WRITE:
                return self.replication.follow(fr.fields)
            return self.replication.install(fr.fields)
        if op == Op.ACCESS:
            return client_auth.accept_ticket(peer.info, self.internal_secret, fr.fields)
        if op == Op.CHALLENGE:
            return codec.pack_json(internal_auth.challenge(peer.info))
        if op == Op.PROVE:
            return codec.pack_json(internal_auth.prove(peer.info, self.internal_secret, codec.unpack_json(fr.fields)))
        if op in self._mgmt:
            raise errors.StateAuthError(f"{codec.op_name(op)} is taken from the controller only")
        raise errors.StateProtocolError(f"memory server does not serve op {op}")

    def command(self, peer: Peer, fr: Frame) -> Any:
        """The link to our controller: block commands (and anything a client may send)."""
        fn = self._mgmt.get(fr.op)
        if fn is None:
            return self._handle(peer, fr)
        return fn(fr.fields)

    def _block(self, alloc: int) -> Block:
        blk = self.blocks.get(pack_u64(alloc))
        if blk is None:
            raise errors.StateError(f"no block {alloc} on {self.address}")
        return blk

    # -- block commands (controller -> us) ------------------------------------------------------

    def _new_block(self, f: list[bytes]) -> list[bytes]:
        a = codec.unpack_json(f)
        if len(self.blocks) >= self.num_blocks:
            raise errors.OutOfMemoryError(f"memory server {self.address} has no free block")
        cls = kinds.get(a["kind"]).block
        blk = cls(self, a["alloc"], a["struct"], self.block_size, a["lo"], a["hi"])
        blk.watch = frozenset(a.get("watch", ()))
        if a.get("importing"):
            blk.state = BlockState.IMPORTING  # initial state, before anyone can see the block
        self.blocks[pack_u64(a["alloc"])] = blk
        return []

    def _free_block(self, f: list[bytes]) -> list[bytes]:
        blk = self.blocks.pop(pack_u64(codec.unpack_json(f)["alloc"]), None)
        if blk is not None:
            blk.set_state(BlockState.FREED)
            blk.release()
            if blk.chain is not None:
                self.replication.dropped(blk)
        return []

    def _watch(self, f: list[bytes]) -> list[bytes]:
        a = codec.unpack_json(f)
        for alloc in a["allocs"]:
            blk = self.blocks.get(pack_u64(alloc))
            if blk is not None:
                blk.watch = frozenset(a["ops"])
        return []

    def _describe(self, f: list[bytes]) -> list[bytes]:
        """Fresh reports of some blocks (the controller reconciling after a restart)."""
        allocs = codec.unpack_json(f)["allocs"]
        found = [self.blocks.get(pack_u64(a)) for a in allocs]
        return codec.pack_json({"blocks": [b.report() for b in found if b is not None]})

    def _reset_range(self, f: list[bytes]) -> list[bytes]:
        """Undo an EXPECT whose merge never moved anything (the controller restarted between)."""
        a = codec.unpack_json(f)
        blk = self._block(a["alloc"])
        lo, hi = a["lo"], a["hi"]
        if not isinstance(blk, KeyedBlock) or blk.importing is None or not blk.lo <= lo < hi <= blk.hi:
            raise errors.StateProtocolError(f"block {a['alloc']} has no merge to undo to [{lo}, {hi})")
        if any(not lo <= blk.position(k) < hi for k in blk.data):
            raise errors.StateProtocolError(f"block {a['alloc']} holds keys outside [{lo}, {hi})")
        blk.lo, blk.hi, blk.importing = lo, hi, None
        return []

    def _expect(self, f: list[bytes]) -> list[bytes]:
        """A merge target widens its range now and answers REDO for the part still in flight."""
        a = codec.unpack_json(f)
        blk = self._block(a["alloc"])
        if not isinstance(blk, KeyedBlock):
            raise errors.WrongTypeError("only keyed blocks merge")
        if blk.used + a["bytes"] > blk.capacity * 0.5:
            raise errors.OutOfMemoryError("merge target too full")
        blk.importing = (a["lo"], a["hi"])
        blk.lo, blk.hi = min(blk.lo, a["lo"]), max(blk.hi, a["hi"])
        return []

    async def _split(self, f: list[bytes]) -> list[bytes]:
        a = codec.unpack_json(f)
        blk = self._block(a["alloc"])
        if not isinstance(blk, KeyedBlock) or not blk.lo < a["at"] < blk.hi:
            raise errors.StateProtocolError(f"cannot split block {a['alloc']} at {a['at']}")
        # One synchronous step: from here on the moved slots answer STALE here, REDO there.
        old_hi = blk.hi
        moved = blk.extract(a["at"], old_hi)
        blk.hi = a["at"]
        try:
            await self._send_import(a["target"], a["target_alloc"], moved)
        except BaseException:
            # The target never took the keys (refused, died, or we were cancelled): take them
            # back, or they would be lost. The controller rolls back the map the same way.
            blk.hi = old_hi
            blk.import_(moved)
            raise
        return []

    async def _merge_out(self, f: list[bytes]) -> list[bytes]:
        a = codec.unpack_json(f)
        blk = self._block(a["alloc"])
        if not isinstance(blk, KeyedBlock):
            raise errors.WrongTypeError("only keyed blocks merge")
        moved = blk.extract(blk.lo, blk.hi)
        blk.set_state(BlockState.FORWARDED)
        await self._send_import(a["target"], a["target_alloc"], moved)
        return []

    def _import(self, f: list[bytes]) -> list[bytes]:
        blk = self.blocks.get(f[0])
        if blk is None:
            raise errors.StateError("import into a block that does not exist")
        self._import_into(blk, f[1:])
        return []

    def _import_expected(self, f: list[bytes]) -> list[bytes]:
        """IMPORT from another memory server: only into a split target (IMPORTING) or a merge
        target (a slot range in flight), so no client can inject entries into a live block."""
        blk = self.blocks.get(f[0]) if f else None
        if blk is None:
            raise errors.StateError("import into a block that does not exist")
        expecting = blk.state is BlockState.IMPORTING or (isinstance(blk, KeyedBlock) and blk.importing)
        if not expecting:
            raise errors.StateProtocolError(f"block {blk.alloc_id} is not expecting an import")
        self._import_into(blk, f[1:])
        return []

    @staticmethod
    def _import_into(blk: Block, fields: list[bytes]) -> None:
        blk.import_(fields)
        if blk.state is BlockState.IMPORTING:
            blk.set_state(BlockState.ACTIVE)
        if isinstance(blk, KeyedBlock):
            blk.importing = None

    def _export(self, f: list[bytes]) -> list[bytes]:
        blk = self.blocks.get(f[0])
        if blk is None:
            raise errors.StateError("export of a block that does not exist")
        return blk.export()

    def _link_next(self, f: list[bytes]) -> list[bytes]:
        self._block(codec.unpack_json(f)["alloc"]).link_next()
        return []

    def _open_peer(self, addr: str) -> Peer | None:
        peer = self.peers.get(addr)
        return peer if peer is not None and not peer.closed else None

    async def _peer(self, addr: str) -> Peer:
        """Our link to another memory server (dialled once, again if it broke)."""
        peer = self._open_peer(addr)
        if peer is None:
            if self.internal_secret is None:
                raise errors.StateAuthError(f"no internal secret to prove to memory server {addr}")
            host, port = split_address(addr)
            peer = await connect(host, port, limits=CONTROL_MAX)
            try:
                await internal_auth.authenticate(peer, self.internal_secret)
            except BaseException:
                peer.close()
                raise
            self.peers[addr] = peer
        return peer

    async def _chain(self, f: list[bytes]) -> list[bytes]:
        a = codec.unpack_json(f)
        blk = self._block(a["alloc"])
        if a.get("next"):  # dial the successor now: forwards are sent without waiting
            await self._peer(str(a["next"][0]))
        self.replication.configure(blk, a)
        return []

    async def _sync(self, f: list[bytes]) -> list[bytes]:
        a = codec.unpack_json(f)
        targets = [(str(addr), int(alloc)) for addr, alloc in a["to"]]
        await self.replication.sync(self._block(a["alloc"]), targets, self._peer)
        return []

    async def _send_import(self, target: str, alloc: int, fields: list[bytes]) -> None:
        if target == self.address:
            self._import_into(self._block(alloc), fields)
            return
        peer = await self._peer(target)
        try:  # bounded: a rejoin waits for this to end before reporting our blocks
            await asyncio.wait_for(peer.call(Op.IMPORT, [pack_u64(alloc), *fields]), IMPORT_TIMEOUT_S)
        except TimeoutError:
            peer.close()
            raise errors.StateUnavailableError(f"memory server {target} took no import in time") from None

    # -- BlockHost: requests from blocks to the controller ------------------------------------

    def request_growth(self, block: Block) -> None:
        self._spawn(self._grow(block))

    async def _grow(self, block: Block) -> None:
        try:
            if isinstance(block, KeyedBlock):
                at = block.split_point()
                if at is None:
                    raise errors.OutOfMemoryError("every key is in one slot (key position); cannot split")
                await self.link.call(Op.SPLIT_REQUEST, {"alloc": block.alloc_id, "at": at})
            elif block.growth == "append":
                await self.link.call(Op.APPEND_REQUEST, {"alloc": block.alloc_id})
            else:
                raise errors.OutOfMemoryError(f"a {block.kind} block does not grow by itself")
            block.grow_oom = False
        except Exception as e:  # noqa: BLE001 - the block keeps serving; full writes get REDO/OOM
            log.debug("growth of block %d refused: %s", block.alloc_id, e)
            block.grow_failed_at = time.monotonic()
            block.grow_oom = isinstance(e, errors.OutOfMemoryError)
            block.grow_refusal = str(e)
        finally:
            block.grow_pending = False

    def request_merge(self, block: Block) -> None:
        if block.merge_pending or block.follower:
            return
        if time.monotonic() - self._merge_refused_at.get(block.alloc_id, 0.0) < MERGE_RETRY_S:
            return
        block.merge_pending = True
        self._spawn(self._merge(block))

    async def _merge(self, block: Block) -> None:
        try:
            await self.link.call(Op.MERGE_REQUEST, {"alloc": block.alloc_id, "used": block.used})
        except Exception as e:  # noqa: BLE001 - merging is an optimisation; refusal is normal
            log.debug("merge of block %d refused: %s", block.alloc_id, e)
            self._merge_refused_at[block.alloc_id] = time.monotonic()
        finally:
            block.merge_pending = False

    def drained(self, block: Block) -> None:
        if block.follower:
            return
        self.link.send_event(Op.DRAINED, codec.pack_json({"alloc": block.alloc_id}))

    def notify(self, block: Block, op: str, data: bytes) -> None:
        self.link.send_event(Op.NOTIFY, [pack_u64(block.struct_id), op.encode(), data])


async def run_memory_server(**kwargs: Any) -> None:
    """Start a memory server and serve until its controller goes away (the CLI's entry point)."""
    ms = MemoryServer(**kwargs)
    await ms.start()
    await ms.stopped.wait()
