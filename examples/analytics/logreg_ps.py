"""Logistic regression trained with a parameter server over the state store.

The data is split into shards kept in state. Each worker (one long call per shard) loops:
pull the latest weights from state, compute a minibatch gradient on its shard, push it to the
`gradients` queue. The driver is the server: it applies gradients as they arrive
(asynchronous SGD) and publishes each new version of the weights.

    python examples/analytics/logreg_ps.py --samples 200000 --features 50 --workers 4
"""

from __future__ import annotations

import os
import pickle
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from examples.analytics.common import executor, parser, timed
from taureau.analytics import job_state
from taureau.common.errors import QueueEmptyError


def dataset(samples: int, features: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(features)
    x = rng.standard_normal((samples, features))
    y = (x @ truth + 0.3 * rng.standard_normal(samples) > 0).astype(np.float64)
    return x, y


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def loss(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    p = sigmoid(x @ w)
    return float(-np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)))


def worker(shard: int, steps: int, batch: int) -> int:
    """Pull weights, push a gradient, `steps` times; returns how many gradients it pushed."""
    st = job_state()
    x, y = st.get(f"ps/shard/{shard}")
    grads = st.queue("ps/gradients")
    rng = np.random.default_rng(shard)
    for _ in range(steps):
        version, w = st.get("ps/weights")
        pick = rng.integers(0, len(y), batch)
        xb, yb = x[pick], y[pick]
        grads.enqueue(pickle.dumps((shard, version, xb.T @ (sigmoid(xb @ w) - yb) / batch), protocol=5))
    return steps


def train(ex, x: np.ndarray, y: np.ndarray, shards: int, steps: int = 50, batch: int = 256,
          rate: float = 0.5) -> tuple[np.ndarray, int]:  # fmt: skip
    """Serve the weights until every worker's gradients are applied; (weights, updates)."""
    w = np.zeros(x.shape[1])
    version = 0
    ex.state.put("ps/weights", (version, w))
    for s, (xs, ys) in enumerate(zip(np.array_split(x, shards), np.array_split(y, shards), strict=True)):
        ex.state.put(f"ps/shard/{s}", (xs, ys))
    futures = ex.map(worker, [(s, steps, batch) for s in range(shards)])
    grads = ex.state.queue("ps/gradients")
    expected = shards * steps
    while version < expected:
        try:
            _, _, g = pickle.loads(grads.dequeue())
        except QueueEmptyError:
            if all(f.done for f in futures):
                ex.get_result(futures)  # a worker failed: raise its error
                break
            time.sleep(0.001)
            continue
        w = w - rate * g
        version += 1
        ex.state.put("ps/weights", (version, w))
    ex.get_result(futures)
    return w, version


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--features", type=int, default=50)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args(argv)
    x, y = dataset(args.samples, args.features)
    with executor(args) as ex, timed("training"):
        w, updates = train(ex, x, y, args.shards, args.steps)
    accuracy = float(np.mean((sigmoid(x @ w) > 0.5) == y))
    print(f"{updates} updates; loss {loss(np.zeros(args.features), x, y):.3f} -> {loss(w, x, y):.3f}; accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
