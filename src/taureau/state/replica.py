"""A memory server's side of chain replication: a block's place in its chain, writes forwarded
from head to tail, freezing, and state transfer (SYNC/INSTALL) to mend or grow a chain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taureau.common import errors
from taureau.state import codec
from taureau.state.blocks import Block, BlockState
from taureau.state.codec import REDO, STALE, Op, Redirect, pack_u64

if TYPE_CHECKING:
    from taureau.state.rpc import Peer

log = logging.getLogger(__name__)

# Chain replication (van Renesse and Schneider; Jiffy replicates blocks this way). A partition
# of a structure with replicas = r is a chain of r blocks on distinct memory servers:
#
#   client --write--> head --CHAIN_WRITE--> ... --CHAIN_WRITE--> tail <--read-- client
#
# The head applies a write, forwards it to its successor on one ordered connection, and
# answers the client once the tail applied it (acks flow back the chain), so everything the
# tail serves is on every replica: a read at the tail never sees what could be lost, and an
# acknowledged write is on all r servers. A write at a non-head block, or a read at a
# non-tail one, answers STALE (the client's map is old). Followers apply what they are sent
# without capacity checks (they hold what the head holds), never ask to grow or merge, and
# do not notify (the head does).
#
# Everything that changes a chain's shape uses one recipe, driven by the controller: freeze
# the chain (CHAIN frozen=true: writes at the head and reads at the tail answer REDO), do the
# structural step at the head only (split, merge, seal...), SYNC the head's whole state to
# the others (INSTALL replaces a block's data, range and state), unfreeze. Before a SYNC the
# head waits until no forwarded write is unanswered, so nothing is in flight behind it.
# A head whose successor dies holds the writes it applied and could not forward; when the
# controller has mended the chain (a SYNC from this head, which carries them), it answers
# them OK. If no SYNC comes in MEND_WAIT_S it answers StateUnavailableError (unknown outcome).

MEND_WAIT_S = 30.0
QUIESCE_S = 30.0


class ChainRole:
    """A replicated block's place in its chain (an unreplicated block has none)."""

    __slots__ = ("next", "head", "tail", "frozen", "inflight", "idle", "mended")

    def __init__(self) -> None:
        self.next: tuple[str, bytes] | None = None  # successor's address and packed alloc id
        self.head = True
        self.tail = True
        self.frozen = False
        self.inflight = 0  # writes forwarded and not answered yet
        self.idle: asyncio.Event = asyncio.Event()  # set while inflight == 0
        self.idle.set()
        self.mended: list[asyncio.Future[None]] = []  # writes waiting for the chain to be mended


