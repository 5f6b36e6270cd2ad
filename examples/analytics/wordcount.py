"""Word count over text files: each map call reads a byte range of a file (cut at whitespace)
and counts its words; the counts shuffle through the state store by word; reducers add them.

    python examples/analytics/wordcount.py FILE...        # or --generate MB for synthetic text
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from examples.analytics.common import executor, parser, timed

CHUNK = 8 << 20  # bytes of text per map call


def count_range(path: str, start: int, end: int) -> list[tuple[str, int]]:
    """Words of [start, end): a word that crosses `start` belongs to the range before it."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            if not f.read(1).isspace():  # mid-word: skip to the next whitespace
                while (c := f.read(1)) and not c.isspace():
                    start += 1
                start += 1
        f.seek(start)
        data = f.read(max(end - start, 0))
        if data and not data[-1:].isspace():  # finish the word that crosses `end`
            tail = bytearray()
            while (c := f.read(1)) and not c.isspace():
                tail += c
            data += bytes(tail)
    return list(collections.Counter(data.decode("utf-8", "replace").split()).items())


def add(_word: str, counts: list[int]) -> int:
    return sum(counts)


def ranges(paths: list[str], chunk: int = CHUNK) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        size = os.path.getsize(p)
        out += [(p, lo, min(lo + chunk, size)) for lo in range(0, max(size, 1), chunk)]
    return out


def run(ex, paths: list[str], chunk: int = CHUNK, reducers: int | None = None) -> dict[str, int]:
    fs = ex.map_reduce(count_range, ranges(paths, chunk), add, reduce_by_key=True, num_reducers=reducers)
    return ex.get_result(fs)


def generate(directory: str, megabytes: float, files: int = 4, seed: int = 1) -> list[str]:
    """Zipf-like text: a vocabulary of 5,000 words, a few very common, 12 words a line."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(5000)])
    weights = 1 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    paths = []
    per_file = int(megabytes * (1 << 20) / files)
    for n in range(files):
        path = os.path.join(directory, f"text-{n}.txt")
        with open(path, "w") as f:
            written = 0
            while written < per_file:
                words = vocab[rng.choice(len(vocab), size=(4096, 12), p=weights)]
                text = "\n".join(" ".join(line) for line in words) + "\n"
                f.write(text)
                written += len(text)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("files", nargs="*")
    p.add_argument("--generate", type=float, default=64.0, help="MB of synthetic text when no FILE is given")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.files or generate(tmp, args.generate)
        size = sum(os.path.getsize(x) for x in paths)
        with executor(args) as ex, timed(f"counted {size / 1e6:.1f} MB"):
            counts = run(ex, paths)
    for word, n in sorted(counts.items(), key=lambda kv: -kv[1])[:10]:
        print(f"{n:>10}  {word}")


if __name__ == "__main__":
    main()
