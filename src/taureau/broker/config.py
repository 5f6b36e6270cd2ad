"""Broker settings, loaded once and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

from taureau.auth.config import AuthConfig
from taureau.broker.ownership.settings import LoadBalancerSettings
from taureau.broker.transactions.settings import TransactionConfig
from taureau.common.errors import ServiceNotReadyError
from taureau.net.tls import TlsFiles
from taureau.storage.managed_ledger.api import ManagedLedgerConfig


@dataclass(slots=True)
class BrokerConfig:
    # Loopback: with authentication off nothing else should reach the ports (the CLI binds
    # 0.0.0.0 by default only when --auth is given).
    bind_address: str = "127.0.0.1"
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
    # -- what one client can make the broker hold (see docs/architecture.md, "Bounds") --
    # Pulsar's brokerMaxConnections / brokerMaxConnectionsPerIp (Pulsar: 0, no limit).
    max_connections: int = 4096
    max_connections_per_ip: int = 1024
    # Pulsar's keepAliveIntervalSeconds: ping an idle peer this often, close it when the
    # previous ping is still unanswered (half-open connections go within two intervals).
    keep_alive_interval_s: float = 30.0
    # A connection must send CONNECT within this (Pulsar uses keepAliveIntervalSeconds).
    connect_timeout_s: float = 10.0
    # SEND bytes a connection may have in flight before the broker stops reading from it
    # (Pulsar bounds the count, maxPendingPublishRequestsPerConnection, and a broker-wide
    # maxMessagePublishBufferSizeInMB).
    max_pending_publish_bytes_per_connection: int = 16 * 1024 * 1024
    # Pulsar's maxUnackedMessagesPerConsumer / maxUnackedMessagesPerSubscription (Shared and
    # Key_Shared only, as Pulsar): dispatch to a consumer (subscription) stops at this many
    # unacknowledged messages and resumes once they drop to half. 0: no limit.
    max_unacked_messages_per_consumer: int = 50_000
    max_unacked_messages_per_subscription: int = 200_000
    # Pulsar's managedLedgerCacheSizeMB: one entry cache budget shared by every topic, the
    # coldest topic's oldest entries evicted first (each topic is also capped by
    # managed_ledger.cache_size_bytes).
    managed_ledger_cache_size_bytes: int = 256 * 1024 * 1024
    # Pulsar's managedLedgerDefaultMarkDeleteRateLimit (1.0 per second): a consumer's acked
    # position is saved at most this often (a crash redelivers at most this much of acks).
    # Saved ten times a second, 1,000 acking topics made 10,000 metadata writes a second.
    cursor_save_interval_s: float = 1.0
    # A loaded topic with no producer, no consumer and no request for it this long is closed
    # (cursors and de-duplication saved) and loaded again by the next client or admin call,
    # as a Pulsar broker unloads a bundle: an idle topic holds no ledger, cache or dispatcher.
    # 0 keeps every topic loaded.
    idle_topic_unload_s: float = 60.0
    # Largest admin REST request body (Pulsar: httpMaxRequestSize); larger ones get 413.
    # Records in the metadata store are bounded separately (1 MiB, metadata/embedded.py).
    max_http_request_bytes: int = 5 * 1024 * 1024
    # How often message TTLs are applied and backlog quotas checked (Pulsar checks TTLs every
    # messageExpiryCheckIntervalInMinutes = 5 and quotas every backlogQuotaCheckIntervalInSeconds = 60).
    policy_check_interval_s: float = 60.0
    # Pulsar's brokerDeleteInactiveTopicsEnabled / ...MaxInactiveDurationSeconds / ...Mode: the
    # inactive-topic policy of namespaces and topics that set none (broker.inactive_topics).
    # Off by default, unlike Pulsar's (on, 60 s, delete_when_no_subscriptions): a topic written
    # by producers before any consumer subscribed would lose its messages a minute after the
    # producers stopped, and topics kept by retention for readers would vanish. Deleting is
    # what an operator asks for, per namespace or here.
    delete_inactive_topics_enabled: bool = False
    delete_inactive_topics_max_inactive_duration_s: int = 60
    delete_inactive_topics_mode: str = "delete_when_no_subscriptions"
    # Topics' ledgers, with Pulsar's broker default of 10 minutes before a full ledger rolls
    # over (managedLedgerMinLedgerRolloverTimeMinutes; see ManagedLedgerConfig).
    managed_ledger: ManagedLedgerConfig = field(
        default_factory=lambda: ManagedLedgerConfig(min_ledger_rollover_s=600.0)
    )
    # Pulsar's advertisedListeners: listener name -> the URL a lookup naming it answers with.
    # A client that names no listener gets service_url; one naming an unknown listener, an error.
    advertised_listeners: dict[str, str] = field(default_factory=dict)
    # Authentication and superusers (off by default: then standalone listens on loopback).
    auth: AuthConfig = field(default_factory=AuthConfig)
    # Transactions (Pulsar's transactionCoordinatorEnabled and bounds; docs/transactions.md).
    transactions: TransactionConfig = field(default_factory=TransactionConfig)
    # Shedding, auto split and the bundle cap (docs/cluster.md).
    load_balancer: LoadBalancerSettings = field(default_factory=LoadBalancerSettings)
    # TLS (Pulsar's brokerServicePortTls, webServicePortTls, tlsCertificateFilePath...): the
    # TLS ports are served while `tls` is set; the plain ones unless plain_ports is False.
    tls: TlsFiles | None = None
    broker_port_tls: int = 6651
    web_port_tls: int = 8443
    plain_ports: bool = True

    @property
    def service_url(self) -> str:
        return f"pulsar://{self.advertised_address}:{self.broker_port}"

    @property
    def service_url_tls(self) -> str | None:
        return f"pulsar+ssl://{self.advertised_address}:{self.broker_port_tls}" if self.tls else None

    def listener_url(self, name: str) -> str:
        """The URL a lookup through listener `name` answers ("": no listener named)."""
        if not name:
            return self.service_url if self.plain_ports or self.tls is None else str(self.service_url_tls)
        url = self.advertised_listeners.get(name)
        if url is None:
            raise ServiceNotReadyError(f"the broker has no listener named {name!r}")
        return url

    @property
    def web_service_url(self) -> str:
        return f"http://{self.advertised_address}:{self.web_port}"
