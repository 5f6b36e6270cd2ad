"""Strassen matrix multiplication with its intermediate products in the state store.

A and B are cut into 2x2 blocks stored in state; seven calls each compute one Strassen
product M1..M7 from the blocks (reading them from state, writing M_i back); four calls
combine the products into the blocks of C. `--levels 2` recurses once more inside each
product (49 products), each level's blocks and products again in state.

    python examples/analytics/strassen.py --n 2048 --levels 1
"""

from __future__ import annotations

import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from examples.analytics.common import executor, parser, timed
from taureau.analytics import job_state

# M_i = (sum of A blocks) @ (sum of B blocks), as signed block lists.
PRODUCTS = {
    1: ([(1, "11"), (1, "22")], [(1, "11"), (1, "22")]),
    2: ([(1, "21"), (1, "22")], [(1, "11")]),
    3: ([(1, "11")], [(1, "12"), (-1, "22")]),
    4: ([(1, "22")], [(1, "21"), (-1, "11")]),
    5: ([(1, "11"), (1, "12")], [(1, "22")]),
    6: ([(1, "21"), (-1, "11")], [(1, "11"), (1, "12")]),
    7: ([(1, "12"), (-1, "22")], [(1, "21"), (1, "22")]),
}
# C blocks from the products.
COMBINE = {
    "11": [(1, 1), (1, 4), (-1, 5), (1, 7)],
    "12": [(1, 3), (1, 5)],
    "21": [(1, 2), (1, 4)],
    "22": [(1, 1), (-1, 2), (1, 3), (1, 6)],
}


def quarters(m: np.ndarray) -> dict[str, np.ndarray]:
    h = m.shape[0] // 2
    return {"11": m[:h, :h], "12": m[:h, h:], "21": m[h:, :h], "22": m[h:, h:]}


def strassen_local(a: np.ndarray, b: np.ndarray, levels: int) -> np.ndarray:
    """Strassen on one machine below the distributed level (numpy for the leaves)."""
    if levels == 0 or a.shape[0] % 2:
        return a @ b
    qa, qb = quarters(a), quarters(b)
    m = {i: strassen_local(sum(s * qa[k] for s, k in sa), sum(s * qb[k] for s, k in sb), levels - 1)
         for i, (sa, sb) in PRODUCTS.items()}  # fmt: skip
    return np.block([[sum(s * m[i] for s, i in COMBINE["11"]), sum(s * m[i] for s, i in COMBINE["12"])],
                     [sum(s * m[i] for s, i in COMBINE["21"]), sum(s * m[i] for s, i in COMBINE["22"])]])  # fmt: skip


def product(prefix: str, i: int, inner_levels: int) -> str:
    """M_i of the blocks stored under `prefix`, written back to state; returns its name."""
    st = job_state()
    sa, sb = PRODUCTS[i]
    left = sum(s * st.get(f"{prefix}/A{k}") for s, k in sa)
    right = sum(s * st.get(f"{prefix}/B{k}") for s, k in sb)
    st.put(f"{prefix}/M{i}", strassen_local(left, right, inner_levels))
    return f"{prefix}/M{i}"


def combine(prefix: str, block: str) -> str:
    st = job_state()
    st.put(f"{prefix}/C{block}", sum(s * st.get(f"{prefix}/M{i}") for s, i in COMBINE[block]))
    return f"{prefix}/C{block}"


def multiply(ex, a: np.ndarray, b: np.ndarray, levels: int = 1, prefix: str = "strassen") -> np.ndarray:
    """C = A @ B with `levels` distributed Strassen levels (A, B square, side divisible by 2^levels)."""
    if levels == 0:
        return a @ b
    qa, qb = quarters(a), quarters(b)
    for k in qa:
        ex.state.put(f"{prefix}/A{k}", np.ascontiguousarray(qa[k]))
        ex.state.put(f"{prefix}/B{k}", np.ascontiguousarray(qb[k]))
    if levels == 1:
        ex.get_result(ex.map(product, [(prefix, i, 0) for i in PRODUCTS]))
    else:  # each product is itself a distributed Strassen one level down, its blocks in state too
        for i, (sa, sb) in PRODUCTS.items():
            left = sum(s * qa[k] for s, k in sa)
            right = sum(s * qb[k] for s, k in sb)
            ex.state.put(f"{prefix}/M{i}", multiply(ex, left, right, levels - 1, f"{prefix}/m{i}"))
    ex.get_result(ex.map(combine, [(prefix, blk) for blk in COMBINE]))
    c = {blk: ex.state.get(f"{prefix}/C{blk}") for blk in COMBINE}
    return np.block([[c["11"], c["12"]], [c["21"], c["22"]]])


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--levels", type=int, default=1)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((args.n, args.n)), rng.standard_normal((args.n, args.n))
    with executor(args) as ex, timed(f"Strassen {args.n}x{args.n}, {args.levels} level(s)"):
        c = multiply(ex, a, b, args.levels)
    print(f"max |C - A@B| = {np.abs(c - a @ b).max():.2e}")


if __name__ == "__main__":
    main()
