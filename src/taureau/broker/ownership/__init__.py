"""Which broker serves which topic: namespace bundles, broker registration, ownership and
lookup redirects, and the load-based placement of bundles (cluster mode, docs/cluster.md)."""
