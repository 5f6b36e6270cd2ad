"""Functions the tests ship to workers (this module is pickled by value: workers need not import it)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(x):
    return x * x


def add(a, b, c=0):
    return a + b + c


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad input {x}")
    return x


def record_then_fail(marker: str):
    """Append a line per attempt, always raise."""
    with open(marker, "a") as f:
        f.write("attempt\n")
    raise RuntimeError("always fails")


def fail_first_attempts(marker: str, failures: int):
    """Raise on the first `failures` attempts (counted in a file), then succeed."""
    with open(marker, "a") as f:
        f.write("attempt\n")
    attempts = len(Path(marker).read_text().splitlines())
    if attempts <= failures:
        raise ConnectionError(f"transient failure {attempts}")
    return attempts


def record_then_sleep(marker: str, seconds: float, x):
    """Append a line per attempt, then sleep."""
    with open(marker, "a") as f:
        f.write("attempt\n")
    time.sleep(seconds)
    return x


def touch(marker: str, x):
    Path(marker).write_text("ran")
    return x


def pid_then_sleep(marker: str, seconds: float):
    """The first attempt writes its pid and sleeps (the test kills it); later ones return at once."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(seconds)
    return os.getpid()


def slow_first_time(x, marker_dir: str, slow: int, seconds: float):
    """Call `slow` sleeps `seconds` on its first attempt only: a straggler."""
    marker = os.path.join(marker_dir, f"{x}.ran")
    first = not os.path.exists(marker)
    Path(marker).write_text("x")
    time.sleep(seconds if (x == slow and first) else 0.02)
    return x


def sleep_then(x, seconds: float):
    time.sleep(seconds)
    return x


def words(line: str):
    return [(w, 1) for w in line.split()]


def count(_key, values):
    return sum(values)


def blob(n: int, fill: int = 120):
    return bytes([fill % 256]) * n


def env(name: str):
    return os.environ.get(name)


def chunk_member(x, marker_dir: str, victim: int):
    """Record each run of call x; call `victim` writes its pid and sleeps on its first run (the
    test kills its worker there, in the middle of the chunk)."""
    runs = Path(marker_dir, f"{x}.runs")
    with open(runs, "a") as f:
        f.write("run\n")
    if x == victim and len(runs.read_text().splitlines()) == 1:
        Path(marker_dir, "pid").write_text(str(os.getpid()))
        time.sleep(30)
    return x, os.getpid()


def total_plus(values, offset, scale=1):
    return (sum(values) + offset) * scale


def shaped(x: int):
    """A value of each way a result travels: small (itself), pickled, stored in state, or raised."""
    if x == 150:
        raise ValueError("shaped 150")
    if x < 100:
        return x
    if x < 200:
        return [x] * 3
    return bytes([x % 256]) * 100_000


def pickled_60k(x: int):
    return [x] * 15_000  # about 60 KB pickled: inline, but a batch of them passes half a message