class Replication:
    """Owns the forwarding links of one memory server; the server hands it replicated blocks."""

    def __init__(self, blocks: dict[bytes, Block], peer_for: Callable[[str], Peer | None]) -> None:
        self.blocks = blocks
        self.peer_for = peer_for  # an open link to another memory server, or None

    # -- the data path --------------------------------------------------------------------------

    def serve(
        self, blk: Block, op: int, fn: Callable[[list[bytes]], list[bytes]], fields: list[bytes]
    ) -> Any:
        ch = blk.chain
        assert ch is not None
        if op in blk.writes:
            if not ch.head:
                raise Redirect(STALE, "writes go to the head of the chain")
            if ch.frozen:
                raise Redirect(REDO, "the chain is being reconfigured")
            res = fn(fields)  # refused writes raise here and go no further
            if ch.next is None:
                return res
            return self._committed(ch, self._forward(ch, op, fields), res)
        if not ch.tail:
            raise Redirect(STALE, "reads go to the tail of the chain")
        if ch.frozen:
            raise Redirect(REDO, "the chain is being reconfigured")
        return fn(fields)

    def follow(self, fields: list[bytes]) -> Any:
        """CHAIN_WRITE from a predecessor: fields = alloc, op (1 byte), the write's fields."""
        blk = self.blocks.get(fields[0]) if fields else None
        ch = blk.chain if blk is not None else None
        if blk is None or ch is None or ch.head or len(fields) < 2 or len(fields[1]) != 1:
            raise errors.StateProtocolError("CHAIN_WRITE goes to a follower block, with an op byte")
        op = fields[1][0]
        fn = blk.ops.get(op)
        if fn is None or op not in blk.writes:
            raise errors.StateProtocolError(f"{codec.op_name(op)} is not a write of a {blk.kind}")
        res = fn([fields[0], *fields[2:]])
        if ch.next is None:
            return res
        return self._acked(ch, self._forward(ch, op, [fields[0], *fields[2:]]), res)

    def _forward(self, ch: ChainRole, op: int, fields: list[bytes]) -> asyncio.Future[list[bytes]]:
        """Send now (so that forwards leave in the order writes were applied)."""
        assert ch.next is not None
        addr, alloc = ch.next
        peer = self.peer_for(addr)
        if peer is None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(errors.StateUnavailableError(f"no link to the chain's next server {addr}"))
            return fut
        ch.inflight += 1
        ch.idle.clear()
        fut = peer.call(Op.CHAIN_WRITE, [alloc, bytes([op]), *fields[1:]])
        fut.add_done_callback(lambda _f: self._answered(ch))
        return fut

    @staticmethod
    def _answered(ch: ChainRole) -> None:
        ch.inflight -= 1
        if ch.inflight == 0:
            ch.idle.set()

    async def _acked(self, ch: ChainRole, fut: asyncio.Future[list[bytes]], res: list[bytes]) -> list[bytes]:
        await fut  # a follower's failure goes up to the head, which holds the write
        return res

    async def _committed(
        self, ch: ChainRole, fut: asyncio.Future[list[bytes]], res: list[bytes]
    ) -> list[bytes]:
        try:
            await fut
        except errors.StateError as e:  # the chain broke behind us: our state has the write
            waiter = asyncio.get_running_loop().create_future()
            ch.mended.append(waiter)
            try:
                await asyncio.wait_for(waiter, MEND_WAIT_S)
            except TimeoutError:
                raise errors.StateUnavailableError(
                    f"replication failed and the chain was not mended: {e}"
                ) from None
        return res

    # -- commands from the controller ------------------------------------------------------------

    def configure(self, blk: Block, a: dict[str, Any]) -> None:
        """CHAIN: this block's successor, whether it is head and tail, and frozen or not."""
        nxt = a.get("next")
        ch = blk.chain or ChainRole()
        ch.next = (str(nxt[0]), pack_u64(int(nxt[1]))) if nxt else None
        ch.head, ch.tail, ch.frozen = bool(a["head"]), bool(a["tail"]), bool(a["frozen"])
        blk.chain = ch
        blk.follower = not ch.head

    async def sync(self, blk: Block, targets: list[tuple[str, int]], connect: Callable[[str], Any]) -> None:
        """SYNC: copy this head's whole state to `targets` (once nothing is in flight)."""
        ch = blk.chain
        if ch is None or not ch.head:
            raise errors.StateProtocolError(f"block {blk.alloc_id} is not the head of a chain")
        try:
            await asyncio.wait_for(ch.idle.wait(), QUIESCE_S)
        except TimeoutError:
            raise errors.StateUnavailableError("forwarded writes did not settle before a sync") from None
        meta = codec.pack_json(
            {"lo": blk.lo, "hi": blk.hi, "state": blk.state.value, "importing": blk.incoming()}
        )
        records = blk.export()
        for addr, alloc in targets:
            peer = await connect(addr)
            await peer.call(Op.INSTALL, [pack_u64(alloc), *meta, *records])
        waiters, ch.mended = ch.mended, []
        for w in waiters:  # what they wrote is on every replica now
            if not w.done():
                w.set_result(None)

    def dropped(self, blk: Block) -> None:
        """The block is freed: writes waiting for its chain to be mended never will be."""
        ch = blk.chain
        assert ch is not None
        waiters, ch.mended = ch.mended, []
        for w in waiters:
            if not w.done():
                w.set_exception(
                    errors.StateUnavailableError("the block left its chain; the write's fate is unknown")
                )

    def install(self, fields: list[bytes]) -> list[bytes]:
        """INSTALL from a chain's head: replace this follower's data, range and state."""
        blk = self.blocks.get(fields[0]) if fields else None
        ch = blk.chain if blk is not None else None
        if blk is None or ch is None or ch.head or not ch.frozen or len(fields) < 2:
            raise errors.StateProtocolError("INSTALL goes to a frozen follower block, with its state")
        meta = codec.unpack_json([fields[1]])
        blk.clear()
        blk.import_(fields[2:])
        blk.lo, blk.hi = int(meta["lo"]), int(meta["hi"])
        blk.set_installed(BlockState(meta["state"]), meta.get("importing"))
        return []
