"""Durable storage in BookKeeper's model: bookies, ledgers, managed ledgers and cursors."""
