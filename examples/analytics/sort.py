"""Partitioned sort of random 100-byte records (10-byte keys, as TeraSort), 1 GB by default.

Generation: each map call writes its share of records to a file in the state store. Sort: each
map call reads one input file and cuts its records by key range into one piece per reducer;
the pieces shuffle through hash tables; reducer r sorts its range and writes it to
`output/r`, so the outputs in order are the sorted data.

    python examples/analytics/sort.py --gigabytes 1 --partitions 16
"""

from __future__ import annotations

import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from examples.analytics.common import executor, parser, timed
from taureau.analytics import job_state

RECORD = 100
KEY = 10
DTYPE = np.dtype([("key", f"S{KEY}"), ("value", f"S{RECORD - KEY}")])


def records(part: int, count: int, seed: int = 7) -> np.ndarray:
    """`count` random records of input part `part` (the same on every machine)."""
    rng = np.random.default_rng([seed, part])
    return np.frombuffer(rng.bytes(count * RECORD), dtype=DTYPE)


def write_input(part: int, count: int) -> int:
    job_state().file(f"input/{part}").write(records(part, count).tobytes())
    return count


def boundaries(partitions: int) -> np.ndarray:
    """Keys are uniform: reducer r takes keys whose first two bytes are below bounds[r]."""
    return (np.arange(1, partitions) * 65536 // partitions).astype(np.uint32)


def split(part: int, partitions: int) -> list[tuple[int, bytes]]:
    data = job_state().file(f"input/{part}").read()
    recs = np.frombuffer(data, dtype=DTYPE)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    prefix = raw[:, 0].astype(np.uint32) << 8 | raw[:, 1]
    dest = np.searchsorted(boundaries(partitions), prefix, side="right")
    order = np.argsort(dest, kind="stable")
    counts = np.bincount(dest, minlength=partitions)
    pieces, lo = [], 0
    for r in range(partitions):
        pieces.append((r, recs[order[lo : lo + counts[r]]].tobytes()))
        lo += counts[r]
    return pieces


def by_partition(key: int, partitions: int) -> int:
    return key


def sort_range(r: int, pieces: list[bytes]) -> tuple[int, bytes, bytes]:
    recs = np.frombuffer(b"".join(pieces), dtype=DTYPE)
    out = recs[np.argsort(recs["key"], kind="stable")]
    job_state().file(f"output/{r}").write(out.tobytes())
    if not len(out):
        return 0, b"", b""
    return len(out), bytes(out["key"][0]), bytes(out["key"][-1])


def run(ex, total_bytes: int, parts: int, partitions: int) -> dict[int, tuple[int, bytes, bytes]]:
    """Generate and sort; returns per output partition (records, first key, last key)."""
    per_part = total_bytes // RECORD // parts
    ex.get_result(ex.map(write_input, [(p, per_part) for p in range(parts)]))
    fs = ex.map_reduce(split, [(p, partitions) for p in range(parts)], sort_range, reduce_by_key=True,
                       num_reducers=partitions, partitioner=by_partition)  # fmt: skip
    return ex.get_result(fs)


def read_output(ex, r: int) -> bytes:
    return ex.state.file(f"output/{r}").read()


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--gigabytes", type=float, default=1.0)
    p.add_argument("--parts", type=int, default=16, help="input files (map calls)")
    p.add_argument("--partitions", type=int, default=16, help="key ranges (reducers)")
    args = p.parse_args(argv)
    total = int(args.gigabytes * 1e9)
    blocks = 256 + 4 * total // (8 << 20)  # input, shuffle and output each hold the data once, plus slack
    with executor(args, blocks=blocks) as ex, timed(f"generated and sorted {total / 1e9:.2f} GB"):
        result = run(ex, total, args.parts, args.partitions)
    count = sum(n for n, _, _ in result.values())
    ordered = all(result[r][2] <= result[r + 1][1] for r in range(args.partitions - 1) if result[r][0] and result[r + 1][0])
    print(f"{count} records in {args.partitions} sorted partitions; ranges ordered: {ordered}")


if __name__ == "__main__":
    main()
