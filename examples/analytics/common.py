"""What every example's command line shares: where the executor runs."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager

from taureau.analytics import Executor


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--address", help="a standalone's state controller HOST:PORT (default: embedded)")
    p.add_argument("--admin-url", help="the standalone's admin URL (default: http://HOST:8080)")
    p.add_argument("--backend", choices=["local", "standalone", "ray"], help="default: local, or standalone with --address")
    p.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    return p


@contextmanager
def executor(args: argparse.Namespace, **options: object) -> Iterator[Executor]:
    with Executor(args.address, backend=args.backend, workers=args.workers, admin_url=args.admin_url,
                  **options) as ex:  # type: ignore[arg-type]  # fmt: skip
        yield ex


@contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"{what}: {time.perf_counter() - started:.2f} s")
