"""A memory server's link to its controller: register, report the blocks it holds, and rejoin
when the controller restarts."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any, Protocol

from taureau.common import errors
from taureau.state import codec, internal_auth
from taureau.state.codec import Frame, Op
from taureau.state.limits import controller_link_limits
from taureau.state.rpc import Peer, connect_address

log = logging.getLogger(__name__)

REPORT_CHUNK = 200  # blocks per REPORT frame (~30 KB of JSON, under the controller's 64 KiB)
SETTLE_S = 30.0  # how long a rejoin waits for splits/merges the old link started to finish
RETRY_MIN_S, RETRY_MAX_S = 0.02, 0.25  # a restarted controller gets its servers back fast

# Joining, as the memory server does it:
#   connect -> REGISTER {address, shape, server_id if we had one} -> REPORT chunks of every
#   block we hold (the last one says done) -> the controller reconciles and serves.
# When the link drops, a server linked by address keeps serving its blocks to clients and
# rejoins (same server id) for up to `rejoin_s`; first it lets the splits and merges the old
# link asked for finish, so its report is final. A server linked through a socketpair
# cannot be reached again after its controller's process is gone: it stops.


class LinkOwner(Protocol):
    """What the link needs from its memory server."""

    block_size: int
    num_blocks: int
    internal_secret: bytes | None
    client_auth: bool

    @property
    def address(self) -> str: ...

    def command(self, peer: Peer, fr: Frame) -> Any: ...
    def block_reports(self) -> list[dict[str, Any]]: ...
    def controller_gone(self) -> None: ...


class ControllerLink:
    def __init__(
        self, owner: LinkOwner, address: str | None, sock: socket.socket | None, rejoin_s: float | None
    ) -> None:
        if (address is None) == (sock is None):
            raise ValueError("a memory server needs a controller address or a connected controller socket")
        self.owner = owner
        self.address = address  # host:port we dial, or None when linked by `sock`
        self.sock = sock
        self.rejoin_s = rejoin_s  # None: keep trying for ever
        self.peer: Peer | None = None
        self.server_id: int | None = None  # the controller's id for us, kept across rejoins
        self.closed = False
        self._rejoin: asyncio.Task[None] | None = None

    async def join(self) -> None:
        """Connect, register and report; raises the controller's refusal or StateUnavailableError."""
        loop = asyncio.get_running_loop()
        limits = controller_link_limits(self.owner.block_size)
        if self.sock is not None:
            sock, self.sock = self.sock, None  # one use: a socketpair cannot be dialled again
            _, peer = await loop.create_connection(
                lambda: Peer(self.owner.command, self._lost, limits=limits), sock=sock
            )
        else:
            assert self.address is not None
            peer = await connect_address(self.address, self.owner.command, self._lost, limits)
        peer.info[internal_auth.PROVEN] = True  # our controller: its block commands are served
        tcp = self.address is not None and not self.address.startswith("unix:")
        try:
            if tcp:  # a local link is trusted by the controller; TCP proves the secret first
                if self.owner.internal_secret is None:
                    raise errors.StateAuthError(
                        f"joining {self.address} over TCP needs the internal secret (--internal-secret-file)"
                    )
                await internal_auth.authenticate(peer, self.owner.internal_secret)
            reg = {
                "address": self.owner.address,
                "block_size": self.owner.block_size,
                "num_blocks": self.owner.num_blocks,
                "server_id": self.server_id,
                "link": "pair"
                if self.address is None
                else "unix"
                if self.address.startswith("unix:")
                else "tcp",
            }
            joined = codec.unpack_json(await peer.call(Op.REGISTER, codec.pack_json(reg)))
            self.server_id = joined["server_id"]
            if self.owner.internal_secret is None and isinstance(joined.get("secret"), str):
                self.owner.internal_secret = bytes.fromhex(joined["secret"])
            self.owner.client_auth = bool(joined.get("client_auth"))
            blocks = self.owner.block_reports()
            chunks = [blocks[i : i + REPORT_CHUNK] for i in range(0, len(blocks), REPORT_CHUNK)] or [[]]
            for n, chunk in enumerate(chunks):
                done = n == len(chunks) - 1
                await peer.call(Op.REPORT, codec.pack_json({"blocks": chunk, "done": done}))
        except BaseException:
            peer.close()
            raise
        # Only a link that finished joining counts as lost when it drops (a failed attempt is
        # the rejoin loop's to retry). Commands coming in meanwhile are served all the same.
        self.peer = peer

    def close(self) -> None:
        self.closed = True
        if self._rejoin is not None:
            self._rejoin.cancel()
        if self.peer is not None:
            self.peer.close()

    def _lost(self, peer: Peer) -> None:
        if self.closed or peer is not self.peer:
            return
        if self.address is None:
            log.warning("memory server %s: controller link lost", self.owner.address)
            self.owner.controller_gone()
            return
        log.warning("memory server %s: controller link lost; rejoining", self.owner.address)
        self._rejoin = asyncio.ensure_future(self._rejoin_loop(peer))

    async def _rejoin_loop(self, old: Peer) -> None:
        await old.settle(SETTLE_S)  # a split the old link asked for ends before we report
        deadline = None if self.rejoin_s is None else time.monotonic() + self.rejoin_s
        delay = RETRY_MIN_S
        while not self.closed:
            try:
                await self.join()
                log.info("memory server %s rejoined as server %s", self.owner.address, self.server_id)
                return
            except errors.StateUnavailableError as e:
                log.debug("rejoin of %s failed: %s", self.owner.address, e)
            except errors.StateError as e:  # refused, not unreachable: trying again will not help
                log.error("memory server %s: controller refused the rejoin: %s", self.owner.address, e)
                break
            if deadline is not None and time.monotonic() > deadline:
                log.error("memory server %s: no controller for %.0fs", self.owner.address, self.rejoin_s)
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        if not self.closed:
            self.owner.controller_gone()

    def call(self, op: int, args: dict[str, Any]) -> asyncio.Future[list[bytes]]:
        """A request to the controller; fails at once while there is no link."""
        if self.peer is None or self.peer.closed:
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(errors.StateUnavailableError("not linked to a controller"))
            return fut
        return self.peer.call(op, codec.pack_json(args))

    def send_event(self, op: int, fields: list[bytes]) -> None:
        """A one-way event to the controller; dropped while there is no link."""
        if self.peer is not None:
            self.peer.send_event(op, fields)
