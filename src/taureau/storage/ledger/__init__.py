"""Ledger client: single-writer append-only ledgers replicated over bookies."""
