"""`taureau functions-worker`: the functions worker as a process of its own, beside a broker.

It keeps its function records and state tables in its own data directory (its own metadata
store and bookie), reaches the broker through its service URL (instances) and admin URL
(backlogs, subscriptions, de-duplication), and serves `/admin/v3/functions`, the HTTP invoke
route and `/metrics` on its own web port.

With `--metadata-store zk://...` it is one worker of several (docs/cluster.md#functions-across-
workers): function records, assignments and packages in ZooKeeper and on the registered
bookies, instances where the leader assigns them.

Against a broker with authentication on (docs/security.md#a-separate-functions-worker), it
calls the broker as its own role (a superuser's token), authenticates its own callers with the
broker's methods and keys, asks the broker who holds `functions` on a namespace, and mints
each function's token with the broker's internal key (`--internal-key-file`, shared).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from taureau.auth.config import AuthConfig, build_authentication
from taureau.auth.roles import function_role
from taureau.auth.tokens import create_token
from taureau.broker.admin.authn import Authenticate, answer
from taureau.broker.admin.body_limit import ASGIApp, BodyLimit, Receive, Scope, Send
from taureau.common.errors import InvalidTopicNameError
from taureau.common.names import NamespaceName
from taureau.functions.cluster.member import ClusterMember
from taureau.functions.service import mount_worker
from taureau.functions.worker import WorkerConfig
from taureau.net.server import install_fast_event_loop
from taureau.node import Node, run_until_signalled
from taureau.storage.managed_ledger.api import ManagedLedgerConfig
from taureau.web import WebServer


@dataclass(slots=True)
class FunctionsWorkerConfig:
    broker_service_url: str = "pulsar://localhost:6650"
    broker_admin_url: str = "http://localhost:8080"
    data_dir: str = "./functions-data"
    bind_address: str = "0.0.0.0"
    web_port: int = 6750
    state_address: str | None = None
    runtime: str = "process"
    warm_pool_size: int = 1
    secrets_provider: str = "env"
    secrets_dir: str | None = None
    journal_fsync: bool = True
    run_as: tuple[int, int] | None = None  # (uid, gid) process instances drop to, from root
    sandbox_files: bool = False  # confine process instances' files (Landlock)
    readable_paths: tuple[str, ...] = ()  # more trees sandboxed instances may read
    # With authentication on: how callers are checked (the broker's methods, keys, superusers
    # and its internal key, to mint function tokens), and the worker's own token to the broker.
    auth: AuthConfig | None = None
    token: str | None = None
    # One worker of a cluster: the shared ZooKeeper store (None: a worker alone, own storage).
    metadata_url: str | None = None
    metadata_session_timeout_s: float = 10.0
    advertised_address: str = "localhost"  # how the other workers reach this one's REST port
    quorum: tuple[int, int, int] = (2, 2, 2)  # E/Qw/Qa of state tables and shared packages

    @property
    def secured(self) -> bool:
        return self.auth is not None and self.auth.enabled


def build_app() -> FastAPI:
    app = FastAPI(title="Taureau functions worker", version="0.1.0",
                  description="Pulsar-compatible /admin/v3/functions REST API of a Taureau functions worker.")
    app.state.body_limits = {}
    app.state.metrics_sources = []
    app.add_middleware(BodyLimit, max_bytes=5 * 1024 * 1024, larger=app.state.body_limits)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> str:
        lines: list[str] = []
        for source in request.app.state.metrics_sources:
            lines += source()
        return "\n".join(lines) + "\n"

    return app


_OPEN = {"/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


class BrokerGrants:
    """Whether a role may use functions in a namespace, as the broker's grants say: a
    superuser, a role granted `functions` on it, or an admin of its tenant. Read from the
    broker's admin API at each request (a grant or revoke holds at once), as the worker's
    own role; an unreachable broker refuses (503), never allows."""

    def __init__(self, admin_url: str, token: str, superusers: tuple[str, ...]) -> None:
        self.superusers = superusers
        self._http = httpx.AsyncClient(base_url=admin_url.rstrip("/"), timeout=10.0,
                                       headers={"Authorization": f"Bearer {token}"})

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str) -> object:
        response = await self._http.get(path)  # httpx.HTTPError: the caller answers 503
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    async def may_use_functions(self, role: str, ns: NamespaceName) -> bool:
        if role in self.superusers:
            return True
        t, n = quote(ns.tenant, safe=""), quote(ns.namespace, safe="")
        granted = await self._get(f"/admin/v2/namespaces/{t}/{n}/permissions")
        if isinstance(granted, dict) and "functions" in granted.get(role, []):
            return True
        tenant = await self._get(f"/admin/v2/tenants/{t}")
        return isinstance(tenant, dict) and role in tenant.get("adminRoles", [])


def _namespace_of(path: str) -> NamespaceName | None:
    """The namespace a functions request names; None for paths of superusers only."""
    s = [unquote(part) for part in path.strip("/").split("/")]
    if s[:3] == ["admin", "v3", "functions"] and len(s) >= 5:
        return NamespaceName.parse(f"{s[3]}/{s[4]}")
    if s[:1] == ["functions"] and len(s) >= 3:  # invoking a function over HTTP
        return NamespaceName.parse(f"{s[1]}/{s[2]}")
    return None


class AuthorizeFunctions:
    """ASGI middleware inside Authenticate: 403 unless the role may use the request's
    namespace (BrokerGrants), before any handler runs."""

    def __init__(self, app: ASGIApp, grants: BrokerGrants) -> None:
        self.app = app
        self.grants = grants

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "/")
        if scope["type"] != "http" or path in _OPEN:
            await self.app(scope, receive, send)
            return
        role = (scope.get("state") or {}).get("role") or ""
        try:
            ns = _namespace_of(path)
            allowed = role in self.grants.superusers if ns is None else await self.grants.may_use_functions(role, ns)
        except InvalidTopicNameError as exc:
            await answer(send, 400, str(exc))
            return
        except httpx.HTTPError as exc:
            await answer(send, 503, f"cannot read the broker's permissions: {exc}")
            return
        if not allowed:
            what = f"use functions in namespace {ns}" if ns is not None else "use this path (superusers only)"
            await answer(send, 403, f"role {role} may not {what}")
            return
        await self.app(scope, receive, send)


def _minter(auth: AuthConfig) -> Callable[[str, str, str], str]:
    """Function-role tokens signed with the broker's internal key (shared through
    --internal-key-file): the broker accepts them, and the roles are reserved to them."""
    return lambda tenant, namespace, name: create_token(
        function_role(tenant, namespace, name), secret_key=auth.internal_key, expires_in_s=auth.function_token_ttl_s
    )


class FunctionsWorkerNode(Node):
    def __init__(self, config: FunctionsWorkerConfig) -> None:
        super().__init__()
        self.config = config
        self.web_port = 0

    async def start(self) -> str:
        c = self.config
        data_dir = self.prepare_data_dir(c.data_dir)
        clustered = c.metadata_url is not None
        ledger_config = ManagedLedgerConfig()
        if clustered:
            ledger_config.ensemble_size, ledger_config.write_quorum, ledger_config.ack_quorum = c.quorum
        store, factory = await self.open_storage(
            data_dir, c.metadata_url, fsync=c.journal_fsync, config=ledger_config, remote_bookies=clustered,
            metadata_session_timeout_s=c.metadata_session_timeout_s, exclusive=False,
        )
        app = build_app()
        token_for: Callable[[str, str, str], str] | None = None
        if c.auth is not None and c.secured:
            authentication = build_authentication(c.auth)
            assert authentication is not None and c.token is not None  # checked by the CLI
            grants = BrokerGrants(c.broker_admin_url, c.token, c.auth.superuser_roles)
            self.on_stop(grants.close)
            app.add_middleware(AuthorizeFunctions, grants=grants)
            app.add_middleware(Authenticate, service=authentication)  # outermost: runs first
            token_for = _minter(c.auth)
        web = WebServer(app, c.bind_address, c.web_port)
        self.web_port = web.port
        worker = mount_worker(app, WorkerConfig(
            data_dir=data_dir, service_url=c.broker_service_url, admin_url=c.broker_admin_url,
            state_address=c.state_address, default_runtime=c.runtime, warm_pool_size=c.warm_pool_size,
            secrets_provider=c.secrets_provider, secrets_dir=c.secrets_dir,
            worker_id=f"{c.advertised_address}:{web.port}" if clustered else f"worker-{web.port}",
            admin_token=c.token if token_for is not None else None, token_for=token_for,
            token_ttl_s=float(c.auth.function_token_ttl_s if c.auth is not None else 3600), run_as=c.run_as,
            sandbox_files=c.sandbox_files, readable_paths=c.readable_paths,
        ), store, factory)
        if clustered:
            worker.member = ClusterMember(worker, store, factory.ledgers, f"http://{c.advertised_address}:{web.port}",
                                          c.quorum, claim_wait_s=c.metadata_session_timeout_s + 5)
        await web.start()
        self.on_stop(web.stop)
        await worker.start()
        self.on_stop(worker.close)
        where = f"worker {worker.config.worker_id} of {c.metadata_url}" if clustered else f"data in {data_dir}"
        return f"functions REST http://{c.bind_address}:{self.web_port}, broker {c.broker_service_url}, {where}"


def run(config: FunctionsWorkerConfig) -> None:
    install_fast_event_loop()
    node = FunctionsWorkerNode(config)
    asyncio.run(run_until_signalled("Taureau functions worker", node, node.start))
