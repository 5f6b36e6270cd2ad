"""A real controller and memory servers on port 0, in an event loop thread, for sync clients."""

from __future__ import annotations

import asyncio
import threading

import pytest

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.state import StateClient
from taureau.state.controller import Controller
from taureau.state.internal_auth import create_secret
from taureau.state.memory_server import MemoryServer
from taureau.state.service import start_state_services
from taureau.testing.ports import free_port
from tests.state.helpers import ServerProcess


class _OnLoop:
    """Servers on a background event loop, driven from the test thread with StateClient."""

    address: str

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: list[StateClient] = []

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        """Run a plain function on the loop thread (to read server state without races)."""

        async def wrap():
            return fn(*args)

        return self.run(wrap())

    def client(self, **kw) -> StateClient:
        c = StateClient(self.address, **kw)
        self.clients.append(c)
        return c

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Cluster(_OnLoop):
    """Controller + memory servers running on a background loop; tests drive them with
    StateClient from the test thread, exactly as users would."""

    def __init__(self, tmp_path, *, block_size: int = 64 << 10, num_blocks: int = 16, lease_ms: int = 10000):
        super().__init__()
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

    def add_memory_server(self, block_size: int = 64 << 10, num_blocks: int = 16) -> MemoryServer:
        ms = MemoryServer(
            controller=self.address,
            block_size=block_size,
            num_blocks=num_blocks,
            exit_on_controller_loss=False,
            internal_secret=self.controller.internal_secret,
        )
        self.run(ms.start())
        self.memory_servers.append(ms)
        return ms

    def kill_memory_server(self, ms: MemoryServer) -> None:
        """Abrupt death: sockets closed, no goodbye."""
        self.run(ms.close())
        self.memory_servers.remove(ms)

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
        for ms in self.memory_servers[1:]:
            self.run(ms.close())
        self.run(self.services.close())
        self._stop_loop()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.close()


def _factory(build):
    """A fixture body: yields make(**kw) -> build(n, **kw), and closes all it made."""
    made = []

    def make(**kw):
        made.append(build(len(made), **kw))
        return made[-1]

    yield make
    for thing in made:
        thing.close()


@pytest.fixture
def make_cluster(tmp_path):
    yield from _factory(lambda n, **kw: Cluster(tmp_path, **kw))


@pytest.fixture
def server_process(tmp_path):
    yield from _factory(lambda n, **kw: ServerProcess(tmp_path / f"state{n}", **kw))


class DurableCluster(_OnLoop):
    """A controller alone on a fixed port with its namespace in a file-backed metadata store,
    and memory servers that dial it by address (so they outlive and rejoin it), all on a
    background loop. restart_controller() replaces the controller as a crash would."""

    def __init__(self, tmp_path, *, servers: int = 2, block_size: int = 64 << 10, num_blocks: int = 16,
                 lease_ms: int = 10000, rejoin_ms: int = 10000, join_wait_ms: int = 5000) -> None:  # fmt: skip
        self.tmp_path = tmp_path
        self.lease_ms, self.rejoin_ms, self.join_wait_ms = lease_ms, rejoin_ms, join_wait_ms
        self.block_size, self.num_blocks = block_size, num_blocks
        self.secret = create_secret()  # the controller's, kept across its restarts
        self.secret_file = tmp_path / "internal.key"  # for memory servers in other processes
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.secret_file.write_text(self.secret.hex())
        super().__init__()
        self.store = self.run(self._open_store())
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.controller = self.run(self._start_controller())
        self.memory_servers: list[MemoryServer] = []
        for _ in range(servers):
            self.add_memory_server()

    async def _open_store(self):
        return EmbeddedMetadataStore(str(self.tmp_path / "metadata"))

    async def _start_controller(self) -> Controller:
        ctl = Controller(
            lease_ms=self.lease_ms, data_dir=str(self.tmp_path / "state"), store=self.store,
            rejoin_ms=self.rejoin_ms, join_wait_ms=self.join_wait_ms, internal_secret=self.secret,
        )  # fmt: skip
        await ctl.start()
        await ctl.listen("127.0.0.1", self.port)
        return ctl

    def add_memory_server(self) -> MemoryServer:
        ms = MemoryServer(
            controller=self.address, block_size=self.block_size, num_blocks=self.num_blocks,
            exit_on_controller_loss=False, rejoin_s=None, internal_secret=self.secret,
        )  # fmt: skip
        self.run(ms.start())
        self.memory_servers.append(ms)
        return ms

    def stop_controller(self) -> None:
        """The controller goes away as in a crash: links drop, work in flight is cut short."""
        self.run(self.controller.close())

    def start_controller(self) -> None:
        self.controller = self.run(self._start_controller())

    def restart_controller(self) -> None:
        self.stop_controller()
        self.start_controller()

    def wait_serving(self, count: int, timeout: float = 20) -> None:
        self.run(self.controller.wait_for_servers(count, timeout), timeout + 5)

    def close(self) -> None:
        for c in self.clients:
            c.disconnect()
        for ms in self.memory_servers:
            self.run(ms.close())
        self.run(self.controller.close())
        self.run(self.store.close())
        self._stop_loop()


@pytest.fixture
def durable_cluster(tmp_path):
    yield from _factory(lambda n, **kw: DurableCluster(tmp_path / f"dc{n}", **kw))
