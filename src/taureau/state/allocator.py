"""Block allocator over every registered memory server (controller side, pure bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from taureau.common import errors
from taureau.state.limits import MAX_BLOCK_SIZE

# A memory server's life as the controller sees it:
#
#   JOINING --link + REGISTER--> REPORTING --last REPORT--> SERVING --link lost--> DEAD
#      |                            |  link lost                          ^
#      |                            +--------------> JOINING              |
#      +--------------------- rejoin window over -------------------------+
#
# JOINING: known from the catalog (a controller restart) but not linked yet; its blocks are
# still served to clients by the server itself. REPORTING: linked, telling us which blocks it
# holds. Only SERVING servers get new blocks. DEAD is final: a server that comes back after
# that is a new server, and whatever it holds is freed.


class ServerState(Enum):
    JOINING = "joining"
    REPORTING = "reporting"
    SERVING = "serving"
    DEAD = "dead"


_ALLOWED = {
    ServerState.JOINING: {ServerState.REPORTING, ServerState.DEAD},
    ServerState.REPORTING: {ServerState.SERVING, ServerState.JOINING, ServerState.DEAD},
    ServerState.SERVING: {ServerState.DEAD},
    ServerState.DEAD: set(),
}


@dataclass(eq=False)
class ServerInfo:
    server_id: int
    address: str  # host:port clients connect to
    block_size: int
    num_blocks: int
    used: int = 0  # blocks handed out on this server
    state: ServerState = ServerState.REPORTING
    peer: Any = None  # the rpc.Peer of its registration link (commands go through it)
    used_bytes: int = 0  # memory its blocks' data takes, as it last said (Op.USAGE)
    budget_bytes: int = 0  # what it may take
    link: str = "tcp"  # how it dials us: tcp, unix (a local socket), pair (a socketpair: no way back)

    def set_state(self, new: ServerState) -> None:
        if new not in _ALLOWED[self.state]:
            raise errors.StateError(f"memory server {self.address}: illegal transition {self.state} -> {new}")
        self.state = new

    @property
    def can_rejoin(self) -> bool:
        """A server linked by a socketpair cannot reach a controller restarted in a new process."""
        return self.link != "pair"

    @property
    def alive(self) -> bool:
        """Linked and able to take commands (its blocks' maps are good)."""
        return self.state in (ServerState.REPORTING, ServerState.SERVING)

    @property
    def free(self) -> int:
        return self.num_blocks - self.used if self.state is ServerState.SERVING else 0

    def record(self) -> dict[str, Any]:
        """What the catalog keeps about this server."""
        return {
            "address": self.address,
            "block_size": self.block_size,
            "num_blocks": self.num_blocks,
            "link": self.link,
        }


class Allocator:
    """Chooses servers for new blocks and counts what is in use. Alloc ids are never reused, so a
    client holding an old block map can never reach another structure's data by mistake."""

    def __init__(self) -> None:
        self.servers: dict[int, ServerInfo] = {}

    @staticmethod
    def check_shape(block_size: Any, num_blocks: Any) -> None:
        if not isinstance(block_size, int) or not isinstance(num_blocks, int):
            raise errors.StateProtocolError("a memory server's block_size and num_blocks must be integers")
        if not 1024 <= block_size <= MAX_BLOCK_SIZE or num_blocks < 1:
            raise errors.StateProtocolError(
                f"a memory server needs 1024 <= block_size <= {MAX_BLOCK_SIZE} and num_blocks >= 1"
            )

    def add_server(self, info: ServerInfo) -> ServerInfo:
        self.check_shape(info.block_size, info.num_blocks)
        self.servers[info.server_id] = info
        return info

    def pick(
        self, chain_length: int = 1, avoid: set[int] | None = None, block_size: int | None = None
    ) -> list[ServerInfo]:
        """Servers for one replica chain: distinct servers with blocks of one size, most free
        blocks first (this spreads a structure's partitions over servers and keeps every pool
        equally usable). `avoid`: servers that must not be picked (a chain's other members)."""
        avoid = avoid or set()
        cands = sorted(
            (s for s in self.servers.values() if s.free > 0 and s.server_id not in avoid),
            key=lambda s: (-s.free, s.server_id),
        )
        size = block_size if block_size is not None else cands[0].block_size if cands else 0
        chosen = [s for s in cands if s.block_size == size][:chain_length]
        if len(chosen) < chain_length:
            free = self.free_blocks()
            raise errors.OutOfMemoryError(
                f"memory pool exhausted: need {chain_length} block(s) on distinct servers, {free} free"
            )
        for s in chosen:
            s.used += 1
        return chosen

    def free_blocks(self) -> int:
        return sum(s.free for s in self.servers.values())

    def free_bytes(self) -> int:
        return sum(s.free * s.block_size for s in self.servers.values())

    def release(self, server_id: int) -> None:
        s = self.servers.get(server_id)
        if s is not None and s.used > 0:
            s.used -= 1

    def addresses(self) -> dict[int, tuple[str, int]]:
        return {s.server_id: (s.address, s.block_size) for s in self.servers.values()}

    def joining(self) -> bool:
        """Some known memory server may still bring blocks (it is joining or reporting)."""
        return any(s.state in (ServerState.JOINING, ServerState.REPORTING) for s in self.servers.values())

    def stats(self) -> dict[str, Any]:
        live = [s for s in self.servers.values() if s.state is ServerState.SERVING]
        return {
            "servers": len(live),
            "blocks_total": sum(s.num_blocks for s in live),
            "blocks_free": sum(s.free for s in live),
            "blocks_used": sum(s.used for s in live),
            "bytes_total": sum(s.num_blocks * s.block_size for s in live),
            "memory_servers": [
                {"address": s.address, "block_size": s.block_size, "blocks": s.num_blocks, "used": s.used}
                for s in live
            ],
        }
