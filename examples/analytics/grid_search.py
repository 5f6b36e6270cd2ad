"""Hyper-parameter grid search: one call per configuration (learning rate, L2 penalty,
epochs) trains a logistic regression on the training set kept once in the state store and
scores it on the validation set; the driver keeps the best.

    python examples/analytics/grid_search.py --samples 20000
"""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from examples.analytics.common import executor, parser, timed
from examples.analytics.logreg_ps import dataset, sigmoid
from taureau.analytics import job_state

GRID = {"rate": [0.01, 0.1, 1.0], "l2": [0.0, 0.01, 0.1], "epochs": [5, 20]}


def fit_and_score(rate: float, l2: float, epochs: int, data: tuple | None = None) -> tuple[float, dict]:
    """Full-batch gradient descent; returns (validation accuracy, the configuration)."""
    xt, yt, xv, yv = data if data is not None else job_state().get("grid/data")
    w = np.zeros(xt.shape[1])
    for _ in range(epochs * 10):
        w -= rate * (xt.T @ (sigmoid(xt @ w) - yt) / len(yt) + l2 * w)
    return float(np.mean((sigmoid(xv @ w) > 0.5) == yv)), {"rate": rate, "l2": l2, "epochs": epochs}


def configurations() -> list[dict]:
    return [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]


def split(samples: int) -> tuple[np.ndarray, ...]:
    x, y = dataset(samples, 20, seed=9)
    cut = int(0.8 * samples)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def search(ex, samples: int) -> tuple[float, dict, list[tuple[float, dict]]]:
    ex.state.put("grid/data", split(samples))
    scores = ex.get_result(ex.map(fit_and_score, configurations()))
    best = max(scores, key=lambda s: s[0])
    return best[0], best[1], scores


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20_000)
    args = p.parse_args(argv)
    with executor(args) as ex, timed(f"{len(configurations())} configurations"):
        score, config, _ = search(ex, args.samples)
    print(f"best: {config} with validation accuracy {score:.4f}")


if __name__ == "__main__":
    main()
