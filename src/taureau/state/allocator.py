"""Block allocator over every registered memory server (controller side, pure bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taureau.common import errors
from taureau.state.limits import MAX_BLOCK_SIZE


@dataclass(eq=False)
class ServerInfo:
    server_id: int
    address: str  # host:port clients connect to
    block_size: int
    num_blocks: int
    used: int = 0  # blocks handed out on this server
    alive: bool = True
    peer: Any = None  # the rpc.Peer of its registration link (commands go through it)

    @property
    def free(self) -> int:
        return self.num_blocks - self.used if self.alive else 0


class Allocator:
    """Chooses servers for new blocks and counts what is in use. Alloc ids are never reused, so a
    client holding an old block map can never reach another structure's data by mistake."""

    def __init__(self) -> None:
        self.servers: dict[int, ServerInfo] = {}
        self._next_server = 1
        self._next_alloc = 1

    def add_server(self, address: str, block_size: int, num_blocks: int, peer: Any) -> ServerInfo:
        if not 1024 <= block_size <= MAX_BLOCK_SIZE or num_blocks < 1:
            raise errors.StateProtocolError(
                f"a memory server needs 1024 <= block_size <= {MAX_BLOCK_SIZE} and num_blocks >= 1"
            )
        info = ServerInfo(self._next_server, address, block_size, num_blocks, peer=peer)
        self._next_server += 1
        self.servers[info.server_id] = info
        return info

    def pick(self, chain_length: int = 1, avoid: set[int] | None = None) -> list[ServerInfo]:
        """Servers for one replica chain: distinct servers, most free blocks first (this spreads a
        structure's partitions over servers and keeps every pool equally usable)."""
        avoid = avoid or set()
        cands = sorted(
            (s for s in self.servers.values() if s.free > 0),
            key=lambda s: (s.server_id in avoid, -s.free, s.server_id),
        )
        if len(cands) < chain_length:
            free = self.free_blocks()
            raise errors.OutOfMemoryError(
                f"memory pool exhausted: need {chain_length} block(s) on distinct servers, {free} free"
            )
        chosen = cands[:chain_length]
        for s in chosen:
            s.used += 1
        return chosen

    def free_blocks(self) -> int:
        return sum(s.free for s in self.servers.values())

    def free_bytes(self) -> int:
        return sum(s.free * s.block_size for s in self.servers.values())

    def new_alloc_id(self) -> int:
        self._next_alloc += 1
        return self._next_alloc - 1

    def release(self, server_id: int) -> None:
        s = self.servers.get(server_id)
        if s is not None and s.used > 0:
            s.used -= 1

    def addresses(self) -> dict[int, tuple[str, int]]:
        return {s.server_id: (s.address, s.block_size) for s in self.servers.values()}

    def stats(self) -> dict[str, Any]:
        live = [s for s in self.servers.values() if s.alive]
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
