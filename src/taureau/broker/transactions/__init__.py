"""Pulsar transactions: a coordinator with a durable log, a buffer for transactional sends,
and pending acknowledgements per subscription (docs/transactions.md)."""
