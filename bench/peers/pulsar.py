"""Apache Pulsar standalone (pulsar_server.py) driven by the same official Python client as Taureau.

Same roles (producer, consumer, latency, e2e-latency receiver) as peers/taureau.py, so the two
differ only in the broker. Durability: the bookie's journal fsyncs before it acknowledges
(journalSyncData=true, BookKeeper's default), as Taureau's journal does before a send receipt.
"""

from __future__ import annotations

from pathlib import Path

from . import pulsar_server
from .base import Server
from .taureau import run  # noqa: F401  (the worker entry point: same client, same roles)

NAME = "pulsar"


def missing() -> str | None:
    return pulsar_server.missing()


def start(workdir: Path) -> Server:
    server = pulsar_server.start(workdir)
    settings = {
        "version": f"Apache Pulsar {pulsar_server.VERSION} standalone (RocksDB metadata, 1 bookie)",
        "journal": "bookie journal fsync before every add acknowledgement",
    }
    # Server.stop sends SIGINT: the JVM runs the same shutdown hook as for SIGTERM.
    return Server(NAME, server.proc, server.service_url, server.log, settings)
