"""Geo-replication: the registry of clusters, a namespace's replication clusters, and one
replicator per (persistent topic, remote cluster) that copies the topic's entries to the same
topic on the remote cluster over the Pulsar binary protocol (docs/geo-replication.md)."""
