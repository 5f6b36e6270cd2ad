"""All-pairs similarity of protein-like sequences with MinHash.

Sequences come in families (a random ancestor and mutated copies). Map 1: each call computes
the MinHash signatures (k-mer shingles) of a block of sequences and stores them in state.
Map 2: one call per pair of blocks (i <= j) compares every signature of block i with every
signature of block j and returns the pairs whose estimated Jaccard similarity passes the
threshold.

    python examples/analytics/similarity.py --sequences 4000 --blocks 8
"""

from __future__ import annotations

import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from examples.analytics.common import executor, parser, timed
from taureau.analytics import job_state

AMINO = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
K = 3  # k-mer length
PERMUTATIONS = 128
PRIME = (1 << 61) - 1


def families(count: int, length: int = 200, family_size: int = 4, mutation: float = 0.05,
             seed: int = 5) -> list[bytes]:  # fmt: skip
    """`count` sequences: groups of `family_size` mutated copies of one random ancestor."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        ancestor = AMINO[rng.integers(0, 20, length)]
        for _ in range(min(family_size, count - len(out))):
            seq = ancestor.copy()
            hit = rng.random(length) < mutation
            seq[hit] = AMINO[rng.integers(0, 20, hit.sum())]
            out.append(seq.tobytes())
    return out


def kmers(seq: bytes) -> np.ndarray:
    codes = np.frombuffer(seq, dtype=np.uint8).astype(np.uint64)
    return np.unique(codes[:-2] << np.uint64(16) | codes[1:-1] << np.uint64(8) | codes[2:])


def _hash_params(seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, PRIME, PERMUTATIONS, dtype=np.uint64), rng.integers(0, PRIME, PERMUTATIONS, dtype=np.uint64)


def signature(seq: bytes) -> np.ndarray:
    """Min over the k-mers of (a*x + b) mod p, per permutation (uint64 wraps; fine for hashing)."""
    a, b = _hash_params()
    x = kmers(seq)
    return ((np.outer(x, a) + b) % np.uint64(PRIME)).min(axis=0)


def sign_block(block: int, sequences: list[bytes]) -> int:
    job_state().put(f"minhash/{block}", np.stack([signature(s) for s in sequences]))
    return len(sequences)


def compare(i: int, j: int, starts: list[int], threshold: float) -> list[tuple[int, int, float]]:
    st = job_state()
    si, sj = st.get(f"minhash/{i}"), st.get(f"minhash/{j}")
    similar = (si[:, None, :] == sj[None, :, :]).mean(axis=2)
    pairs = []
    for a, b in zip(*np.nonzero(similar >= threshold), strict=True):
        ga, gb = starts[i] + int(a), starts[j] + int(b)
        if ga < gb:
            pairs.append((ga, gb, float(similar[a, b])))
    return pairs


def run(ex, sequences: list[bytes], blocks: int, threshold: float = 0.4) -> list[tuple[int, int, float]]:
    bounds = np.linspace(0, len(sequences), blocks + 1).astype(int).tolist()
    ex.get_result(ex.map(sign_block, [(b, sequences[bounds[b] : bounds[b + 1]]) for b in range(blocks)]))
    pairs_of_blocks = [(i, j, bounds, threshold) for i in range(blocks) for j in range(i, blocks)]
    return sorted(p for ps in ex.get_result(ex.map(compare, pairs_of_blocks)) for p in ps)


def jaccard(a: bytes, b: bytes) -> float:
    x, y = kmers(a), kmers(b)
    return len(np.intersect1d(x, y)) / len(np.union1d(x, y))


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=4000)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--threshold", type=float, default=0.4)
    args = p.parse_args(argv)
    seqs = families(args.sequences)
    with executor(args) as ex, timed(f"all pairs of {len(seqs)} sequences"):
        pairs = run(ex, seqs, args.blocks, args.threshold)
    print(f"{len(pairs)} similar pairs (estimated Jaccard >= {args.threshold}); first: {pairs[:3]}")


if __name__ == "__main__":
    main()
