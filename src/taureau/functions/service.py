"""Put a functions worker on a web app: its REST routes and its series on `/metrics`."""

from __future__ import annotations

from typing import Any

from taureau.functions import rest
from taureau.functions.views import prometheus_lines
from taureau.functions.worker import FunctionWorker, WorkerConfig
from taureau.metadata.store import MetadataStore
from taureau.storage.managed_ledger.api import ManagedLedgerFactoryBase


def mount_worker(app: Any, config: WorkerConfig, store: MetadataStore,
                 ledgers: ManagedLedgerFactoryBase) -> FunctionWorker:
    worker = FunctionWorker(config, store, ledgers)
    rest.install(app, worker)
    if getattr(app.state, "metrics_sources", None) is None:
        app.state.metrics_sources = []
    app.state.metrics_sources.append(lambda: prometheus_lines(list(worker.deployments.values())))
    return worker
