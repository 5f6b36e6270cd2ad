"""Broker settings, loaded once and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

from taureau.storage.managed_ledger.api import ManagedLedgerConfig


@dataclass(slots=True)
class BrokerConfig:
    bind_address: str = "0.0.0.0"
    broker_port: int = 6650
    web_port: int = 8080
    advertised_address: str = "localhost"
    data_dir: str = "./data"
    cluster_name: str = "standalone"
    max_message_size: int = 5 * 1024 * 1024
    journal_fsync: bool = True
    # Pulsar's maxNumPartitionsPerPartitionedTopic (whose default, 0, means no limit): one
    # request could otherwise create 2^31 partitions that every listing then walks.
    max_num_partitions_per_partitioned_topic: int = 1024
    managed_ledger: ManagedLedgerConfig = field(default_factory=ManagedLedgerConfig)

    @property
    def service_url(self) -> str:
        return f"pulsar://{self.advertised_address}:{self.broker_port}"

    @property
    def web_service_url(self) -> str:
        return f"http://{self.advertised_address}:{self.web_port}"
