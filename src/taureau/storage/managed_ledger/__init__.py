"""Managed ledger: a topic's log as a chain of ledgers, with durable cursors."""
