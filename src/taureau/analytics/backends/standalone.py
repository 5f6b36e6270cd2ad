"""Tasks on a running `taureau standalone`: batches are HTTP invocations of one function
(`public/default/taureau-analytics`, deployed on first use with `workers` instances), whose
instances are the standalone's warm worker processes; data goes through its state store.

Its instances take invocations round-robin, so a call can queue behind another on the same
instance: reducers therefore start only once all their mappers are done (waiting_tasks_ok)."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from taureau.analytics import wire
from taureau.analytics.backends.base import BackendSink
from taureau.analytics.backends.slots import Slots, report
from taureau.analytics.errors import BackendError

log = logging.getLogger("taureau.analytics.standalone")

FUNCTION = ("public", "default", "taureau-analytics")
MODULE = "taureau_analytics_task"
# The deployed function: a thin module; the runner is taureau's, installed beside the worker.
SOURCE = b'''"""Runs batches of taureau.analytics calls (deployed by Executor("host:port"))."""
from taureau.analytics.runner import run_batch_bytes


def process(batch):
    return run_batch_bytes(batch)
'''
INVOKE_TIMEOUT_MS = 300_000  # the invoke API's ceiling: a batch must finish within it
START_TIMEOUT_S = 60.0


class StandaloneBackend:
    name = "standalone"
    waiting_tasks_ok = False
    streams_outcomes = False  # an invocation answers with its batch's outcomes at once

    def __init__(self, workers: int | None = None, admin_url: str | None = None, state_address: str | None = None,
                 **_: object) -> None:  # fmt: skip
        host = (state_address or "localhost:9090").rsplit(":", 1)[0]
        self.admin_url = (admin_url or f"http://{host}:8080").rstrip("/")
        self.slots = workers or 2
        self._slots = Slots("standalone", self.slots)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._sink: BackendSink | None = None
        t, ns, name = FUNCTION
        self._function_url = f"{self.admin_url}/admin/v3/functions/{t}/{ns}/{name}"
        self._invoke_url = f"{self.admin_url}/functions/{t}/{ns}/{name}?timeout_ms={INVOKE_TIMEOUT_MS}"

    def start(self, sink: BackendSink, state_address: str) -> None:
        self._sink = sink
        try:
            self._deploy()
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach the standalone's admin API at {self.admin_url}: {exc}") from exc
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="analytics-invoke")

    def _deploy(self) -> None:
        config = {"className": f"{MODULE}.process", "parallelism": self.slots, "runtime": "PYTHON"}
        form = {"functionConfig": json.dumps(config)}
        files = {"data": (f"{MODULE}.py", SOURCE)}
        current = httpx.get(self._function_url, timeout=10)
        if current.status_code == 404:
            r = httpx.post(self._function_url, data=form, files=files, timeout=60)
        elif current.json().get("parallelism") != self.slots:
            r = httpx.put(self._function_url, data=form, files=files, timeout=60)
        else:
            r = None
        if r is not None and r.status_code >= 300:
            raise BackendError(f"deploying {'/'.join(FUNCTION)} failed: {r.status_code} {r.text}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            status = httpx.get(f"{self._function_url}/status", timeout=10).json()
            if status.get("numRunning", 0) >= self.slots:
                return
            if time.monotonic() > deadline:
                raise BackendError(f"{'/'.join(FUNCTION)} runs {status.get('numRunning')} of {self.slots} instances")
            time.sleep(0.05)

    def try_submit(self, batch: wire.Batch, *, exclusive: bool = False, avoid: str | None = None,
                   short: bool = False) -> str | None:  # fmt: skip
        slot = self._slots.take(avoid)
        if slot is None:
            return None
        assert self._pool is not None
        self._pool.submit(self._invoke, slot, batch)
        return self._slots.name(slot)

    def _invoke(self, slot: int, batch: wire.Batch) -> None:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=INVOKE_TIMEOUT_MS / 1000 + 10)
        reply, lost = None, None
        try:
            r = client.post(self._invoke_url, content=wire.encode_batch(batch))
            if r.status_code == 200:
                reply = r.content
            else:
                lost = f"invocation answered {r.status_code}: {r.text[:500]}"
        except httpx.HTTPError as exc:
            lost = f"invocation failed: {type(exc).__name__}: {exc}"
        finally:
            self._slots.give(slot)
        assert self._sink is not None
        report(self._sink, batch.batch_id, reply, lost)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
