"""`taureau standalone`: metadata store, bookie, managed ledgers, broker, admin API (and the
state controller with a memory server) in one process."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taureau.broker.admin import build_admin_app
from taureau.broker.config import BrokerConfig
from taureau.broker.connection import ServerConnection
from taureau.broker.service import BrokerService
from taureau.common.errors import StorageError
from taureau.metadata.factory import open_metadata_store
from taureau.net.server import install_fast_event_loop, start_tcp_server
from taureau.storage.ledger.local import open_local_ledger_client
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory
from taureau.web import WebServer

if TYPE_CHECKING:
    from taureau.state.service import StateServices

log = logging.getLogger("taureau.standalone")


@dataclass(slots=True)
class StateOptions:
    enabled: bool = True
    port: int = 9090
    block_size: int = 32 * 1024 * 1024
    blocks: int = 64
    lease_ms: int = 10_000


@dataclass(slots=True)
class FunctionsOptions:
    enabled: bool = True
    runtime: str = "process"  # or "thread": where instances run unless a function says otherwise
    warm_pool_size: int = 1  # instance processes kept started ahead of need
    secrets_provider: str = "env"  # or "cleartext"


@dataclass(slots=True)
class StandaloneConfig:
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    metadata_url: str | None = None
    state: StateOptions = field(default_factory=StateOptions)
    functions: FunctionsOptions = field(default_factory=FunctionsOptions)


class Standalone:
    """Everything `taureau standalone` runs, started and stopped in dependency order."""

    def __init__(self, config: StandaloneConfig) -> None:
        self.config = config
        self.broker_port = 0
        self.web_port = 0
        self.state_address: str | None = None
        self.state_services: StateServices | None = None  # when the state layer runs
        self._closers: list = []  # async callables, run in reverse order on stop

    async def start(self) -> None:
        broker = self.config.broker
        data_dir = os.path.abspath(broker.data_dir)
        try:
            os.makedirs(data_dir, exist_ok=True)
            probe = os.path.join(data_dir, ".write-probe")
            with open(probe, "wb") as f:
                f.write(b"ok")
            os.remove(probe)
        except OSError as exc:
            raise StorageError(f"data directory {data_dir} is not writable: {exc.strerror}") from None
        self._lock_data_dir(data_dir)
        store = await open_metadata_store(self.config.metadata_url, data_dir, fsync=broker.journal_fsync)
        self._closers.append(store.close)
        ledgers = await open_local_ledger_client(
            data_dir, store, num_bookies=1, journal_fsync=broker.journal_fsync
        )
        self._closers.append(ledgers.close)
        factory = ManagedLedgerFactory(store, ledgers, broker.managed_ledger)
        self._closers.append(factory.close)
        service = BrokerService(broker, store, factory)
        await service.start()
        self._closers.append(service.close)
        self.service = service

        server, self.broker_port = await start_tcp_server(
            lambda: ServerConnection(service), broker.bind_address, broker.broker_port
        )
        if broker.broker_port == 0:
            broker.broker_port = self.broker_port  # lookups must answer the real port

        async def stop_broker_server() -> None:
            server.close()

        self._closers.append(stop_broker_server)
        if self.config.state.enabled:
            await self._start_state(data_dir, store)
        app = build_admin_app(service)
        web = WebServer(app, broker.bind_address, broker.web_port)
        self.web_port = web.port
        if broker.web_port == 0:
            broker.web_port = web.port
        worker = self._functions_worker(app, data_dir, store, factory) if self.config.functions.enabled else None
        if self.state_services is not None:  # the state layer's series on the same /metrics
            sources = list(getattr(app.state, "metrics_sources", []))
            sources.append(self.state_services.controller.prometheus_lines)
            app.state.metrics_sources = sources
        await web.start()
        self._closers.append(web.stop)
        if worker is not None:
            await worker.start()
            self._closers.append(worker.close)

    def _functions_worker(self, app, data_dir: str, store, factory):
        from taureau.functions import rest
        from taureau.functions.views import prometheus_lines
        from taureau.functions.worker import FunctionWorker, WorkerConfig

        broker, opts = self.config.broker, self.config.functions
        local = "127.0.0.1" if broker.bind_address in ("0.0.0.0", "") else broker.bind_address
        worker = FunctionWorker(
            WorkerConfig(
                data_dir=data_dir,
                service_url=f"pulsar://{local}:{self.broker_port}",
                admin_url=f"http://{local}:{self.web_port}",
                state_address=self.state_address,
                default_runtime=opts.runtime,
                warm_pool_size=opts.warm_pool_size,
                secrets_provider=opts.secrets_provider,
            ),
            store,
            factory,
        )
        rest.install(app, worker)
        app.state.metrics_sources = [lambda: prometheus_lines(list(worker.deployments.values()))]
        self.functions = worker
        return worker

    def _lock_data_dir(self, data_dir: str) -> None:
        """Hold an exclusive lock on the data directory for the life of the process: two
        processes appending to one journal and metadata log would corrupt both."""
        lock_path = os.path.join(data_dir, "LOCK")
        lock_file = open(lock_path, "a+")  # noqa: SIM115 - held open until stop()
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "another process"
            lock_file.close()
            raise StorageError(f"data directory {data_dir} is in use by {holder}") from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"taureau pid {os.getpid()}\n")
        lock_file.flush()

        async def unlock() -> None:
            lock_file.close()  # closing releases the flock

        self._closers.append(unlock)

    async def _start_state(self, data_dir: str, store) -> None:
        from taureau.state.service import start_state_services

        opts = self.config.state
        services = await start_state_services(
            host=self.config.broker.bind_address,
            advertised_host=self.config.broker.advertised_address,
            controller_port=opts.port,
            block_size=opts.block_size,
            num_blocks=opts.blocks,
            lease_ms=opts.lease_ms,
            data_dir=os.path.join(data_dir, "state"),
            store=store,  # the namespace outlives a restart (docs/state.md)
        )
        self.state_services = services
        port = services.controller_address.rsplit(":", 1)[1]
        self.state_address = f"{self.config.broker.advertised_address}:{port}"
        self._closers.append(services.close)

    async def stop(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("error while stopping %s", closer)


async def serve(config: StandaloneConfig) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly."""
    started = time.monotonic()
    standalone = Standalone(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await standalone.start()
    except BaseException:
        await standalone.stop()
        raise
    broker = config.broker
    state = f", state controller {standalone.state_address}" if standalone.state_address else ""
    print(
        f"Taureau standalone ready in {time.monotonic() - started:.2f}s: "
        f"broker pulsar://{broker.advertised_address}:{standalone.broker_port}, "
        f"admin http://{broker.advertised_address}:{standalone.web_port}{state}, "
        f"data in {os.path.abspath(broker.data_dir)}",
        flush=True,
    )
    await stop.wait()
    print("Taureau standalone shutting down", flush=True)
    await standalone.stop()


def run(config: StandaloneConfig) -> None:
    install_fast_event_loop()
    asyncio.run(serve(config))
