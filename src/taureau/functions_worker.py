"""`taureau functions-worker`: the functions worker as a process of its own, beside a broker.

It keeps its function records and state tables in its own data directory (its own metadata
store and bookie), reaches the broker through its service URL (instances) and admin URL
(backlogs, subscriptions, de-duplication), and serves `/admin/v3/functions`, the HTTP invoke
route and `/metrics` on its own web port.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from taureau.broker.admin.body_limit import BodyLimit
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


class FunctionsWorkerNode(Node):
    def __init__(self, config: FunctionsWorkerConfig) -> None:
        super().__init__()
        self.config = config
        self.web_port = 0

    async def start(self) -> str:
        c = self.config
        data_dir = self.prepare_data_dir(c.data_dir)
        store, factory = await self.open_storage(data_dir, None, fsync=c.journal_fsync, config=ManagedLedgerConfig())
        app = build_app()
        web = WebServer(app, c.bind_address, c.web_port)
        self.web_port = web.port
        worker = mount_worker(app, WorkerConfig(
            data_dir=data_dir, service_url=c.broker_service_url, admin_url=c.broker_admin_url,
            state_address=c.state_address, default_runtime=c.runtime, warm_pool_size=c.warm_pool_size,
            secrets_provider=c.secrets_provider, secrets_dir=c.secrets_dir, worker_id=f"worker-{web.port}",
        ), store, factory)
        await web.start()
        self.on_stop(web.stop)
        await worker.start()
        self.on_stop(worker.close)
        return (f"functions REST http://{c.bind_address}:{self.web_port}, broker {c.broker_service_url}, "
                f"data in {data_dir}")


def run(config: FunctionsWorkerConfig) -> None:
    install_fast_event_loop()
    node = FunctionsWorkerNode(config)
    asyncio.run(run_until_signalled("Taureau functions worker", node, node.start))
