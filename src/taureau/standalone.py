"""`taureau standalone`: metadata store, bookie, managed ledgers, broker, admin API (and the
state controller with a memory server) in one process."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taureau.broker.admin import build_admin_app
from taureau.broker.config import BrokerConfig
from taureau.broker.connection import ServerConnection
from taureau.broker.ownership.bundles import DEFAULT_BUNDLES
from taureau.broker.ownership.cluster import ClusterOwnership
from taureau.broker.ownership.loadmanager import LoadManager
from taureau.broker.policy_watch import PolicyWatcher
from taureau.broker.service import BrokerService
from taureau.net.loop_probe import LoopProbe
from taureau.net.server import install_fast_event_loop, start_tcp_server
from taureau.net.tls import ReloadingContext
from taureau.node import Node, run_until_signalled
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
    secrets_provider: str = "env"  # or "cleartext", "file"
    secrets_dir: str | None = None  # for "file"
    run_as: tuple[int, int] | None = None  # (uid, gid) process instances drop to, from root
    sandbox_files: bool = False  # confine process instances' files (Landlock)
    readable_paths: tuple[str, ...] = ()  # more trees sandboxed instances may read


@dataclass(slots=True)
class StandaloneConfig:
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    metadata_url: str | None = None
    metadata_session_timeout_s: float = 10.0  # ZooKeeper only (Pulsar: metadataStoreSessionTimeoutMillis)
    remote_bookies: bool = False  # entries on the `taureau bookie` processes registered in the store
    state: StateOptions = field(default_factory=StateOptions)
    functions: FunctionsOptions = field(default_factory=FunctionsOptions)
    dashboard: bool = True  # the web dashboard at / of the web port, and its live stream
    # A `taureau broker` of a cluster: one of several on one ZooKeeper (no standalone claim).
    cluster_member: bool = False
    bundles_per_namespace: int = DEFAULT_BUNDLES  # for namespaces first used by this broker
    name: str = "Taureau standalone"


class Standalone(Node):
    """Everything `taureau standalone` runs, started and stopped in dependency order."""

    def __init__(self, config: StandaloneConfig) -> None:
        super().__init__()
        self.config = config
        self.broker_port = 0
        self.web_port = 0
        self.broker_port_tls = 0
        self.web_port_tls = 0
        self.tls: ReloadingContext | None = None
        self.state_address: str | None = None
        self.state_services: StateServices | None = None  # when the state layer runs

    async def start(self) -> None:
        broker = self.config.broker
        _check_exposure(broker)
        data_dir = self.prepare_data_dir(broker.data_dir)
        store, factory = await self.open_storage(
            data_dir, self.config.metadata_url, fsync=broker.journal_fsync, config=broker.managed_ledger,
            cache_budget_bytes=broker.managed_ledger_cache_size_bytes,
            cursor_save_interval_s=broker.cursor_save_interval_s,
            metadata_session_timeout_s=self.config.metadata_session_timeout_s,
            remote_bookies=self.config.remote_bookies, exclusive=not self.config.cluster_member,
        )
        service = BrokerService(broker, store, factory)
        ownership = None
        if (self.config.metadata_url or "").startswith("zk://"):
            # Bundles shared with the other brokers of this store (docs/cluster.md).
            ownership = ClusterOwnership(store, service.unload_topics, service.topic_loads,
                                         default_bundles=self.config.bundles_per_namespace)
            service.ownership = ownership
        await service.start()
        self.on_stop(service.close)
        self.service = service

        await self._start_broker_servers(service)
        if self.config.state.enabled:
            await self._start_state(data_dir, store)
        app = build_admin_app(service)
        probe = LoopProbe()
        probe.start()
        self.on_stop(_stopper(probe.stop))
        self.on_ready(probe.reset)  # report serving, not start-up
        app.state.metrics_sources = [probe.prometheus_lines]
        if self.ledgers is not None:  # the local bookie's journal latencies
            app.state.metrics_sources.append(self.ledgers.prometheus_lines)
        webs = self._web_servers(app)
        worker = self._functions_worker(app, data_dir, store, factory) if self.config.functions.enabled else None
        if self.state_services is not None:  # the state layer's series on the same /metrics
            sources = list(getattr(app.state, "metrics_sources", []))
            sources.append(self.state_services.controller.prometheus_lines)
            app.state.metrics_sources = sources
        hub = None
        if self.config.dashboard:
            from taureau.dashboard import install_dashboard

            state = self.state_services.controller.stats if self.state_services is not None else None
            hub = install_dashboard(app, service, worker, state)
        for web in webs:
            await web.start()
            self.on_stop(web.stop)
        if hub is not None:  # stopped before the web servers, so open streams end at once
            hub.start()
            self.on_stop(hub.stop)
        if ownership is not None:
            # Advertised only now that its ports serve; stops serving before its topics close.
            await ownership.start(service.own_urls(), wait_s=self.config.metadata_session_timeout_s + 5)
            self.on_stop(ownership.close)
            # Policy changes made at other brokers reach the topics loaded here.
            watcher = PolicyWatcher(store, lambda: [t.name for t in service.loaded_topics()],
                                    service.apply_policies, service.apply_topic_policies)
            watcher.start()
            self.on_stop(watcher.close)
        load_manager = LoadManager(service.ownership, broker.load_balancer, cluster=ownership,
                                   auth_headers=_internal_auth(broker))
        load_manager.start()
        self.on_stop(load_manager.close)
        if worker is not None:
            await worker.start()
            self.on_stop(worker.close)

    async def _start_broker_servers(self, service: BrokerService) -> None:
        broker = self.config.broker
        if broker.tls is not None:
            self.tls = ReloadingContext(broker.tls)
            self.tls.start()
            self.on_stop(self.tls.stop)
            server, self.broker_port_tls = await start_tcp_server(
                lambda: ServerConnection(service), broker.bind_address, broker.broker_port_tls, self.tls.context
            )
            broker.broker_port_tls = self.broker_port_tls  # lookups must answer the real port
            self.on_stop(_stopper(server.close))
        if broker.plain_ports:
            server, self.broker_port = await start_tcp_server(
                lambda: ServerConnection(service), broker.bind_address, broker.broker_port
            )
            broker.broker_port = self.broker_port
            self.on_stop(_stopper(server.close))

    def _web_servers(self, app: Any) -> list[WebServer]:
        broker = self.config.broker
        webs = []
        if self.tls is not None:
            web = WebServer(app, broker.bind_address, broker.web_port_tls, self.tls.context,
                            peer_names=app.state.tls_peer_names)
            self.web_port_tls = broker.web_port_tls = web.port
            webs.append(web)
        if broker.plain_ports:
            web = WebServer(app, broker.bind_address, broker.web_port)
            self.web_port = broker.web_port = web.port
            webs.append(web)
        return webs

    def _functions_worker(self, app: Any, data_dir: str, store: Any, factory: Any) -> Any:
        from taureau.functions.service import mount_worker
        from taureau.functions.worker import WorkerConfig

        broker, opts = self.config.broker, self.config.functions
        local = "127.0.0.1" if broker.bind_address in ("0.0.0.0", "") else broker.bind_address
        config = WorkerConfig(
            data_dir=data_dir,
            service_url=f"pulsar://{local}:{self.broker_port}",
            admin_url=f"http://{local}:{self.web_port}",
            state_address=self.state_address,
            default_runtime=opts.runtime,
            warm_pool_size=opts.warm_pool_size,
            secrets_provider=opts.secrets_provider,
            secrets_dir=opts.secrets_dir,
            admin_token=broker.auth.internal_token() if broker.auth.enabled else None,
            token_for=_function_tokens(broker.auth) if broker.auth.enabled else None,
            token_ttl_s=broker.auth.function_token_ttl_s,
            run_as=opts.run_as,
            sandbox_files=opts.sandbox_files,
            readable_paths=opts.readable_paths,
        )
        self.functions = mount_worker(app, config, store, factory)
        from taureau.sketches.rest import install as install_sketches

        install_sketches(app, self.functions)
        return self.functions

    async def _start_state(self, data_dir: str, store: Any) -> None:
        from taureau.state.service import start_state_services

        opts = self.config.state
        access = None
        if self.service.authentication is not None:  # state clients authenticate as broker clients do
            from taureau.broker.state_access import BrokerStateAccess

            access = BrokerStateAccess(self.service.authentication, self.service.authorization)
        services = await start_state_services(
            host=self.config.broker.bind_address,
            advertised_host=self.config.broker.advertised_address,
            controller_port=opts.port,
            block_size=opts.block_size,
            num_blocks=opts.blocks,
            lease_ms=opts.lease_ms,
            data_dir=os.path.join(data_dir, "state"),
            store=store,  # the namespace outlives a restart (docs/state.md)
            access=access,
        )
        self.state_services = services
        port = services.controller_address.rsplit(":", 1)[1]
        self.state_address = f"{self.config.broker.advertised_address}:{port}"
        self.on_stop(services.close)


def _function_tokens(auth: Any) -> Any:
    """Each function's instances connect as the function's own role (function:t/ns/name),
    with a token signed by the server's internal key: what they may do is what that role may."""
    from taureau.broker.authorization import function_role

    return lambda tenant, namespace, name: auth.internal_token(
        function_role(tenant, namespace, name), expires_in_s=auth.function_token_ttl_s
    )


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _check_exposure(broker: BrokerConfig) -> None:
    """Say so when every port is open to the network with no authentication."""
    if not broker.auth.enabled and broker.bind_address not in LOOPBACK:
        log.warning(
            "listening on %s with authentication off: anyone who can reach ports %d, %d and the state "
            "port can read, write and delete everything (use --auth, or --bind-address 127.0.0.1)",
            broker.bind_address, broker.broker_port, broker.web_port,
        )


