"""The one interface every backend implements, and the registry that names them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from taureau.analytics.errors import BackendError
from taureau.analytics.wire import Batch, Group


class BackendSink(Protocol):
    """Where a backend reports (from any of its threads)."""

    def outcomes(self, group: Group) -> None:
        """Outcomes of consecutive calls of a batch (a batch may report in several groups)."""

    def batch_done(self, batch_id: int, lost: BaseException | None) -> None:
        """The batch is over: every outcome was reported, or `lost` says why the rest never will be."""

    def worker_joined(self) -> None:
        """A worker that was not ready (a replacement still starting) now takes batches."""


class Backend(Protocol):
    name: str
    slots: int  # batches it runs at once
    waiting_tasks_ok: bool  # may a task block until others finish (an early reducer) without deadlock
    streams_outcomes: bool  # does a batch report each call as it ends (else all at the batch's end)

    def start(self, sink: BackendSink, state_address: str) -> None: ...

    def try_submit(self, batch: Batch, *, exclusive: bool = False, avoid: str | None = None,
                   short: bool = False) -> str | None:  # fmt: skip
        """Take `batch` if there is room and name the worker (or slot) that runs it; None if
        there is no room. An exclusive batch needs a worker of its own; `avoid` names one not to
        use. `short`: the batch is expected to run for under a few milliseconds, so a backend may
        queue more of them on one worker. Never blocks for long: the scheduler calls it under
        its lock."""
        ...

    def close(self) -> None: ...

    # Optional: `flush()` writes what try_submit accepted, called once the scheduler's lock is
    # released (a backend that sends inside try_submit has none); `cancel(batch_id)` stops a batch.


# name -> "module:factory"; a factory takes the Executor's options and returns a Backend.
BACKENDS: dict[str, str] = {
    "local": "taureau.analytics.backends.local:LocalBackend",
    "standalone": "taureau.analytics.backends.standalone:StandaloneBackend",
    "ray": "taureau.analytics.backends.ray:RayBackend",
}


def create_backend(name: str, **options: Any) -> Backend:
    target = BACKENDS.get(name)
    if target is None:
        raise BackendError(f"unknown backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    module, _, attr = target.partition(":")
    factory: Callable[..., Backend] = getattr(importlib.import_module(module), attr)
    return factory(**options)
