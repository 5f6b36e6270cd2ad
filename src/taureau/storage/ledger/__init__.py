"""Ledger client: single-writer append-only ledgers replicated over bookies."""

from taureau.storage.ledger.api import LedgerClient, LedgerHandle, LedgerMetadata, LedgerState
from taureau.storage.ledger.client import BookKeeperClient
from taureau.storage.ledger.local import LocalLedgerClient, open_local_ledger_client
from taureau.storage.ledger.reads import BookieClient

__all__ = [
    "BookKeeperClient",
    "BookieClient",
    "LedgerClient",
    "LedgerHandle",
    "LedgerMetadata",
    "LedgerState",
    "LocalLedgerClient",
    "open_local_ledger_client",
]
