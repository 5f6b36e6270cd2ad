"""Dispatchers: which consumer of a subscription gets which entry, one class per subscription type."""
