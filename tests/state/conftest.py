"""A real controller and memory servers on port 0, in an event loop thread, for sync clients."""

from __future__ import annotations

import asyncio
import threading

import pytest

from taureau.state import StateClient
from taureau.state.memory_server import MemoryServer
from taureau.state.service import start_state_services
from tests.state.helpers import ServerProcess


class Cluster:
    """Controller + memory servers running on a background loop; tests drive them with
    StateClient from the test thread, exactly as users would."""

    def __init__(self, tmp_path, *, block_size: int = 64 << 10, num_blocks: int = 16, lease_ms: int = 10000):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.services = self.run(
            start_state_services(
                controller_port=0,
                block_size=block_size,
                num_blocks=num_blocks,
                lease_ms=lease_ms,
                data_dir=str(tmp_path / "state"),
                memory_server_process=False,
            )
        )
        self.address = self.services.controller_address
        self.controller = self.services.controller
        self.memory_servers = [self.services.memory_server]
        self.clients: list[StateClient] = []

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        """Run a plain function on the loop thread (to read server state without races)."""

        async def wrap():
            return fn(*args)

        return self.run(wrap())

    def add_memory_server(self, block_size: int = 64 << 10, num_blocks: int = 16) -> MemoryServer:
        ms = MemoryServer(
            controller=self.address,
            block_size=block_size,
            num_blocks=num_blocks,
            exit_on_controller_loss=False,
        )
        self.run(ms.start())
        self.memory_servers.append(ms)
        return ms

    def kill_memory_server(self, ms: MemoryServer) -> None:
        """Abrupt death: sockets closed, no goodbye."""
        self.run(ms.close())
        self.memory_servers.remove(ms)

    def client(self, **kw) -> StateClient:
        c = StateClient(self.address, **kw)
        self.clients.append(c)
        return c

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
        for ms in self.memory_servers[1:]:
            self.run(ms.close())
        self.run(self.services.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


@pytest.fixture
def make_cluster(tmp_path):
    made: list[Cluster] = []

    def make(**kw) -> Cluster:
        c = Cluster(tmp_path, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def server_process(tmp_path):
    made: list[ServerProcess] = []

    def make(**kw) -> ServerProcess:
        p = ServerProcess(tmp_path / f"state{len(made)}", **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
