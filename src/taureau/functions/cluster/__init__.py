"""Functions across several workers: membership, the leader, assignments, shared packages."""
