"""Tasks as Ray tasks (`Executor(backend="ray")`): one Ray task per batch, one CPU each, no
retries of Ray's own (the scheduler retries, with the same rules on every backend)."""

from __future__ import annotations

import threading
from typing import Any

from taureau.analytics import wire
from taureau.analytics.backends.base import BackendSink
from taureau.analytics.backends.slots import Slots, report
from taureau.analytics.errors import BackendError

POLL_S = 0.05


def _run(data: bytes) -> bytes:
    from taureau.analytics.runner import run_batch_bytes

    return run_batch_bytes(data)


class RayBackend:
    name = "ray"
    waiting_tasks_ok = True  # Ray runs at most `slots` batches: an early reducer holds only its own CPU
    streams_outcomes = False  # a task returns its batch's outcomes at once

    def __init__(self, workers: int | None = None, ray_address: str | None = None, **_: object) -> None:
        try:
            import ray
        except ImportError as exc:
            raise BackendError("backend='ray' needs Ray: pip install 'taureau[ray]'") from exc
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if ray_address:
                kwargs["address"] = ray_address
            elif workers:
                kwargs["num_cpus"] = workers
            ray.init(**kwargs)
            self._owns = True
        self.slots = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._slots = Slots("ray", self.slots)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_run)
        self._lock = threading.Lock()
        self._running: dict[Any, tuple[int, int]] = {}  # object ref -> (batch id, slot)
        self._stop = threading.Event()
        self._sink: BackendSink | None = None
        self._thread = threading.Thread(target=self._collect, name="analytics-ray", daemon=True)

    def start(self, sink: BackendSink, state_address: str) -> None:
        self._sink = sink
        self._thread.start()

    def try_submit(self, batch: wire.Batch, *, exclusive: bool = False, avoid: str | None = None,
                   short: bool = False) -> str | None:  # fmt: skip
        slot = self._slots.take(avoid)
        if slot is None:
            return None
        ref = self._remote.remote(wire.encode_batch(batch))
        with self._lock:
            self._running[ref] = (batch.batch_id, slot)
        return self._slots.name(slot)

    def cancel(self, batch_id: int) -> bool:
        with self._lock:
            refs = [ref for ref, (b, _) in self._running.items() if b == batch_id]
        for ref in refs:
            self._ray.cancel(ref, force=True)
        return bool(refs)

    def _collect(self) -> None:
        ray = self._ray
        while not self._stop.is_set():
            with self._lock:
                refs = list(self._running)
            if not refs:
                self._stop.wait(POLL_S)
                continue
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL_S, fetch_local=True)
            for ref in ready:
                with self._lock:
                    batch_id, slot = self._running.pop(ref)
                reply, lost = None, None
                try:
                    reply = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a crashed or cancelled Ray worker
                    lost = f"Ray task lost: {type(exc).__name__}: {str(exc)[:500]}"
                self._slots.give(slot)
                assert self._sink is not None
                report(self._sink, batch_id, reply, lost)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            refs = list(self._running)
            self._running.clear()
        for ref in refs:
            self._ray.cancel(ref, force=True)
        if self._owns:
            self._ray.shutdown()
