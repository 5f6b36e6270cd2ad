"""Where the function workers of one metadata store coordinate (as Pulsar's
`/functions/...`): the registry of functions itself stays under `/admin/functions`."""

ROOT = "/functions"
WORKERS = f"{ROOT}/workers"  # one ephemeral node per live worker: <id> -> its URL
LEADER = f"{ROOT}/leader"  # ephemeral: the worker that computes assignments
ASSIGNMENTS = f"{ROOT}/assignments"  # <worker id> -> what that worker runs
REASSIGN = f"{ROOT}/reassign"  # touched after a change of a function: the leader recomputes
REBALANCE = f"{ROOT}/rebalance"  # touched by `rebalance`: the leader spreads every instance anew
REBALANCED = f"{ROOT}/rebalanced"  # the version of REBALANCE a leader last served
PACKAGES = f"{ROOT}/packages"  # <sha> -> the ledger holding that package
ALONE = f"{ROOT}/alone"  # ephemeral: a worker alone (a standalone's) deploys every function here


def worker_path(worker_id: str) -> str:
    return f"{WORKERS}/{worker_id}"


def assignment_path(worker_id: str) -> str:
    return f"{ASSIGNMENTS}/{worker_id}"
