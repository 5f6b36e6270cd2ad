"""PageRank in the Pregel model: vertices are split into partitions, one call per partition
per superstep. A call reads its vertices' ranks and the messages sent to it in the previous
superstep (its state queue), updates the ranks and sends rank/out-degree along every edge,
one queue item per destination partition. The driver is the barrier between supersteps and
stops when no rank moves more than the tolerance.

    python examples/analytics/pagerank.py --vertices 100000 --partitions 8
"""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from examples.analytics.common import executor, parser, timed
from taureau.analytics import job_state
from taureau.common.errors import KeyNotFoundError

DAMPING = 0.85


def random_graph(n: int, avg_degree: int = 8, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) edges; every vertex has at least one out-edge (no dangling mass to redistribute)."""
    rng = np.random.default_rng(seed)
    extra = rng.integers(0, n, size=(n * (avg_degree - 1), 2))
    ring = np.stack([np.arange(n), (np.arange(n) + 1) % n], axis=1)
    edges = np.concatenate([ring, extra])
    return edges[:, 0], edges[:, 1]


def owner(v: np.ndarray, partitions: int) -> np.ndarray:
    return v % partitions


def load_partition(p: int, partitions: int, n: int, src: np.ndarray, dst: np.ndarray) -> int:
    """Store partition p's vertices (those v with v % partitions == p), their edges and ranks."""
    mine = owner(src, partitions) == p
    vertices = np.arange(p, n, partitions)
    st = job_state()
    st.put(f"pregel/{p}/edges", (src[mine], dst[mine], np.bincount(src, minlength=n)[src[mine]]))
    st.put(f"pregel/{p}/ranks", (vertices, np.full(len(vertices), 1.0 / n)))
    return len(vertices)


def received(st, p: int, step: int, partitions: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The messages sent to partition p in the previous superstep: one queue item from every
    partition (the driver's barrier guarantees they are all there). Dequeuing consumes them,
    so they are kept in state first: a retried or speculative copy of this call reads them
    again; a copy that finds the queue drained by another fails and is retried."""
    key = f"pregel/{p}/received/{step}"
    try:
        return st.get(key)
    except KeyNotFoundError:
        inbox = st.queue(f"pregel/inbox/{step}/{p}")
        messages = [pickle.loads(inbox.dequeue()) for _ in range(partitions)]
        st.put(key, messages)
        return messages


def superstep(p: int, step: int, partitions: int, n: int) -> float:
    """One superstep of partition p; returns the largest change of its ranks."""
    st = job_state()
    vertices, ranks = st.get(f"pregel/{p}/ranks")
    if step > 0:  # step 0 only sends: the initial ranks are the first values
        incoming = np.zeros(len(vertices))
        for targets, values in received(st, p, step, partitions):
            np.add.at(incoming, targets // partitions, values)
        new = (1 - DAMPING) / n + DAMPING * incoming
        delta = float(np.abs(new - ranks).max())
        ranks = new
        st.put(f"pregel/{p}/ranks", (vertices, ranks))
        if step > 1:
            st.delete(f"pregel/{p}/received/{step - 1}")  # no copy of the last superstep runs any more
    else:
        delta = float("inf")
    src, dst, degree = st.get(f"pregel/{p}/edges")
    share = ranks[src // partitions] / degree
    dest = owner(dst, partitions)
    for q in range(partitions):
        sel = dest == q
        st.queue(f"pregel/inbox/{step + 1}/{q}").enqueue(pickle.dumps((dst[sel], share[sel]), protocol=5))
    return delta


def run(ex, n: int, partitions: int, tolerance: float = 1e-8, max_steps: int = 100) -> tuple[np.ndarray, int]:
    src, dst = random_graph(n)
    ex.get_result(ex.map(load_partition, [(p, partitions, n, src, dst) for p in range(partitions)]))
    step = 0
    while step < max_steps:
        deltas = ex.get_result(ex.map(superstep, [(p, step, partitions, n) for p in range(partitions)]))
        if step > 0:
            ex.state.remove(f"pregel/inbox/{step}")  # consumed: free its blocks
        if max(deltas) < tolerance:
            break
        step += 1
    ranks = np.zeros(n)
    for p in range(partitions):
        vertices, r = ex.state.get(f"pregel/{p}/ranks")
        ranks[vertices] = r
    return ranks, step


def pagerank_local(n: int, tolerance: float = 1e-8, max_steps: int = 100) -> np.ndarray:
    """The same iteration on one machine (the reference the distributed one must match)."""
    src, dst = random_graph(n)
    degree = np.bincount(src, minlength=n)
    ranks = np.full(n, 1.0 / n)
    for _ in range(max_steps):
        incoming = np.bincount(dst, weights=ranks[src] / degree[src], minlength=n)
        new = (1 - DAMPING) / n + DAMPING * incoming
        if np.abs(new - ranks).max() < tolerance:
            return new
        ranks = new
    return ranks


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--vertices", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=8)
    args = p.parse_args(argv)
    with executor(args) as ex, timed(f"PageRank of {args.vertices} vertices"):
        ranks, steps = run(ex, args.vertices, args.partitions)
    print(f"{steps} supersteps; top vertices: {np.argsort(-ranks)[:5].tolist()}; sum of ranks {ranks.sum():.6f}")


if __name__ == "__main__":
    main()
