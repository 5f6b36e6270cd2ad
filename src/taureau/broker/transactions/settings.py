"""Transaction settings (Pulsar's transactionCoordinatorEnabled and the bounds of docs/transactions.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TransactionConfig:
    # Pulsar's transactionCoordinatorEnabled; off by default, as in Pulsar standalone.
    enabled: bool = False
    # Partitions of pulsar/system/transaction_coordinator_assign (Pulsar standalone: 16); the
    # coordinator ids clients may connect to are 0..coordinators-1.
    coordinators: int = 16
    # Open (not yet ended) transactions: in total, and opened through one connection.
    max_open: int = 10_000
    max_open_per_connection: int = 1_000
    # NEW_TXN's txn_ttl_seconds: 0 takes the default; more than the maximum is cut to it.
    default_ttl_s: int = 60
    max_ttl_s: int = 24 * 3600
    # Transactional SENDs waiting for their commit (stored on disk; an index entry in memory).
    max_buffered_bytes_per_txn: int = 64 * 1024 * 1024
    max_buffered_entries_per_txn: int = 50_000
    max_buffered_bytes_total: int = 1024 * 1024 * 1024
    # What one transaction record may list (it is one metadata record, at most 1 MiB).
    max_pending_acks_per_txn: int = 10_000
    max_partitions_per_txn: int = 1_000
    max_subscriptions_per_txn: int = 1_000
    # A committed transaction's record is kept this long, so a crash before the subscriptions
    # saved the acks it applied (cursors save once a second) applies them again on restart.
    committed_linger_s: float = 5.0
    # A commit that could not be applied (storage down) is retried after this long.
    retry_s: float = 2.0