def _internal_auth(broker: BrokerConfig):
    """The load manager's credentials for other brokers' admin calls: this server's own
    token while authentication is on (brokers of one cluster share the internal key)."""

    def headers() -> dict[str, str]:
        return {"Authorization": f"Bearer {broker.auth.internal_token()}"} if broker.auth.enabled else {}

    return headers


def _stopper(stop) -> Any:
    async def closer() -> None:
        stop()

    return closer


async def serve(config: StandaloneConfig) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly."""
    standalone = Standalone(config)

    async def start() -> str:
        await standalone.start()
        broker = config.broker
        state = f", state controller {standalone.state_address}" if standalone.state_address else ""
        host = broker.advertised_address
        urls = []
        if broker.plain_ports:
            urls += [f"broker pulsar://{host}:{standalone.broker_port}", f"admin http://{host}:{standalone.web_port}"]
        if broker.tls is not None:
            urls += [f"broker pulsar+ssl://{host}:{standalone.broker_port_tls}",
                     f"admin https://{host}:{standalone.web_port_tls}"]
        return (f"{', '.join(urls)}{state}, "
                f"data in {os.path.abspath(broker.data_dir)}")

    await run_until_signalled(config.name, standalone, start)


def run(config: StandaloneConfig) -> None:
    install_fast_event_loop()
    asyncio.run(serve(config))
