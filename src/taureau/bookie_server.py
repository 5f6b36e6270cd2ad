"""`taureau bookie`: one bookie as a process of its own, serving the bookie protocol over TCP.

It keeps entries in its data directory (journal, entry logs, index: the same storage the
standalone's in-process bookie uses), and registers itself as available in the metadata
store for the life of its session: when the process dies, its registration goes with it.
Its id is its advertised address (host:port), which ledger metadata records in ensembles.

Auto-recovery runs here, as BookKeeper's autoRecoveryDaemonEnabled does by default: every
bookie runs a replication worker and stands for auditor election. Bookies, not brokers,
because they are the processes a cluster always has wherever there is storage to repair,
brokers stay free of background copying that would compete with serving, and a broker-less
storage cluster (bookies and ZooKeeper only) still heals itself.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from taureau.metadata.factory import open_metadata_store
from taureau.net.server import install_fast_event_loop, start_tcp_server
from taureau.node import Node, run_until_signalled
from taureau.storage.bookie import Bookie
from taureau.storage.bookie.service import BookieServer
from taureau.storage.ledger.autorecovery import AutoRecovery, AutoRecoveryConfig
from taureau.storage.ledger.cluster import ClusterLedgerClient
from taureau.storage.ledger.registry import register_bookie
from taureau.storage.ledger.rereplicate import Copied


@dataclass(slots=True)
class BookieConfig:
    metadata_url: str
    data_dir: str = "./bookie-data"
    port: int = 3181
    bind_address: str = "0.0.0.0"
    advertised_address: str = "127.0.0.1"
    journal_fsync: bool = True
    metadata_session_timeout_s: float = 10.0
    autorecovery: bool = True
    lost_bookie_recovery_delay_s: float = 0.0
    audit_interval_s: float = 60.0


class BookieNode(Node):
    def __init__(self, config: BookieConfig) -> None:
        super().__init__()
        self.config = config
        self.port = 0

    async def start(self) -> str:
        c = self.config
        data_dir = self.prepare_data_dir(c.data_dir)
        store = await open_metadata_store(c.metadata_url, None, session_timeout_s=c.metadata_session_timeout_s)
        self.on_stop(store.close)
        store.on_session_expired(lambda: self.stop_for(f"metadata store session expired ({c.metadata_url})"))
        bookie = Bookie(os.path.join(data_dir, "bookie"), journal_fsync=c.journal_fsync)
        await bookie.start()
        self.on_stop(bookie.close)
        service = BookieServer(bookie)
        server, self.port = await start_tcp_server(service.protocol, c.bind_address, c.port)

        async def stop_serving() -> None:
            server.close()
            service.close_connections()

        self.on_stop(stop_serving)
        bookie_id = f"{c.advertised_address}:{self.port}"
        # Registered last: a bookie others can see is one that answers.
        await register_bookie(store, bookie_id, {"data_dir": data_dir, "pid": os.getpid()})
        if not c.autorecovery:
            return f"bookie {bookie_id} registered in {c.metadata_url}, data in {data_dir}, no auto-recovery"
        client = ClusterLedgerClient(store, request_timeout_s=30.0)
        self.on_stop(client.close)
        recovery = AutoRecovery(
            store, client.reachable, bookie_id,
            AutoRecoveryConfig(c.lost_bookie_recovery_delay_s, c.audit_interval_s),
        )  # fmt: skip
        recovery.start()
        self.on_stop(recovery.close)
        return (
            f"bookie {bookie_id} registered in {c.metadata_url}, data in {data_dir}, auto-recovery after "
            f"{c.lost_bookie_recovery_delay_s:g}s"
        )


async def recover_bookies(metadata_url: str) -> tuple[list[Copied], list[str]]:
    """`taureau recover-bookies`: re-replicate, once, what bookies no longer registered held."""
    store = await open_metadata_store(metadata_url, None)
    client = ClusterLedgerClient(store)
    try:
        return await client.rereplicate()
    finally:
        await client.close()
        await store.close()


def run(config: BookieConfig) -> None:
    install_fast_event_loop()
    node = BookieNode(config)
    asyncio.run(run_until_signalled("Taureau bookie", node, node.start))
