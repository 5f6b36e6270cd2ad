"""Managed ledger: a topic's log as a chain of ledgers, with durable cursors."""

from taureau.storage.managed_ledger.api import (
    InitialPosition,
    ManagedCursor,
    ManagedLedger,
    ManagedLedgerConfig,
    ManagedLedgerFactoryBase,
)
from taureau.storage.managed_ledger.factory import ManagedLedgerFactory

__all__ = [
    "InitialPosition",
    "ManagedCursor",
    "ManagedLedger",
    "ManagedLedgerConfig",
    "ManagedLedgerFactory",
    "ManagedLedgerFactoryBase",
]
